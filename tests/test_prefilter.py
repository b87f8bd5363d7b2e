"""The prefilter changes no note: the tracker fed only what it passes gives exactly the
notes it gives fed every segment, one packet at a time, on every corpus capture, on
small versions of every benchmark capture and on crafted cases around what it forgets,
with chunks of several sizes. And it forgets: an upload's ACKs never reach the tracker."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

import craft
from conftest import CORPUS, ROOT
from handshake_score.segments import ACK, FIN, PSH, RST, SYN
from handshake_score.sources import CaptureReader
from handshake_score.summary import score_files
from handshake_score.tracker import HandshakeTracker

CHUNKS = (64, 4096, 1 << 16, None)  # None: the reader's own (2 MiB); 64 bytes: about a record per chunk


def _make_capture():
    spec = importlib.util.spec_from_file_location("make_capture", ROOT / "benchmarks" / "make_capture.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_capture = _make_capture()


def described(notes, tracker):
    return [(n.time_ns, n.kind, n.handshake.flow, n.handshake.isn, n.handshake.outcome) for n in notes], \
        dict(tracker.outcomes), tracker.evicted


def one_packet_at_a_time(path):
    """The reference: every segment fed to the tracker, each in a batch of its own."""
    tracker, notes = HandshakeTracker(), []
    for batch in CaptureReader(path).batches():
        segments = batch.select()
        for i in range(len(segments)):
            notes += tracker.feed(segments[i:i + 1])
    tracker.close()
    return described(notes, tracker)


def prefiltered(path, chunk_size):
    """What ``hs score`` does: each chunk through the prefilter, the rest to the tracker."""
    tracker, notes, fed = HandshakeTracker(), [], 0
    for batch in CaptureReader(path, chunk_size=chunk_size).batches():
        wanted = tracker.prefilter.wanted(batch)
        fed += int(np.count_nonzero(wanted))
        notes += tracker.feed(batch.select(wanted))
    tracker.close()
    return described(notes, tracker), fed


def assert_same_notes(path, chunks=CHUNKS) -> int:
    """Every chunk size gives the reference's notes; the segments fed at the default size."""
    reference = one_packet_at_a_time(path)
    fed = None
    for chunk in chunks:
        got, fed = prefiltered(path, chunk)
        assert got == reference, f"chunk size {chunk}"
    return fed


@pytest.mark.parametrize("name", sorted(p.name for p in CORPUS.iterdir() if p.suffix in (".pcap", ".pcapng")))
def test_no_note_changes_on_the_corpus(name):
    assert_same_notes(CORPUS / name)


SHAPES = [  # small versions of bench_score.py's synthetic captures: (shape, format, snap length)
    ("mixed", "pcap", 128), ("upload", "pcap", 0), ("upload", "pcap", 128), ("download", "pcapng", 0),
    ("download", "pcapng", 128), ("upload", "pcapng", 128),
]


@pytest.mark.parametrize("shape, fmt, snaplen", SHAPES)
def test_no_note_changes_on_the_benchmark_shapes(shape, fmt, snaplen, tmp_path):
    path = tmp_path / f"{shape}.{fmt}"
    truth = make_capture.make(path, 20_000, fmt, snaplen, seed=7, shape=shape)
    fed = assert_same_notes(path, chunks=(4096, None))
    summary = score_files([path]).as_dict()
    assert summary["notes"] == truth["notes"] and summary["handshakes"] == truth["handshakes"]
    # what can change a handshake and no more: SYNs, RSTs, and about one ACK per SYN-ACK
    assert fed <= truth["syn_or_rst_packets"] + 1.05 * truth["syn_ack_packets"]


def test_no_note_changes_on_a_flood(tmp_path):
    path = tmp_path / "flood.pcap"
    make_capture.make_flood(path, 5000, clients=300)
    assert assert_same_notes(path, chunks=(4096, None)) == 5000


def test_no_note_changes_on_real_loopback_traffic(dumpcap, tmp_path):
    """The benchmark's real capture, small: uploads, downloads, short, refused and unanswered connections."""
    path = tmp_path / "loopback.pcapng"
    made = make_capture.record_loopback(path, 30_000, transfer_mb=1.0, threads=1)["handshakes"]
    fed = assert_same_notes(path, chunks=(4096, 1 << 16, None))
    summary = score_files([path]).as_dict()
    assert summary["handshakes"] == made
    assert fed <= 4 * sum(made.values()) + summary["notes"]["syn-retry"] + 100  # not the transfers' packets


# -- crafted cases around what the prefilter forgets ------------------------------------------

C, C2, S = "10.0.0.2", "10.0.0.3", "192.0.2.1"
CP, SP = 40000, 443
MS = 1_000_000
T0 = 1_700_000_000 * 10**9


def capture(tmp_path, packets, name="crafted.pcap"):
    """``packets``: (ms after T0, src, sport, dst, dport, flags, seq, ack, payload length)."""
    records = [(T0 + round(ms * 1000) * 1000, craft.eth(craft.tcp_ip(src, dst, sp, dp, flags, seq, ack, b"x" * n)))
               for ms, src, sp, dst, dp, flags, seq, ack, n in packets]
    return craft.write(tmp_path / name, craft.pcap(records))


def handshake(t, isn=1000, server_isn=5000, client=C, port=CP):
    return [(t, client, port, S, SP, SYN, isn, 0, 0), (t + 1, S, SP, client, port, SYN | ACK, server_isn, isn + 1, 0),
            (t + 2, client, port, S, SP, ACK, isn + 1, server_isn + 1, 0)]


def upload(t, n, isn=1000, server_isn=5000, client=C, port=CP, every=0.1):
    """``n`` full segments from the client, each acknowledging the server's ISN + 1, and the server's ACKs."""
    out = []
    for k in range(n):
        seq = isn + 1 + k * 1400
        out.append((t + k * every, client, port, S, SP, ACK | PSH, seq, server_isn + 1, 1400))
        if k % 2:
            out.append((t + k * every + 0.05, S, SP, client, port, ACK, server_isn + 1, seq + 1400, 0))
    return out


def kinds(path):
    notes, _, _ = one_packet_at_a_time(path)
    return [kind for _, kind, _, _, _ in notes]


def test_syn_ack_repeated_after_completion_mid_upload(tmp_path):
    """The server missed the ACK and repeats its SYN-ACK while the upload runs: heard, and the
    upload's next ACK (which the key, armed again, lets through) changes nothing."""
    packets = handshake(0) + upload(3, 200) + [(10, S, SP, C, CP, SYN | ACK, 5000, 1001, 0)] + upload(11, 200)
    path = capture(tmp_path, sorted(packets, key=lambda p: p[0]))
    assert kinds(path) == ["syn", "syn-ack", "ack", "syn-ack-retry"]
    fed = assert_same_notes(path)
    assert fed <= 3 + 1 + 1  # the handshake, the repeated SYN-ACK and one ACK after it


def test_port_reused_with_a_new_isn_mid_upload(tmp_path):
    """A new attempt on the same ports (new ISN, new server ISN) while the old upload's
    segments are still in flight: both handshakes complete."""
    packets = (handshake(0) + upload(3, 100) + handshake(8, isn=777_000, server_isn=999_000)
               + upload(7, 50) + upload(9, 100, isn=777_000, server_isn=999_000))
    path = capture(tmp_path, sorted(packets, key=lambda p: p[0]))
    assert kinds(path) == ["syn", "syn-ack", "ack", "syn", "syn-ack", "ack"]
    assert assert_same_notes(path) <= 6 + 2


def test_keep_alives_change_nothing(tmp_path):
    """An idle connection's keep-alives (the client's carry the server's ISN + 1, like its
    handshake ACK; the server's the client's ISN + 1) make no note, before or after a
    second connection."""
    alive = [(2_000 + k * 75_000, C, CP, S, SP, ACK, 1000, 5001, 0) for k in range(3)]
    alive += [(2_001 + k * 75_000, S, SP, C, CP, ACK, 5000, 1001, 0) for k in range(3)]
    packets = handshake(0) + alive + handshake(100_000, isn=1, server_isn=2, port=CP + 1)
    path = capture(tmp_path, sorted(packets, key=lambda p: p[0]))
    assert kinds(path) == ["syn", "syn-ack", "ack"] * 2
    assert_same_notes(path)


def test_syn_ack_before_its_syn_with_an_ack_between(tmp_path):
    """Captured out of order: the SYN-ACK, an ACK carrying its number, then the SYN and
    the ACK. The tracker adopts the SYN-ACK at the SYN; the ACK after it completes."""
    packets = [(0, S, SP, C, CP, SYN | ACK, 5000, 1001, 0), (0.5, C, CP, S, SP, ACK, 1001, 5001, 0),
               (1, C, CP, S, SP, SYN, 1000, 0, 0), (2, C, CP, S, SP, ACK, 1001, 5001, 0)]
    path = capture(tmp_path, packets + upload(3, 50))
    assert kinds(path) == ["syn", "syn-ack", "ack"]
    assert_same_notes(path)


def test_another_four_tuple_with_the_same_numbers_spends_nothing(tmp_path):
    """Two clients, same ports, same server ISN: one's upload never spends the other's key."""
    packets = (handshake(0, client=C2)[:2] + upload(1, 40, client=C2) + handshake(0, client=C2)[2:]
               + handshake(100) + upload(103, 40))
    packets = [(p[0] + 10, *p[1:]) if p[1] == C2 and p[5] == ACK and p[0] == 2 else p for p in packets]
    path = capture(tmp_path, sorted(packets, key=lambda p: p[0]))
    assert kinds(path).count("ack") == 2
    assert_same_notes(path)


def test_an_ack_before_its_syn_ack_and_a_retried_syn_ack(tmp_path):
    packets = [(0, C, CP, S, SP, SYN, 1000, 0, 0), (0.5, C, CP, S, SP, ACK, 1001, 5001, 0),
               (1, S, SP, C, CP, SYN | ACK, 5000, 1001, 0), (1001, S, SP, C, CP, SYN | ACK, 5000, 1001, 0),
               (1002, C, CP, S, SP, ACK, 1001, 5001, 0), (1003, C, CP, S, SP, ACK | FIN, 1001, 5001, 0),
               (1004, S, SP, C, CP, RST, 5001, 0, 0)]
    path = capture(tmp_path, packets)
    assert kinds(path) == ["syn", "syn-ack", "syn-ack-retry", "ack"]
    assert_same_notes(path)


def test_time_passes_packet_by_packet_whatever_the_batches(tmp_path):
    """An attempt past its timeout is gone for the next packet, even in the same batch: a
    SYN-ACK 136 s after its SYN finds nothing, a SYN-ACK retry 11 s after the ACK neither."""
    packets = [(0, C, CP, S, SP, SYN, 1000, 0, 0), (135_999, C2, CP, S, SP, SYN, 7, 0, 0),
               (136_000, S, SP, C, CP, SYN | ACK, 5000, 1001, 0), (136_001, C, CP, S, SP, ACK, 1001, 5001, 0),
               (136_002, S, SP, C2, CP, SYN | ACK, 70, 8, 0), (136_003, C2, CP, S, SP, ACK, 8, 71, 0),
               (147_004, S, SP, C2, CP, SYN | ACK, 70, 8, 0)]
    path = capture(tmp_path, packets)
    assert kinds(path) == ["syn", "syn", "syn-ack", "ack"]
    segments = np.concatenate(list(CaptureReader(path)))
    tracker = HandshakeTracker()
    whole = tracker.feed(segments)  # all in one batch
    tracker.close()
    assert described(whole, tracker) == one_packet_at_a_time(path)
    assert_same_notes(path)


def test_the_prefilter_carries_on_in_another_process(tmp_path):
    """Read by a forked worker, file after file of one capture: the same summary."""
    path = tmp_path / "upload.pcap"
    make_capture.make(path, 20_000, "pcap", 128, seed=3, shape="upload")
    results = [score_files([path], parallel=p).as_dict() for p in (False, True)]
    for r in results:
        r.pop("seconds")
    assert results[0] == results[1]
    assert results[0]["handshakes"] == json.loads(path.with_name(path.name + ".expected.json").read_text())["handshakes"]


@pytest.mark.parametrize("name", sorted(p.name for p in CORPUS.iterdir() if p.suffix in (".pcap", ".pcapng")))
def test_addresses_are_those_select_decodes(name):
    """The prefilter's cheap read of the addresses (one read for an all-IPv4 batch) gives
    what ``select`` decodes, for IPv4 and IPv6 alike, in batches of one kind or both."""
    for chunk in (4096, None):
        for batch in CaptureReader(CORPUS / name, chunk_size=chunk).batches():
            rows = np.arange(len(batch))
            segments = batch.select(rows)
            want = [np.ascontiguousarray(segments[f]).view(">u8").reshape(-1, 2)[:, k]
                    for f in ("src", "dst") for k in (0, 1)]
            got = batch.addresses(rows)
            for g, w in zip(got, want):
                assert np.array_equal(np.broadcast_to(g, len(rows)), w.astype(np.uint64))
