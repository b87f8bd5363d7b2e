#!/usr/bin/env bash
# Sets up handshake-score in ./.venv on Debian, Ubuntu or Raspberry Pi OS (bookworm, arm64 or
# armhf): what hs needs to run, and with --tests also what its test suite stands on.
#
#   scripts/setup.sh           hs itself: Wireshark's dumpcap and tshark, tcpdump, ALSA's and
#                              PortAudio's libraries (MIDI ports, speakers), the package in .venv;
#                              on a machine with GPIO (/dev/gpiochip*) also lgpio, the pin library
#                              gpiozero picks on a Raspberry Pi (all of them, the Pi 5 included)
#   scripts/setup.sh --tests   and the test tools: FluidSynth with a small GM soundfont, sox, JACK
#                              (a sound card paced by the clock), liblo's oscdump, Pure Data,
#                              Chromium, pytest and the reference readers (pyshark, dpkt, symusic, pandas)
#
# Safe to run again: it installs only what is missing. Needs sudo (or root) only for apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."

tests=0
case "${1:-}" in
  "") ;;
  --tests) tests=1 ;;
  -h|--help) sed -n '2,13p' "$0" | cut -c3-; exit 0 ;;
  *) echo "setup: unknown option $1 (try --tests or --help)" >&2; exit 2 ;;
esac

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
has_lib() { ldconfig -p 2>/dev/null | grep -q "$1 "; }

missing=()
command -v dumpcap >/dev/null || missing+=(wireshark-common)  # hs capture
command -v tshark >/dev/null || missing+=(tshark)             # hs score --reader tshark, the slow reference
# hs play --live: tcpdump in libpcap's immediate mode hands packets over as they pass
command -v tcpdump >/dev/null || missing+=(tcpdump)
python3 -m venv --help >/dev/null 2>&1 || missing+=(python3-venv)
# python-rtmidi (hs play --to midi) links against ALSA's library (libasound2t64 on trixie)
has_lib libasound.so.2 || missing+=("$(apt-cache show libasound2t64 >/dev/null 2>&1 && echo libasound2t64 || echo libasound2)")
has_lib libportaudio.so.2 || missing+=(libportaudio2)  # sounddevice (hs play --to speakers)
if [ $tests = 1 ]; then
  # the tests play our MIDI files through a real synthesizer with a General MIDI soundfont
  command -v fluidsynth >/dev/null || missing+=(fluidsynth)
  [ -e /usr/share/sounds/sf2/TimGM6mb.sf2 ] || missing+=(timgm6mb-soundfont)
  command -v soxi >/dev/null || missing+=(sox)  # an independent reader of the WAV files hs render writes
  # hs play --to speakers is heard through JACK's dummy driver and recorded with jack_rec
  command -v jackd >/dev/null || missing+=(jackd2)
  command -v oscdump >/dev/null || missing+=(liblo-tools)  # an independent OSC receiver (liblo)
  command -v pd >/dev/null || missing+=(puredata-core)     # runs docs/osc/handshake.pd as a receiver
  command -v chromium >/dev/null || missing+=(chromium)    # the stage's tests: a real browser (Playwright drives it)
  command -v ip >/dev/null || missing+=(iproute2)          # the tunnel tests build kernel links in network namespaces
  command -v nft >/dev/null || missing+=(nftables)          # hs play --live -i nflog:N is tested with an nft log rule
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  # dumpcap asks whether non-root users may capture; answer "no" here (the README says how to allow it)
  echo "wireshark-common wireshark-common/install-setuid boolean false" | as_root debconf-set-selections
  echo "jackd2 jackd/tweak_rt_limits boolean false" | as_root debconf-set-selections
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# newer Debian moved jack_rec out of jackd2, into jack-example-tools
if [ $tests = 1 ] && ! command -v jack_rec >/dev/null && apt-cache show jack-example-tools >/dev/null 2>&1; then
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends jack-example-tools >/dev/null
fi

extras=()
[ $tests = 1 ] && extras+=(test)
compgen -G "/dev/gpiochip*" >/dev/null && extras+=(pi)
spec="."
[ ${#extras[@]} -gt 0 ] && spec=".[$(IFS=,; echo "${extras[*]}")]"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e "$spec"
more="; scripts/setup.sh --tests adds the test tools"
[ $tests = 1 ] && more="; and the test tools"
echo "setup: ready ($(.venv/bin/hs --version), $(tshark --version 2>/dev/null | head -1 | cut -d' ' -f1-3))$more"
