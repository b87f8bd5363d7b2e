"""Writing a score in bounded memory (``score_to_file``, what ``hs score`` does): the same bytes
as ``dumps()`` of the score ``compose()`` holds in memory, for every capture and filter, with
notes that come out of time order, and through temporary runs merged in several passes."""

from __future__ import annotations

import functools
import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import CORPUS, ROOT
from craft import ACK, RST, SYN, eth, pcap, tcp_ip, udp_ip, write

from handshake_score import score as score_module
from handshake_score.errors import CaptureError, HandshakeScoreError
from handshake_score.score import compose, score_to_file, select
from handshake_score.scorefile import dumps, load_score
from handshake_score.segments import make_segments
from handshake_score.tracker import HandshakeTracker

HS = [sys.executable, "-m", "handshake_score"]
CAPTURES = sorted(CORPUS.glob("*.pcap*")) + sorted((ROOT / "captures").glob("*.pcap*")) + \
    sorted((ROOT / "handshake_score" / "tour").glob("*.pcap*"))
EXAMPLE = ROOT / "captures" / "example-loopback.pcapng"
MIXED = [CORPUS / "http_ip4and6.pcapng", CORPUS / "bgp-bgpsec.pcap", CORPUS / "resp_1_benchmark.pcap"]
# buffer_notes: the default (everything in memory), and tiny buffers that settle notes at every
# step of the tracker, spill every settled batch as a run and number attempts across blocks
BUFFERS = [1 << 18, 64, 3, 1]


def streamed(paths, tmp_path: Path, **kw) -> str:
    out = tmp_path / "streamed.score"
    score_to_file(paths, out, force=True, **kw)
    return out.read_text()


def assert_nothing_left(folder: Path, *expected: str) -> None:
    """The temporary runs are unnamed files: nothing but ``expected`` is in ``folder``."""
    assert sorted(p.name for p in folder.iterdir()) == sorted(expected)


@pytest.mark.parametrize("path", CAPTURES, ids=[p.name for p in CAPTURES])
def test_every_capture_gives_the_bytes_of_the_score_in_memory(path, tmp_path):
    want = dumps(compose([path]).score)
    for buffer in BUFFERS:
        assert streamed([path], tmp_path, buffer_notes=buffer) == want, buffer
    assert_nothing_left(tmp_path, "streamed.score")


def test_all_captures_at_once_overlapping_in_time(tmp_path):
    """Captures of different years, some given twice: sources interleave, trackers restart,
    notes go back in time from one file to the next."""
    paths = CAPTURES + [CORPUS / "resp_1_benchmark.pcap", CORPUS / "http_ip4and6.pcapng"]
    want = dumps(compose(paths).score)
    for buffer in BUFFERS:
        assert streamed(paths, tmp_path, buffer_notes=buffer) == want, buffer


def test_many_runs_merged_in_several_passes(tmp_path, monkeypatch):
    """Two runs merged at a time (fan-in 2), in small slices: merges of merges."""
    monkeypatch.setattr(score_module, "_Spool", functools.partial(score_module._Spool, fan_in=2, merge_rows=1))
    paths = [CORPUS / "resp_1_benchmark.pcap", CORPUS / "http_ip4and6.pcapng", EXAMPLE, CORPUS / "resp_1_benchmark.pcap"]
    want = dumps(compose(paths).score)
    for buffer in (1, 2, 5):
        assert streamed(paths, tmp_path, buffer_notes=buffer) == want, buffer


def crafted(path: Path, seed: int, attempts: int = 400, t0: int = 1_700_000_000 * 10**9) -> Path:
    """Handshakes of every shape, their records in a shuffled order: a SYN-ACK before its SYN
    (noted after it, at its earlier time), retries, resets, records late by up to a second and
    a few by a minute, so that notes reach the writer far out of time order."""
    rng = random.Random(seed)
    records = []
    for i in range(attempts):
        c, s = f"10.{rng.randrange(4)}.{rng.randrange(256)}.{rng.randrange(1, 255)}", f"192.0.2.{rng.randrange(1, 9)}"
        cp, sp, isn, sisn = 20000 + i, rng.choice([80, 443, 22]), rng.randrange(1 << 32), rng.randrange(1 << 32)
        t = t0 + i * 7_000_000 + rng.randrange(5_000_000)
        syn = eth(tcp_ip(c, s, cp, sp, SYN, isn))
        synack = eth(tcp_ip(s, c, sp, cp, SYN | ACK, sisn, (isn + 1) % (1 << 32)))
        ack = eth(tcp_ip(c, s, cp, sp, ACK, (isn + 1) % (1 << 32), (sisn + 1) % (1 << 32)))
        shape = rng.choice(["complete", "orphan", "refused", "unanswered", "synack-retry", "reset"])
        if shape == "complete":
            records += [(t, syn), (t + 2_000_000, synack), (t + 2_100_000, ack)]
        elif shape == "orphan":  # the SYN-ACK captured (and written) first, 0.5 ms before the SYN
            records += [(t, synack, "early"), (t + 500_000, syn), (t + 900_000, ack)]
        elif shape == "refused":
            records += [(t, syn), (t + 1_000_000, eth(tcp_ip(s, c, sp, cp, RST | ACK, 0, (isn + 1) % (1 << 32))))]
        elif shape == "unanswered":
            records += [(t + k * 1_000_000_000, syn) for k in range(rng.randrange(1, 4))]
        elif shape == "synack-retry":
            records += [(t, syn), (t + 3_000_000, synack), (t + 1_003_000_000, synack)]
        else:
            records += [(t, syn), (t + 3_000_000, synack), (t + 4_000_000, eth(tcp_ip(c, s, cp, sp, RST, (isn + 1) % (1 << 32))))]
        if rng.random() < 0.05:
            records.append((t + 1_000, eth(udp_ip(c, s))))
    keyed = []
    for r in records:
        late = 0 if len(r) > 2 else rng.choice([0] * 8 + [rng.randrange(1_000_000_000), rng.randrange(60 * 10**9)])
        keyed.append((r[0] + late, r[0], r[1]))  # written in the order of a late clock
    keyed.sort(key=lambda k: k[0])
    return write(path, pcap([(t, data) for _, t, data in keyed], nano=True))


def test_crafted_captures_with_notes_out_of_time_order(tmp_path):
    a, b = crafted(tmp_path / "a.pcap", 1), crafted(tmp_path / "b.pcap", 2, t0=1_700_000_001 * 10**9)
    for paths in ([a], [b], [a, b], [b, a], [a, a]):
        score = compose(paths).score
        assert np.any(np.diff(score.notes["syn_to_syn_ack_ns"]) != 0) and np.any(score.notes["syn_to_syn_ack_ns"] < 0)
        want = dumps(score)
        for buffer in BUFFERS:
            assert streamed(paths, tmp_path, buffer_notes=buffer) == want, (paths, buffer)
    assert_nothing_left(tmp_path, "a.pcap", "b.pcap", "streamed.score")


FILTERS = [
    dict(hosts=["172.18.0.3"]), dict(hosts=["2001:db8:1:2::1000"]), dict(hosts=["172.18.0.0/30"]),
    dict(hosts=["172.18.0.5", "2001:db8:1:2::1002"]), dict(ports=[179]), dict(kinds=["syn-ack", "rst"]),
    dict(kinds=[]), dict(start="2.4", end="6.2"), dict(start="1"), dict(end="3"), dict(start="-5"),
    dict(hosts=["10.9.9.9"]), dict(ports=[179], kinds=["syn"], start="0.5"),
]


@pytest.mark.parametrize("filters", FILTERS, ids=[json.dumps(f) for f in FILTERS])
def test_filters_on_the_streamed_path_are_selects(filters, tmp_path):
    whole = compose(MIXED).score
    kept = select(whole, **filters)
    for buffer in (1 << 18, 2):
        out = tmp_path / "f.score"
        written = score_to_file(MIXED, out, force=True, buffer_notes=buffer, **filters)
        assert out.read_text() == dumps(kept)
        assert (written.notes, written.attempts, written.scored) == (len(kept), kept.attempts(), len(whole))


@pytest.mark.parametrize("kw, needle", [
    (dict(ports=[70000]), "--port: 70000 is not a port"),
    (dict(kinds=["syn", "fin"]), "--kinds: unknown note kind 'fin'"),
    (dict(hosts=["10.0.0.0/33"]), "--host: '10.0.0.0/33' is not an address or a network"),
])
def test_a_bad_filter_fails_before_any_capture_is_read(kw, needle, tmp_path):
    with pytest.raises(HandshakeScoreError, match=needle):
        score_to_file([tmp_path / "not-even-there.pcap"], tmp_path / "x.score", **kw)
    assert_nothing_left(tmp_path)


def test_the_command_streams_and_says_what_it_wrote(tmp_path):
    out = tmp_path / "a.score"
    r = subprocess.run([*HS, "score", *MIXED, "-o", out, "--kinds", "syn", "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    kept = select(compose(MIXED).score, kinds=["syn"])
    assert out.read_text() == dumps(kept)
    got = json.loads(r.stdout)
    assert got["score_notes"] == len(kept) and got["written"] == {"score": str(out)}
    r = subprocess.run([*HS, "score", *MIXED, "-o", out, "--force", "--host", "10.9.9.9"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stderr == "hs: warning: no note passes the filters\n"
    assert f"score       {out} (0 notes, 0 attempts)" in r.stdout
    assert len(load_score(out)) == 0
    r = subprocess.run([*HS, "score", EXAMPLE, "-o", out, "--force"], capture_output=True, text=True)
    assert "(14 notes, 5 attempts)" in r.stdout and out.read_text() == dumps(compose([EXAMPLE]).score)


def test_a_failed_run_leaves_no_score_and_no_temporary_file(tmp_path):
    good = CORPUS / "resp_1_benchmark.pcap"
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(good.read_bytes()[:-7])
    out = tmp_path / "scores" / "a.score"
    with pytest.raises(CaptureError, match="cut short"):
        score_to_file([good, cut], out, strict=True, buffer_notes=1)
    assert_nothing_left(tmp_path, "cut.pcap")  # not even the scores folder


@pytest.mark.capture
def test_a_loopback_recording(dumpcap, tmp_path):
    from loopback import V4, V6, make_capture

    path = tmp_path / "lo.pcapng"
    make_capture(dumpcap, path, [("complete", V4, 5), ("refused", V4, 3), ("concurrent", V4, 60),
                                 ("complete", V6, 4), ("concurrent", V6, 30)])
    want = dumps(compose([path]).score)
    for buffer in BUFFERS:
        assert streamed([path], tmp_path, buffer_notes=buffer) == want, buffer


def test_a_flood_is_written_in_bounded_memory(tmp_path):
    """A million unanswered SYNs, each its own attempt: the score in memory would hold them all
    (hundreds of MB); streamed, all of hs's processes stay under the 200 MB RESULTS-flood.md
    promises (here about 150-160 MB, a run's sampling apart): bench_flood.py measures the figures."""
    flood = tmp_path / "flood.pcap"
    subprocess.run([sys.executable, ROOT / "benchmarks" / "make_capture.py", flood, "--shape", "flood",
                    "--packets", "1000000", "--clients", "50000"], check=True, capture_output=True)
    out = tmp_path / "flood.score"
    r = subprocess.run([sys.executable, ROOT / "benchmarks" / "measure.py", tmp_path / "stdout", "600", "--sample", "--",
                        *HS, "score", flood, "-o", out, "--max-attempts", "10000", "--json"],
                       capture_output=True, text=True, check=True)
    m = json.loads(r.stdout)
    assert m["rc"] == 0, (tmp_path / "stdout.err").read_text()
    got = json.loads((tmp_path / "stdout").read_text())
    assert got["score_notes"] == 1_000_000 and got["handshakes"]["unanswered"] == 1_000_000
    assert max(m["max_rss_mb"], m["tree_pss_mb"]) < 200, m
    lines = out.read_text().splitlines()
    assert lines[-1].startswith("9999990000,syn,1000000,") and lines[-1].endswith(",unanswered,,,1")
    assert_nothing_left(tmp_path, "flood.pcap", "flood.pcap.expected.json", "flood.score", "stdout", "stdout.err")


def test_the_tracker_keeps_its_table_compact_and_its_notes(monkeypatch):
    """A flood of attempts coming and going at --max-attempts: the table is copied before it
    would grow, and nothing else changes."""
    segments = make_segments((10**9 + i * 1000, (f"10.0.{i // 250 % 250}.{i % 250 + 1}", 1024 + i % 60000),
                              ("192.0.2.1", 80), SYN, i, 0, 0) for i in range(60_000))

    def run(compact: bool):
        if not compact:
            monkeypatch.setattr(HandshakeTracker, "_compact", lambda self, batch: None)
        closed = []
        tracker = HandshakeTracker(max_attempts=20_000, on_close=lambda h: closed.append((h.id, h.outcome)))
        notes, sizes = [], []
        for at in range(0, len(segments), 500):
            notes += [(n.time_ns, n.kind, n.handshake.id) for n in tracker.feed(segments[at:at + 500])]
            sizes.append(sys.getsizeof(tracker._flows))
        tracker.close()
        monkeypatch.undo()
        return notes, closed, max(sizes[len(sizes) // 2:])

    notes, closed, size = run(True)
    assert (notes, closed) == run(False)[:2] and len(notes) == 60_000
    assert size <= sys.getsizeof({i: i for i in range(20_000)}) * 1.01  # never larger than a fresh table
