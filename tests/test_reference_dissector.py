"""Differential test: the SYN and SYN-ACK segments our reader finds, against
tshark's own dissection of the same file through pyshark, field by field, to the
nanosecond. One pyshark FileCapture (one tshark process) per file."""

from __future__ import annotations

import asyncio
import ipaddress
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest

from conftest import CORPUS, ROOT, corpus_expectations
from loopback import V4, V6, make_capture

import pyshark  # a test dependency: missing, the test must fail, not skip
from handshake_score.segments import ACK, SYN, address
from handshake_score.sources import CaptureReader

EXAMPLE = ROOT / "captures" / "example-loopback.pcapng"

def ours(path: Path) -> list[tuple]:
    """(time_ns, src, sport, dst, dport, flags, seq, ack, payload) of every segment with SYN set."""
    out = []
    for rows in CaptureReader(path):
        for r in rows[(rows["flags"] & SYN) != 0]:
            out.append((int(r["time_ns"]), address(r["src"].tobytes()), int(r["sport"]),
                        address(r["dst"].tobytes()), int(r["dport"]), int(r["flags"]),
                        int(r["seq"]), int(r["ack"]), int(r["payload"])))
    return out


def theirs(path: Path, tshark: str) -> list[tuple]:
    """tshark's view, through pyshark. Two pyshark 0.6 pitfalls avoided: its default
    event loop breaks after asyncio.run() in the main thread (and it installs a global
    child watcher), so it gets a loop of our own; and at end of file it kills tshark
    when tshark has exited but is not reaped yet, which races with asyncio's reaper
    and reports tshark as crashed (returncode 255): so we wait for tshark to exit first."""
    out = []

    def row(p):
        ip = [layer for layer in p.layers if layer.layer_name in ("ip", "ipv6")][-1]
        tcp = p.tcp
        out.append((int(Decimal(p.frame_info.time_epoch) * 1_000_000_000),  # never via float
                    ipaddress.ip_address(ip.src), int(tcp.srcport),
                    ipaddress.ip_address(ip.dst), int(tcp.dstport), int(tcp.flags, 16),
                    int(tcp.seq_raw), int(tcp.ack_raw), int(tcp.len)))

    async def read():
        await cap.packets_from_tshark(row, close_tshark=False)
        return await asyncio.gather(*(proc.wait() for proc in cap._running_processes))

    loop = asyncio.new_event_loop()
    cap = pyshark.FileCapture(str(path), display_filter="tcp.flags.syn==1", keep_packets=False,
                              use_json=True, tshark_path=tshark, eventloop=loop)
    try:
        assert loop.run_until_complete(read()) == [0], "tshark failed"
    finally:
        cap.close()
        loop.close()
    return out


def assert_same(path: Path, tshark: str) -> list[tuple]:
    mine, ref = ours(path), theirs(path, tshark)
    assert [r for r in mine if r not in ref] == [], "segments tshark does not see"
    assert [r for r in ref if r not in mine] == [], "segments tshark sees and we miss"
    assert mine == ref  # same segments, same order, no duplicates
    return ref


EXPECTED = corpus_expectations() if CORPUS.is_dir() else {}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_syn_segments_match_tshark(corpus, tshark, name):
    ref = assert_same(corpus / name, tshark)
    # In this corpus every SYN-flagged packet is a note: the comparison is not vacuous.
    notes = EXPECTED[name]["notes"]
    assert len(ref) == notes["syn"] + notes["syn-retry"] + notes["syn-ack"] + notes["syn-ack-retry"]


def test_every_corpus_file_is_compared(corpus):
    assert sorted(p.name for p in corpus.iterdir() if p.suffix in (".pcap", ".pcapng")) == sorted(EXPECTED)


def test_example_capture_matches_tshark(tshark):
    ref = assert_same(EXAMPLE, tshark)
    assert len(ref) == 5 + 4  # 5 SYNs (one refused), 4 SYN-ACKs: see captures/README.md


@pytest.mark.capture
@pytest.mark.parametrize("snaplen", [None, 64])
def test_loopback_capture_matches_tshark(dumpcap, tshark, tmp_path, snaplen):
    """Full packets; and a snap length of 64, which keeps IPv4 TCP flags (byte 48 on lo)
    but cuts IPv6 ones (byte 68): neither tshark nor we may see those SYNs then."""
    path = tmp_path / "mixed.pcapng"
    made = make_capture(dumpcap, path, [("complete", V4, 5), ("refused", V4, 2), ("complete", V6, 3),
                                        ("refused", V6, 2), ("concurrent", V4, 40), ("concurrent", V6, 10)], snaplen)
    ref = assert_same(path, tshark)
    seen = [(o, c) for o, c, _ in made if snaplen is None or c[0] == V4]
    assert (len(made), len(seen)) == (62, 62 if snaplen is None else 47)
    # one SYN per attempt, one SYN-ACK per completed one ...
    assert len(ref) == len(seen) + sum(o == "complete" for o, _ in seen)
    # ... and the SYNs' clients are the client sockets recorded
    clients = Counter((ipaddress.ip_address(h), p) for _, (h, p) in seen)
    assert Counter((r[1], r[2]) for r in ref if not r[5] & ACK) == clients
