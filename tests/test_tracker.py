"""The handshake tracker's rules, one case each, fed segments built by hand."""

from __future__ import annotations

import numpy as np
import pytest

from handshake_score.segments import ACK, FIN, RST, SYN, make_segments
from handshake_score.tracker import HandshakeTracker

C, S = ("10.0.0.2", 40000), ("10.0.0.1", 80)
MS = 1_000_000


def run(rows, **options):
    """Feed rows one at a time (as the live path does); notes as (time, kind, handshake id)."""
    closed = []
    tracker = HandshakeTracker(on_close=closed.append, **options)
    notes = []
    for row in rows:
        notes += tracker.feed(make_segments([row]))
    tracker.close()
    return [(n.time_ns, n.kind, n.handshake.id) for n in notes], closed, tracker


def handshake(t0=0, client=C, server=S, isn=1000, server_isn=5000):
    return [
        (t0, client, server, SYN, isn, 0, 0),
        (t0 + 30 * MS, server, client, SYN | ACK, server_isn, isn + 1, 0),
        (t0 + 31 * MS, client, server, ACK, isn + 1, server_isn + 1, 0),
    ]


def test_complete_handshake_notes_outcome_and_delays():
    notes, closed, tracker = run(handshake())
    assert notes == [(0, "syn", 1), (30 * MS, "syn-ack", 1), (31 * MS, "ack", 1)]
    (h,) = closed
    assert (h.outcome, h.syn_to_syn_ack_ns, h.syn_ack_to_ack_ns) == ("complete", 30 * MS, 1 * MS)
    assert (h.client, h.server, h.isn, h.server_isn) == (C, S, 1000, 5000)
    assert tracker.outcomes == {"complete": 1, "refused": 0, "unanswered": 0, "incomplete": 0}


def test_syn_retries_with_same_isn_then_unanswered():
    rows = [(t * 1000 * MS, C, S, SYN, 7, 0, 0) for t in (0, 1, 3)]
    notes, closed, _ = run(rows)
    assert [k for _, k, _ in notes] == ["syn", "syn-retry", "syn-retry"]
    assert [h.outcome for h in closed] == ["unanswered"]
    assert closed[0].syns == 3


def test_new_isn_on_same_ports_is_a_new_attempt():
    rows = [(0, C, S, SYN, 7, 0, 0), (MS, C, S, SYN, 99, 0, 0)]
    notes, closed, _ = run(rows)
    assert [(k, i) for _, k, i in notes] == [("syn", 1), ("syn", 2)]
    assert sorted(h.isn for h in closed) == [7, 99]


def test_refused_by_server_rst():
    rows = [(0, C, S, SYN, 7, 0, 0), (2 * MS, S, C, RST | ACK, 0, 8, 0)]
    notes, closed, _ = run(rows)
    assert [k for _, k, _ in notes] == ["syn", "rst"]
    assert closed[0].outcome == "refused"


def test_rst_after_syn_ack_is_incomplete_and_only_first_rst_counts():
    rows = handshake()[:2] + [(40 * MS, S, C, RST, 5001, 0, 0), (41 * MS, S, C, RST, 5001, 0, 0)]
    notes, closed, _ = run(rows)
    assert [k for _, k, _ in notes] == ["syn", "syn-ack", "rst"]
    assert closed[0].outcome == "incomplete"


def test_rst_after_completion_is_not_a_note():
    notes, _, _ = run(handshake() + [(50 * MS, S, C, RST, 5001, 0, 0)])
    assert [k for _, k, _ in notes] == ["syn", "syn-ack", "ack"]


def test_syn_ack_retry_and_incomplete():
    rows = handshake()[:2] + [(1030 * MS, S, C, SYN | ACK, 5000, 1001, 0)]
    notes, closed, _ = run(rows)
    assert [k for _, k, _ in notes] == ["syn", "syn-ack", "syn-ack-retry"]
    assert closed[0].outcome == "incomplete"


def test_ack_must_acknowledge_server_isn_plus_one():
    rows = handshake()[:2] + [(31 * MS, C, S, ACK, 1001, 4242, 0)]
    notes, closed, _ = run(rows)
    assert [k for _, k, _ in notes] == ["syn", "syn-ack"]
    assert closed[0].outcome == "incomplete"


def test_completing_ack_may_carry_data_and_fin():
    rows = handshake()[:2] + [(31 * MS, C, S, ACK | FIN, 1001, 5001, 10)]
    notes, _, _ = run(rows)
    assert [k for _, k, _ in notes] == ["syn", "syn-ack", "ack"]


def test_fast_open_syn_ack_acknowledging_the_data():
    rows = [(0, C, S, SYN, 1000, 0, 20), (MS, S, C, SYN | ACK, 5000, 1021, 0), (2 * MS, C, S, ACK, 1021, 5001, 0)]
    notes, closed, _ = run(rows)
    assert [k for _, k, _ in notes] == ["syn", "syn-ack", "ack"]
    assert closed[0].outcome == "complete"


def test_syn_ack_captured_before_its_syn():
    rows = [(0, S, C, SYN | ACK, 5000, 1001, 0), (MS // 10, C, S, SYN, 1000, 0, 0), (2 * MS, C, S, ACK, 1001, 5001, 0)]
    notes, closed, _ = run(rows)
    assert sorted(notes) == [(0, "syn-ack", 1), (MS // 10, "syn", 1), (2 * MS, "ack", 1)]
    assert closed[0].outcome == "complete"
    assert closed[0].syn_to_syn_ack_ns == -MS // 10  # as captured: the SYN-ACK came first


def test_flow_whose_syn_predates_the_capture_gives_no_notes():
    rows = [(0, S, C, SYN | ACK, 5000, 1001, 0), (10 * MS, C, S, ACK, 1001, 5001, 0), (11 * MS, C, S, ACK | FIN, 1001, 5001, 0),
            (5000 * MS, C, S, RST, 1002, 0, 0)]
    notes, closed, _ = run(rows)
    assert notes == [] and closed == []


def test_simultaneous_open_is_two_attempts():
    A, B = ("10.0.0.1", 5000), ("10.0.0.2", 6000)
    rows = [
        (0, A, B, SYN, 100, 0, 0), (1, B, A, SYN, 300, 0, 0),
        (2, A, B, SYN | ACK, 100, 301, 0), (3, B, A, SYN | ACK, 300, 101, 0),
        (4, A, B, ACK, 101, 301, 0), (5, B, A, ACK, 301, 101, 0),
    ]
    notes, closed, _ = run(rows)
    # A's SYN-ACK answers B's attempt, B's answers A's; each side's next ACK completes its own
    assert notes == [(0, "syn", 1), (1, "syn", 2), (2, "syn-ack", 2), (3, "syn-ack", 1), (4, "ack", 1), (5, "ack", 2)]
    assert [h.outcome for h in closed] == ["complete", "complete"]


def test_ipv6_handshake():
    c6, s6 = ("2001:db8::2", 40000), ("2001:db8::1", 443)
    notes, closed, _ = run(handshake(client=c6, server=s6))
    assert [k for _, k, _ in notes] == ["syn", "syn-ack", "ack"]
    assert closed[0].client == c6 and closed[0].server == s6


def test_attempts_expire_after_the_timeout():
    rows = [(0, C, S, SYN, 1, 0, 0), (200_000 * MS, C, ("10.0.0.9", 80), SYN, 2, 0, 0)]
    closed = []
    tracker = HandshakeTracker(timeout_s=135, on_close=closed.append)
    for row in rows:
        tracker.feed(make_segments([row]))
    assert [h.isn for h in closed] == [1]  # the first left when time passed, before close()
    assert tracker.open_attempts == 1
    # a SYN-ACK after the attempt expired finds nothing to answer
    tracker.feed(make_segments([(200_001 * MS, S, C, SYN | ACK, 9, 2, 0)]))
    assert tracker.notes["syn-ack"] == 0


def test_table_cap_evicts_oldest_and_counts_them():
    rows = [(i, ("10.1.0.1", 1024 + i), S, SYN, i, 0, 0) for i in range(1000)]
    tracker = HandshakeTracker(max_attempts=100)
    tracker.feed(make_segments(rows))
    assert tracker.open_attempts == 100
    assert tracker.evicted == 900
    tracker.close()
    assert tracker.outcomes["unanswered"] == 1000


def test_a_syn_flood_keeps_memory_bounded():
    """A million unanswered SYNs fed in batches never hold more than the cap."""
    tracker = HandshakeTracker(max_attempts=5000)
    rng = np.random.default_rng(0)
    base = make_segments([(0, C, S, SYN, 0, 0, 0)])
    for start in range(0, 1_000_000, 50_000):
        batch = np.repeat(base, 50_000)
        batch["time_ns"] = np.arange(start, start + 50_000) * 1000
        batch["sport"] = rng.integers(1024, 65535, 50_000)
        batch["src"] = rng.integers(0, 256, (50_000, 16), dtype=np.uint8).view("V16").ravel()
        batch["seq"] = rng.integers(0, 1 << 32, 50_000, dtype=np.uint64)
        tracker.feed(batch)
        assert tracker.open_attempts <= 5000
        assert len(tracker._queue) <= 2 * 5000 + 50_000
    assert tracker.notes["syn"] == 1_000_000
    assert tracker.evicted == 1_000_000 - 5000


@pytest.mark.parametrize("invalid", [{"timeout_s": 0}, {"max_attempts": 0}])
def test_invalid_options(invalid):
    with pytest.raises(ValueError):
        HandshakeTracker(**invalid)


def test_prefilter_passes_the_completing_ack_of_an_earlier_batch():
    from handshake_score.segments import TcpBatch
    from handshake_score.tracker import Prefilter

    def batch(rows):
        seg = make_segments(rows)
        return TcpBatch(seg["flags"], seg["sport"], seg["dport"], seg["seq"], seg["ack"], seg.__getitem__, len(seg))

    pf = Prefilter(horizon_ns=10 * 1000 * MS)
    assert pf.wanted(batch(handshake()[:2])).tolist() == [True, True]
    late = [(32 * MS, C, S, ACK, 1001, 5001, 0), (33 * MS, C, S, ACK, 1001, 9999, 0), (34 * MS, C, S, ACK | FIN, 1, 5001, 0)]
    assert pf.wanted(batch(late)).tolist() == [True, False, False]  # the first spent the key
    # past the horizon the key is forgotten once pruning runs
    flood = [(20_000 * MS + i, S, ("10.9.0.1", 1024 + i % 60000), SYN | ACK, i, 1, 0) for i in range(10_000)]
    pf.wanted(batch(flood))
    assert pf.wanted(batch([(20_001 * MS, C, S, ACK, 1001, 5001, 0)])).tolist() == [False]


def test_prefilter_keeps_the_newest_keys_in_a_flood_of_syn_acks():
    from handshake_score.segments import TcpBatch
    from handshake_score.tracker import Prefilter

    pf = Prefilter(horizon_ns=1 << 60, max_keys=5000)
    for start in range(0, 50_000, 10_000):
        seg = make_segments([(start + i, S, C, SYN | ACK, 0, 1, 0) for i in range(10_000)])
        seg["seq"] = np.arange(start, start + 10_000)  # distinct keys, in time order
        pf.wanted(TcpBatch(seg["flags"], seg["sport"], seg["dport"], seg["seq"], seg["ack"], seg.__getitem__, len(seg)))
    assert len(pf._armed) <= 2 * 5000 + 10_000
    assert pf.dropped >= 50_000 - (2 * 5000 + 10_000)
    acks = make_segments([(60_000, C, S, ACK, 1, 49_999 + 1, 0), (60_001, C, S, ACK, 1, 0 + 1, 0)])
    mask = pf.wanted(TcpBatch(acks["flags"], acks["sport"], acks["dport"], acks["seq"], acks["ack"], acks.__getitem__, 2))
    assert mask.tolist() == [True, False]  # the newest SYN-ACK's ACK passes, the oldest was dropped


def test_completed_attempt_lingers_for_syn_ack_retries_then_leaves():
    other = ("10.0.0.3", 40001)
    rows = handshake() + [
        (5_000 * MS, S, C, SYN | ACK, 5000, 1001, 0),       # the server did not hear the ACK: heard
        (9_000 * MS, other, S, SYN, 77, 0, 0),              # time passes on another flow
        (20_000 * MS, other, S, SYN, 77, 0, 0),
        (20_001 * MS, S, C, SYN | ACK, 5000, 1001, 0),      # long after: no attempt, no note
    ]
    closed = []
    tracker = HandshakeTracker(linger_s=10, on_close=closed.append)
    kinds = []
    for row in rows:
        kinds += [n.kind for n in tracker.feed(make_segments([row]))]
        if row[0] == 9_000 * MS:
            assert closed == []  # still lingering 9 s after its ACK
    assert kinds == ["syn", "syn-ack", "ack", "syn-ack-retry", "syn", "syn-retry"]
    assert [(h.isn, h.outcome, h.syn_acks) for h in closed] == [(1000, "complete", 2)]
    assert tracker.open_attempts == 1


@pytest.mark.parametrize("batch", [1, 2, 3, 100])
def test_time_rules_hold_per_packet_whatever_the_batching(batch):
    """A SYN-ACK repeated 31 s after completion is past the 10 s linger, and a SYN-ACK 31 s
    after an unanswered SYN is past the 30 s timeout: neither belongs to the old attempt,
    whether the capture arrives as one batch or one packet at a time."""
    other = ("10.0.0.3", 40001)
    rows = handshake() + [
        (31_031 * MS, S, C, SYN | ACK, 5000, 1001, 0),   # 31 s after the ACK: no retry
        (31_100 * MS, other, S, SYN, 77, 0, 0),
        (62_200 * MS, S, other, SYN | ACK, 9000, 78, 0),  # 31.1 s after its SYN: too late
    ]
    tracker = HandshakeTracker(timeout_s=30, linger_s=10)
    segments = make_segments(rows)
    notes = []
    for i in range(0, len(rows), batch):
        notes += tracker.feed(segments[i:i + batch])
    assert [(n.time_ns, n.kind) for n in notes] == [
        (0, "syn"), (30 * MS, "syn-ack"), (31 * MS, "ack"), (31_100 * MS, "syn")]
