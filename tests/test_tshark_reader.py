"""The reader through tshark (``--reader tshark``), the choice of reader
(``--reader auto``), and the tunnel options on the command line.

The scores ``--reader tshark`` makes are checked against the fast reader's over
the corpus: two readers written apart (Wireshark's dissectors and ours) that must
agree to the nanosecond. Crafted captures (tests/craft.py, independent of hs) stand
for what the fast reader does not know: FDDI (link type 10), which tshark dissects
to IP and TCP and hs does not."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import craft
from conftest import ROOT, corpus_expectations
from craft import ACK, SYN, tcp_ip

HS = [sys.executable, "-m", "handshake_score"]
CAPTURES = sorted((ROOT / "captures").glob("*.pcapng"))
T0 = 1_700_000_000_123_456_789  # nanoseconds a float would lose
FDDI = 10
CLIENT, SERVER = ("10.0.0.1", 40000), ("10.0.0.2", 80)


def segment(src, dst, flags, seq, ack=0) -> bytes:
    """An IP packet with a TCP segment from ``src`` to ``dst`` ((address, port) each)."""
    return tcp_ip(src[0], dst[0], src[1], dst[1], flags, seq, ack)


HANDSHAKE = [  # (time after T0, packet, the note hs must make of it)
    (0, segment(CLIENT, SERVER, SYN, 100), "syn"),
    (1_234, segment(SERVER, CLIENT, SYN | ACK, 500, 101), "syn-ack"),
    (5_678, segment(CLIENT, SERVER, ACK, 101, 501), "ack"),
]


def hs(*args, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **kw.pop("env", {})}
    return subprocess.run(HS + [str(a) for a in args], capture_output=True, text=True, timeout=120, env=env, **kw)


def one_error_line(r) -> str:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hs: error: ") and "Traceback" not in r.stderr, r.stderr
    return lines[0]


def fddi(pkt: bytes) -> bytes:
    """An FDDI frame (frame control: LLC, asynchronous) with LLC/SNAP around ``pkt``."""
    return bytes([0x50]) + craft.MAC_B + craft.MAC_A + bytes.fromhex("aaaa03000000") + \
        craft.ethertype(pkt).to_bytes(2, "big") + pkt


def vxlan(inner: bytes, port: int, vni: int = 42) -> bytes:
    """``inner`` in Ethernet in VXLAN (flags: VNI valid) in UDP to ``port``, on Ethernet."""
    body = bytes.fromhex("08000000") + vni.to_bytes(3, "big") + b"\0" + craft.eth(inner)
    return craft.eth(craft.udp_ip("192.168.0.1", "192.168.0.2", 55555, port, body))


def expected_notes() -> list[tuple]:
    return [(kind, T0 + dt, CLIENT, SERVER) for dt, _, kind in HANDSHAKE]


def notes_of(path, reader: str, decapsulation=None) -> list[tuple]:
    """The whole score, each note resolved: kind, time (ns since the epoch), client and
    server (address, port), attempt, outcome, delays."""
    from handshake_score.score import compose
    from handshake_score.sources.decoding import DEFAULT
    from handshake_score.summary import reading

    with reading(reader, decapsulation or DEFAULT):
        score = compose([path], parallel=False).score
    hosts = score.hosts
    return [(str(score.kinds()[i]), score.start_ns + int(n["time_ns"]), (hosts[n["client"]], int(n["client_port"])),
             (hosts[n["server"]], int(n["server_port"])), int(n["attempt"]), str(score.outcomes()[i]),
             int(n["syn_to_syn_ack_ns"]), int(n["syn_ack_to_ack_ns"])) for i, n in enumerate(score.notes)]


@pytest.mark.parametrize("name", sorted(corpus_expectations()) + [p.name for p in CAPTURES])
def test_tshark_scores_every_capture_as_the_fast_reader_does(corpus, tshark, name):
    path = corpus / name if (corpus / name).exists() else ROOT / "captures" / name
    fast, through_tshark = notes_of(path, "fast"), notes_of(path, "tshark")
    assert through_tshark == fast
    expected = corpus_expectations().get(name)
    if expected is not None:  # and both are the score the corpus's README derives
        assert len(fast) == sum(expected["notes"].values())


def test_tshark_reader_counts_frames_and_keeps_nanoseconds(tshark, tmp_path):
    from handshake_score.sources.tshark import TsharkReader

    noise = craft.udp_ip("10.0.0.9", "10.0.0.8")
    path = craft.write(tmp_path / "f.pcap", craft.pcap(
        [(T0 - 7, fddi(noise))] + [(T0 + dt, fddi(p)) for dt, p, _ in HANDSHAKE] + [(T0 + 9_999, fddi(noise))],
        linktype=FDDI, nano=True))
    reader = TsharkReader(path)
    segments = np.concatenate(list(reader))
    assert (reader.packets, reader.segments, reader.first_ns) == (5, 3, T0 - 7)
    assert segments["time_ns"].tolist() == [T0 + dt for dt, _, _ in HANDSHAKE]
    assert segments["flags"].tolist() == [SYN, SYN | ACK, ACK]
    assert segments["seq"].tolist() == [100, 500, 101] and segments["ack"].tolist() == [0, 101, 501]


def test_auto_reads_an_unknown_link_type_through_tshark_and_says_so(tshark, tmp_path):
    path = craft.write(tmp_path / "ring.pcap", craft.pcap([(T0 + dt, fddi(p)) for dt, p, _ in HANDSHAKE],
                                                         linktype=FDDI, nano=True))
    assert [n[:4] for n in notes_of(path, "auto")] == expected_notes()
    r = hs("score", path, "--no-write", "--json")
    assert r.returncode == 0, r.stderr
    said = r.stderr.strip().splitlines()
    assert len(said) == 1 and str(path) in said[0] and "link type 10" in said[0] and "through tshark" in said[0]
    summary = json.loads(r.stdout)
    assert summary["handshakes"]["complete"] == 1 and summary["files"][0]["reader"] == "tshark"
    assert one_error_line(hs("score", path, "--no-write", "--reader", "fast")).endswith(
        "unsupported link type 10; hs reads Ethernet, Linux cooked, loopback and raw IP captures "
        "and the link types in docs/tunnels.md; rerun with --reader tshark for the rest")


def test_auto_reads_a_pcapng_with_one_unknown_interface_through_tshark(tshark, tmp_path):
    f = craft.Pcapng().section()
    ether, ring = f.interface(1, tsresol=9), f.interface(FDDI, tsresol=9)
    for dt, p, _ in HANDSHAKE:
        f.epb(ring, T0 + dt, fddi(p))
    f.epb(ether, T0 + 10**9, craft.eth(segment(("10.0.0.3", 1234), ("10.0.0.4", 443), SYN, 7)))
    path = craft.write(tmp_path / "two.pcapng", f.bytes())
    notes = notes_of(path, "auto")
    assert [n[:4] for n in notes[:3]] == expected_notes()
    assert notes[3][:4] == ("syn", T0 + 10**9, ("10.0.0.3", 1234), ("10.0.0.4", 443))


def late_interface(path: Path, known_packets: int) -> Path:
    """A pcapng whose FDDI interface is described only after ``known_packets`` Ethernet ones."""
    f = craft.Pcapng().section()
    ether = f.interface(1, tsresol=9)
    frame = craft.eth(segment(("10.0.0.3", 1234), ("10.0.0.4", 443), SYN, 7))
    for k in range(known_packets):
        f.epb(ether, T0 - 10**9 + k, frame)
    ring = f.interface(FDDI, tsresol=9)
    for dt, p, _ in HANDSHAKE:
        f.epb(ring, T0 + dt, fddi(p))
    return craft.write(path, f.bytes())


def test_an_unknown_interface_met_mid_file_says_to_rerun_through_tshark(tshark, tmp_path):
    from handshake_score.sources import CHUNK_SIZE

    path = late_interface(tmp_path / "late.pcapng", CHUNK_SIZE // 64)  # the first chunk all Ethernet
    line = one_error_line(hs("score", path, "--no-write"))
    assert "unsupported link type 10" in line and "rerun with --reader tshark" in line
    r = hs("score", path, "--no-write", "--json", "--reader", "tshark")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["handshakes"]["complete"] == 1


def test_an_unknown_interface_met_before_any_segment_went_out_hands_over_to_tshark(tshark, tmp_path):
    path = late_interface(tmp_path / "late.pcapng", 1)  # one chunk: the fast reader yields nothing
    notes = notes_of(path, "auto")
    assert notes[0][:4] == ("syn", T0 - 10**9, ("10.0.0.3", 1234), ("10.0.0.4", 443))
    assert [n[:4] for n in notes[1:]] == expected_notes()


def test_missing_tshark_says_what_to_install(tmp_path):
    path = craft.write(tmp_path / "ring.pcap", craft.pcap([(T0, fddi(HANDSHAKE[0][1]))], linktype=FDDI, nano=True))
    empty = tmp_path / "bin"
    empty.mkdir()
    for reader in ("auto", "tshark"):
        line = one_error_line(hs("score", path, "--no-write", "--reader", reader, env={"PATH": str(empty)}))
        assert "tshark is not installed" in line and "apt install tshark" in line


def test_a_bad_reader_is_one_line(tmp_path):
    line = one_error_line(hs("score", ROOT / "captures" / "example-loopback.pcapng", "--no-write", "--reader", "wireshark"))
    assert "--reader" in line and "'wireshark'" in line and "auto, fast or tshark" in line


@pytest.mark.parametrize("reader", ["fast", "tshark"])
def test_vxlan_port_option_reaches_the_reader(tshark, tmp_path, reader):
    path = craft.write(tmp_path / "vx.pcap", craft.pcap([(T0 + dt, vxlan(p, 4790)) for dt, p, _ in HANDSHAKE],
                                                       nano=True))
    plain = json.loads(hs("score", path, "--no-write", "--json", "--reader", reader).stdout)
    assert sum(plain["notes"].values()) == 0 and plain["packets"] == 3
    r = hs("score", path, "--no-write", "--json", "--reader", reader, "--vxlan-port", 4790)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["handshakes"]["complete"] == 1
    from handshake_score.sources.readers import with_ports

    assert [n[:4] for n in notes_of(path, reader, with_ports(vxlan=(4790,)))] == expected_notes()


def test_port_options_add_to_the_defaults_and_are_checked():
    from handshake_score.errors import HandshakeScoreError
    from handshake_score.sources.decoding import DEFAULT
    from handshake_score.sources.readers import with_ports

    d = with_ports(vxlan=(4790, 4789), geneve=(6082,), gtp=(2153,), vlan_key=True)
    assert d.vxlan_ports == (*DEFAULT.vxlan_ports, 4790) and d.geneve_ports == (*DEFAULT.geneve_ports, 6082)
    assert d.gtp_ports == (*DEFAULT.gtp_ports, 2153) and d.context
    with pytest.raises(HandshakeScoreError, match="--gtp-port: 0 is not a UDP port"):
        with_ports(gtp=(0,))
    assert "--vxlan-port is for --live" in one_error_line(hs("play", "x.score", "--vxlan-port", 4790))


def test_context_groups_segments_as_the_fast_reader_does(tshark, tmp_path):
    """``--vlan-key``: the same conversation on two VLANs and in a VXLAN tunnel is three
    places to both readers (the values differ; which segments share one must not)."""
    from handshake_score.sources import CaptureReader
    from handshake_score.sources.decoding import Decapsulation
    from handshake_score.sources.tshark import TsharkReader

    records = []
    for where in range(3):
        for dt, p, _ in HANDSHAKE:
            frame = vxlan(p, 4789) if where == 2 else craft.eth(p, vlans=[(craft.ETH_VLAN, 10 + where)])
            records.append((T0 + where * 10**6 + dt, frame))
    path = craft.write(tmp_path / "places.pcap", craft.pcap(records, nano=True))

    def places(reader) -> list[int]:
        seen = []
        for batch in reader.batches():
            seen += batch.context(np.arange(len(batch))).tolist()
        first = {c: i for i, c in reversed(list(enumerate(seen)))}
        return [first[c] for c in seen]

    asked = Decapsulation(context=True)
    fast = places(CaptureReader(path, decapsulation=asked))
    assert fast == [0, 0, 0, 3, 3, 3, 6, 6, 6]
    assert places(TsharkReader(path, decapsulation=asked)) == fast


def test_stopping_early_stops_tshark(tshark, monkeypatch):
    """A consumer that stops after the first batch leaves no tshark running, nor a zombie."""
    from handshake_score.sources import tshark as module

    monkeypatch.setattr(module, "CHUNK_BYTES", 256)  # a batch of a few frames
    reader = module.TsharkReader(ROOT / "captures" / "heartbeat-loopback.pcapng")  # 1,300 frames: more than a pipe holds
    batches = reader.batches()
    next(batches)
    proc = reader.process
    assert proc.poll() is None  # still writing: the pipe is full
    assert 0 < reader.bytes_read <= reader.size  # tshark's position in the file, for a progress bar
    batches.close()
    assert proc.returncode is not None and not os.path.exists(f"/proc/{proc.pid}")
    assert proc.stdout.closed


def wlan(body: bytes, protected: bool = False) -> bytes:
    """An 802.11 data frame to the AP (no radio header), its Protected bit as asked."""
    flags = 0x01 | (0x40 if protected else 0)
    return bytes([0x08, flags, 0, 0]) + craft.MAC_A + craft.MAC_B + craft.MAC_A + b"\0\0" + body


def test_the_summary_counts_protected_frames_skipped(tshark, tmp_path):
    syn = HANDSHAKE[0][1]
    snap = bytes.fromhex("aaaa03000000") + craft.ethertype(syn).to_bytes(2, "big") + syn
    sealed = wlan(bytes.fromhex("0100002000000000") + b"\x55" * 60, protected=True)  # a CCMP header, then noise
    path = craft.write(tmp_path / "wlan.pcap", craft.pcap([(T0, wlan(snap)), (T0 + 1000, sealed), (T0 + 2000, sealed)],
                                                         linktype=105, nano=True))
    theirs = subprocess.run([tshark, "-r", path, "-T", "fields", "-e", "wlan.fc.protected"], capture_output=True,
                            text=True, check=True).stdout.split()
    r = hs("score", path, "--no-write", "--reader", "fast")
    assert r.returncode == 0, r.stderr
    assert f"{path}: 3 packets (pcap, {theirs.count('1')} protected 802.11 frames skipped)" in r.stdout.splitlines()
    summary = json.loads(hs("score", path, "--no-write", "--json").stdout)
    assert summary["files"][0]["protected"] == theirs.count("1") and summary["notes"]["syn"] == 1


@pytest.mark.parametrize("option", [(), ("--vxlan-port", "4790")])
def test_play_live_reads_the_vxlan_port_it_is_given(option):
    """On loopback, a handshake wrapped in VXLAN and sent to UDP 4790 (no kernel tunnel
    needed: the frames are the datagrams' payload) is heard with --vxlan-port 4790 only."""
    import shutil
    import socket

    from conftest import missing

    if os.geteuid() != 0 or not shutil.which("tcpdump"):
        missing("hs play --live needs tcpdump and root here")
    play = subprocess.Popen(HS + ["play", "--live", "-i", "lo", "--duration", "3", "--to", "console", *option],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert play.stderr.readline().startswith("hs: live on lo"), play.stderr.read()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            for _, p, _ in HANDSHAKE:
                udp.sendto(bytes.fromhex("08000000") + (42).to_bytes(3, "big") + b"\0" + craft.eth(p),
                           ("127.0.0.1", 4790))
        out, err = play.communicate(timeout=60)
    finally:
        play.kill()
        play.wait()
    assert play.returncode == 0, err
    # only the tunnelled conversation: other programs may talk TCP on loopback meanwhile
    heard = [line.split()[1:4] for line in out.splitlines() if "->" in line and "10.0.0." in line]
    assert heard == ([["SYN", "10.0.0.1:40000", "->"], ["SYN-ACK", "10.0.0.2:80", "->"], ["ACK", "10.0.0.1:40000", "->"]]
                     if option else []), out
