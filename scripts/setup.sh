#!/usr/bin/env bash
# Sets up handshake-score on a fresh Debian/Ubuntu machine: Wireshark's tshark and
# dumpcap and (for the tests) FluidSynth with a small GM soundfont from Debian, then the package and its test tools in ./.venv.
# Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
command -v tshark >/dev/null || missing+=(tshark)
command -v dumpcap >/dev/null || missing+=(wireshark-common)
# hs play --live: tcpdump in libpcap's immediate mode hands packets over as they pass
command -v tcpdump >/dev/null || missing+=(tcpdump)
python3 -m venv --help >/dev/null 2>&1 || missing+=(python3-venv)
# the tests play our MIDI files through a real synthesizer with a General MIDI soundfont
command -v fluidsynth >/dev/null || missing+=(fluidsynth)
[ -e /usr/share/sounds/sf2/TimGM6mb.sf2 ] || missing+=(timgm6mb-soundfont)
command -v soxi >/dev/null || missing+=(sox)  # an independent reader of the WAV files hs render writes
# python-rtmidi (hs play --to midi) links against ALSA's library
ldconfig -p 2>/dev/null | grep -q 'libasound.so.2 ' || missing+=(libasound2)
# and sounddevice (hs play --to speakers) on PortAudio
ldconfig -p 2>/dev/null | grep -q 'libportaudio.so.2 ' || missing+=(libportaudio2)
# the tests hear hs play --to speakers through JACK's dummy driver (a sound card paced by the
# clock) and record it with jack_rec
command -v jackd >/dev/null || missing+=(jackd2)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  echo "jackd2 jackd/tweak_rt_limits boolean false" | as_root debconf-set-selections
  # dumpcap asks whether non-root users may capture; answer "no" here (the README says how to allow it)
  echo "wireshark-common wireshark-common/install-setuid boolean false" | as_root debconf-set-selections
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# newer Debian moved jack_rec out of jackd2, into jack-example-tools
if ! command -v jack_rec >/dev/null && apt-cache show jack-example-tools >/dev/null 2>&1; then
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends jack-example-tools >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[test]'
echo "setup: ready ($(.venv/bin/hs --version), $(tshark --version 2>/dev/null | head -1 | cut -d' ' -f1-3))"
