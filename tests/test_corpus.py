"""Every capture in tests/corpus: the figures its README states, exactly."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal

import numpy as np
import pytest

from conftest import CORPUS, ROOT, corpus_expectations
from handshake_score.errors import CaptureError
from handshake_score.sources import CaptureReader
from handshake_score.summary import score_files
from handshake_score.tracker import Closings, Handshake, HandshakeTracker, Outcome, State

EXPECTED = corpus_expectations()


def test_the_corpus_table_was_read():
    assert len(EXPECTED) == len([p for p in CORPUS.iterdir() if p.suffix in (".pcap", ".pcapng")]) == 16


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_counts(name):
    summary = score_files([CORPUS / name]).as_dict()
    assert summary["notes"] == EXPECTED[name]["notes"]
    assert summary["handshakes"] == EXPECTED[name]["handshakes"]


@pytest.mark.parametrize("name", sorted(n for n, e in EXPECTED.items() if e["delays"]))
def test_delays_to_the_stated_precision(name):
    closed = []
    tracker = HandshakeTracker(on_close=closed.append)
    for batch in CaptureReader(CORPUS / name).batches():
        tracker.feed_batch(batch)
    tracker.close()
    (h,) = [h for h in closed if h.outcome == "complete"]
    syn_ack, unit1, ack, unit2 = EXPECTED[name]["delays"]
    for measured, stated, unit in ((h.syn_to_syn_ack_ns, syn_ack, unit1), (h.syn_ack_to_ack_ns, ack, unit2)):
        scale = Decimal(10**9 if unit == "s" else 10**6)
        places = -Decimal(stated).as_tuple().exponent
        assert round(Decimal(measured) / scale, places) == Decimal(stated)


def test_nanosecond_capture_is_exact():
    closed = []
    tracker = HandshakeTracker(on_close=closed.append)
    for segments in CaptureReader(CORPUS / "tcp-handshake-nano.pcap"):
        tracker.feed(segments)
    tracker.close()
    assert (closed[0].syn_to_syn_ack_ns, closed[0].syn_ack_to_ack_ns) == (127_521_774, 87_895)


def notes_of(path, prefilter: bool):
    tracker = HandshakeTracker()
    notes = []
    for batch in CaptureReader(path, chunk_size=1 << 16).batches():
        notes += tracker.feed_batch(batch) if prefilter else tracker.feed(batch.select())
    tracker.close()
    return [(n.time_ns, n.kind, n.handshake.flow, n.handshake.isn, n.handshake.outcome) for n in notes], tracker.outcomes


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_prefilter_changes_nothing_on_the_corpus(name):
    assert notes_of(CORPUS / name, True) == notes_of(CORPUS / name, False)


def test_prefilter_changes_nothing_on_a_busy_mixed_capture(tmp_path):
    """20,000 packets of interleaved connections (retries, refusals, IPv6), read in small chunks."""
    path = tmp_path / "mixed.pcap"
    subprocess.run([sys.executable, ROOT / "benchmarks" / "make_capture.py", path, "--packets", "20000"],
                   check=True, capture_output=True)
    fast, fast_outcomes = notes_of(path, True)
    slow, slow_outcomes = notes_of(path, False)
    assert len(fast) > 2000 and fast == slow and fast_outcomes == slow_outcomes
    truth = json.loads(path.with_name(path.name + ".expected.json").read_text())
    assert fast_outcomes == truth["handshakes"]


def test_hs_score_json_on_the_corpus():
    names = ["bgp-bgpsec.pcap", "tfo-5c1fa7f9ae91.pcap", "http_ip4and6.pcapng"]
    out = subprocess.run([sys.executable, "-m", "handshake_score", "score", "--json", *[CORPUS / n for n in names]],
                         capture_output=True, text=True, check=True)
    got = json.loads(out.stdout)
    assert got["packets"] == 36 + 14 + 20
    for part in ("notes", "handshakes"):
        assert got[part] == {k: sum(EXPECTED[n][part][k] for n in names) for k in got[part]}
    assert out.stderr == ""


def test_hs_score_text_summary():
    out = subprocess.run([sys.executable, "-m", "handshake_score", "score", CORPUS / "latency2.pcapng"],
                         capture_output=True, text=True, check=True)
    assert "complete 1" in out.stdout
    assert "SYN->SYN-ACK median 878.530 ms" in out.stdout and "SYN-ACK->ACK median 16.604 ms" in out.stdout


def test_segments_are_time_ordered_integers():
    segments = np.concatenate(list(CaptureReader(CORPUS / "resp_1_benchmark.pcap")))
    assert segments["time_ns"].dtype == np.int64
    assert len(segments) == 150 and np.all(np.diff(segments["time_ns"]) >= 0)


def same_summary(path, **options) -> dict:
    """score_files read in process and by a forked worker must agree exactly."""
    results = []
    for parallel in (False, True):
        got = score_files([path], parallel=parallel, **options).as_dict()
        got.pop("seconds")
        results.append(got)
    assert results[0] == results[1]
    return results[0]


def test_worker_reader_gives_the_same_summary(tmp_path):
    path = tmp_path / "mixed.pcapng"
    subprocess.run([sys.executable, ROOT / "benchmarks" / "make_capture.py", path, "--packets", "30000",
                    "--format", "pcapng"], check=True, capture_output=True)
    got = same_summary(path)
    truth = json.loads(path.with_name(path.name + ".expected.json").read_text())
    assert got["notes"] == truth["notes"] and got["handshakes"] == truth["handshakes"]
    assert got["packets"] == 30000


def test_worker_reader_reports_a_cut_file_the_same_way(tmp_path):
    data = (CORPUS / "bgp-bgpsec.pcap").read_bytes()
    path = tmp_path / "cut.pcap"
    path.write_bytes(data[:-30])
    got = same_summary(path)
    assert got["files"][0]["truncated_at"] is not None
    errors = []
    for parallel in (False, True):
        with pytest.raises(CaptureError) as e:
            score_files([path], strict=True, parallel=parallel)
        errors.append(str(e.value))
    assert errors[0] == errors[1] and "cut short" in errors[0]


def test_worker_reader_reports_a_corrupt_file_the_same_way(tmp_path):
    data = bytearray((CORPUS / "tcp_handshake.pcapng").read_bytes())
    data[-4:] = b"\x01\x00\x00\x00"  # the last block's trailing length no longer matches
    path = tmp_path / "corrupt.pcapng"
    path.write_bytes(bytes(data))
    errors = []
    for parallel in (False, True):
        with pytest.raises(CaptureError) as e:
            score_files([path], parallel=parallel)
        errors.append(str(e.value))
    assert errors[0] == errors[1] and "corrupt pcapng block" in errors[0]


def test_a_capture_split_in_files_scores_as_one(tmp_path, tshark):
    """editcap cuts a busy capture into three files; handshakes cut between two files are found whole."""
    whole = tmp_path / "whole.pcap"
    subprocess.run([sys.executable, ROOT / "benchmarks" / "make_capture.py", whole, "--packets", "20000"],
                   check=True, capture_output=True)
    subprocess.run(["editcap", "-c", "7000", whole, tmp_path / "part.pcap"], check=True, capture_output=True)
    parts = sorted(tmp_path.glob("part_*.pcap"))
    assert len(parts) == 3
    expected = score_files([whole]).as_dict()
    for parallel in (False, True):
        got = score_files(parts, parallel=parallel).as_dict()
        assert got["packets"] == 20000
        for part in ("notes", "handshakes", "delays_ms"):
            assert got[part] == expected[part], (parallel, part)
    # out of time order, each file is a capture of its own: the sum of scoring each alone
    alone = [score_files([p]).as_dict() for p in parts]
    backwards = score_files(parts[::-1]).as_dict()
    for part in ("notes", "handshakes"):
        assert backwards[part] == {k: sum(a[part][k] for a in alone) for k in backwards[part]}
    assert backwards["handshakes"] != expected["handshakes"]  # the cuts do break handshakes apart


def closings_as_attempts(closings) -> list[tuple]:
    """Each attempt of a list of Closings as the tuple its Handshake's own properties make."""
    rows = []
    for c in closings:
        for i, h in enumerate(c.handshakes):
            rows.append((int(c.id[i]), int(c.syn_ns[i]), Outcome.ALL[c.outcome[i]],
                         int(c.syn_to_syn_ack_ns[i]) if c.has_syn_to_syn_ack[i] else None,
                         int(c.syn_ack_to_ack_ns[i]) if c.has_syn_ack_to_ack[i] else None, c.flows[i].tobytes()))
    return rows


def handshake_as_attempt(h) -> tuple:
    return h.id, h.syn_ns, h.outcome, h.syn_to_syn_ack_ns, h.syn_ack_to_ack_ns, h.flow[:36]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_closings_are_the_attempts_that_closed(name):
    """on_closes's columns say of every attempt what its Handshake says, in the order on_close
    heard them, whatever the batches."""
    for chunk_size in (1 << 12, 1 << 21):
        closed, closings = [], []
        tracker = HandshakeTracker(on_close=closed.append, on_closes=closings.append)
        for batch in CaptureReader(CORPUS / name, chunk_size=chunk_size).batches():
            tracker.feed_batch(batch)
        tracker.close()
        assert closings_as_attempts(closings) == [handshake_as_attempt(h) for h in closed]
        assert all(len(c) for c in closings)


def test_closings_of_corrupt_times_give_no_delay():
    """A delay that does not fit 64 bits (a corrupt file's times) is None on the Handshake and
    absent in the columns; one that just fits is there in both."""
    lo, hi = -(1 << 63), (1 << 63) - 1
    flow = bytes(36)
    cases = [Handshake(1, flow, 0, lo + 5, syn_ack_ns=hi, state=State.SYN_ACK_SEEN),
             Handshake(2, flow, 0, hi, syn_ack_ns=lo, ack_ns=hi, state=State.ESTABLISHED),
             Handshake(3, flow, 0, -1, syn_ack_ns=hi - 1, ack_ns=hi, state=State.ESTABLISHED),
             Handshake(4, flow, 0, 10, state=State.REFUSED),
             Handshake(5, flow, 0, 10, syn_ack_ns=12, state=State.RESET),
             Handshake(6, flow, 0, 10, state=State.RESET)]
    assert closings_as_attempts([Closings(cases)]) == [handshake_as_attempt(h) for h in cases]
