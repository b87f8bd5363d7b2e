"""Handshakes made on loopback, recorded with dumpcap, then scored: the notes must
name exactly the connections the test made (by the clients' own port numbers),
no more and no fewer, with sane delays; ``hs score --json`` must agree."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest

from conftest import KINDS, OUTCOMES, ROOT
from loopback import V4, V6, make_capture

from handshake_score.scorefile import load_score
from handshake_score.segments import ACK, SYN
from handshake_score.summary import score_files

EXAMPLE = ROOT / "captures" / "example-loopback.pcapng"


def tshark_view(tshark: str, path) -> tuple[list[int], int, Counter]:
    """As tshark reads the file: every frame's time in integer ns, how many frames are
    TCP, and the pure SYNs (first ones and retries) per (client, server)."""
    fields = ["frame.time_epoch", "tcp.srcport", "tcp.dstport", "tcp.flags", "ip.src", "ip.dst", "ipv6.src", "ipv6.dst"]
    out = subprocess.run([tshark, "-r", str(path), "-T", "fields", *[a for f in fields for a in ("-e", f)]],
                         capture_output=True, text=True, check=True).stdout
    times, tcp, syns = [], 0, Counter()
    for line in out.splitlines():
        t, sport, dport, flags, src4, dst4, src6, dst6 = line.split("\t")
        times.append(int(Decimal(t) * 1_000_000_000))
        if sport:
            tcp += 1
            if int(flags, 16) & (SYN | ACK) == SYN:
                syns[(src4 or src6, int(sport)), (dst4 or dst6, int(dport))] += 1
    return times, tcp, syns


def score(path):
    notes = []
    summary = score_files([path], on_notes=notes.extend)
    return summary.as_dict(), notes


def check(tshark: str, path, made) -> tuple[dict, list]:
    """Score ``path`` and check it against ``made`` (from ``make_capture``): counts,
    which connection each note names, outcomes, note times and delays."""
    got, notes = score(path)
    times, tcp, syns = tshark_view(tshark, path)
    assert set(syns) == {(c, s) for _, c, s in made}  # the capture holds our attempts only
    retries = Counter({attempt: n - 1 for attempt, n in syns.items() if n > 1})  # SYNs sent again
    outcomes = Counter(outcome for outcome, _, _ in made)
    done, refused = outcomes["complete"], outcomes["refused"]
    assert got["notes"] == {"syn": len(made), "syn-retry": retries.total(), "syn-ack": done,
                            "syn-ack-retry": 0, "ack": done, "rst": refused}
    assert got["handshakes"] == dict.fromkeys(OUTCOMES, 0) | outcomes
    assert (got["packets"], got["tcp_segments"], got["evicted"]) == (len(times), tcp, 0)

    # Each note names a connection that was made, by its client socket's own port.
    named = {k: Counter((n.handshake.client, n.handshake.server) for n in notes if n.kind == k) for k in KINDS}
    attempts = Counter((c, s) for _, c, s in made)
    assert named["syn"] == attempts
    assert named["syn-ack"] == named["ack"] == Counter((c, s) for o, c, s in made if o == "complete")
    assert named["rst"] == Counter((c, s) for o, c, s in made if o == "refused")
    assert (named["syn-retry"], named["syn-ack-retry"]) == (retries, Counter())
    handshakes = {id(n.handshake): n.handshake for n in notes}.values()
    assert Counter((h.client, h.server, h.outcome) for h in handshakes) == Counter((c, s, o) for o, c, s in made)

    # Notes come in capture order, at the times of the packets, inside the capture.
    note_times = [n.time_ns for n in notes]
    assert note_times == sorted(note_times)
    assert set(note_times) <= set(times)
    span = times[-1] - times[0]
    for n in notes:
        h = n.handshake
        if n.kind == "syn-retry":
            assert 0 < n.time_ns - h.syn_ns < span
        else:
            assert n.time_ns == {"syn": h.syn_ns, "syn-ack": h.syn_ack_ns, "ack": h.ack_ns, "rst": h.rst_ns}[n.kind]
        if h.outcome == "complete":
            assert 0 < h.syn_ack_ns - h.syn_ns < span and 0 < h.ack_ns - h.syn_ack_ns < span
        elif n.kind == "rst":  # refused: the RST follows its SYN
            assert h.syn_ack_ns is None and 0 < n.time_ns - h.syn_ns < span

    # The summary's delays are those of the completed attempts.
    completed = [h for h in handshakes if h.outcome == "complete"]
    for name, delay in [("syn_to_syn_ack", lambda h: h.syn_ack_ns - h.syn_ns), ("syn_ack_to_ack", lambda h: h.ack_ns - h.syn_ack_ns)]:
        median = round(statistics.median(map(delay, completed)) / 1e6, 6) if completed else None
        assert got["delays_ms"][name] == {"median": median, "count": done}
    return got, notes


def assert_cli_agrees(path, got: dict) -> None:
    """``hs score PATH --json`` prints the same summary (bar the time it took) and
    writes the score of every note."""
    run = subprocess.run([sys.executable, "-m", "handshake_score", "score", str(path), "--json"],
                         capture_output=True, text=True)
    assert (run.returncode, run.stderr) == (0, "")
    printed = json.loads(run.stdout)
    assert isinstance(printed.pop("seconds"), float)
    written = printed.pop("written")
    assert written == {"score": f"scores/{Path(path).stem}.score"}
    assert printed.pop("score_notes") == sum(got["notes"].values()) == len(load_score(written["score"]))
    rhythm = printed.pop("rhythm")  # the callers on a schedule (tests/test_rhythm.py checks who)
    assert rhythm["attempts"] == sum(got["handshakes"].values()) and rhythm["periodic"] == len(rhythm["callers"])
    assert printed == {k: v for k, v in json.loads(json.dumps(got)).items() if k != "seconds"}


@pytest.mark.capture
def test_twenty_completed_ipv4(dumpcap, tshark, tmp_path):
    made = make_capture(dumpcap, tmp_path / "v4.pcapng", [("complete", V4, 20)])
    got, _ = check(tshark, tmp_path / "v4.pcapng", made)
    assert got["notes"] == {"syn": 20, "syn-retry": 0, "syn-ack": 20, "syn-ack-retry": 0, "ack": 20, "rst": 0}
    assert got["handshakes"] == {"complete": 20, "refused": 0, "unanswered": 0, "incomplete": 0}


@pytest.mark.capture
def test_five_refused(dumpcap, tshark, tmp_path):
    made = make_capture(dumpcap, tmp_path / "refused.pcapng", [("refused", V4, 5)])
    got, _ = check(tshark, tmp_path / "refused.pcapng", made)
    assert got["notes"] == {"syn": 5, "syn-retry": 0, "syn-ack": 0, "syn-ack-retry": 0, "ack": 0, "rst": 5}
    assert got["handshakes"] == {"complete": 0, "refused": 5, "unanswered": 0, "incomplete": 0}


@pytest.mark.capture
def test_ipv6_completed_and_refused(dumpcap, tshark, tmp_path):
    made = make_capture(dumpcap, tmp_path / "v6.pcapng", [("complete", V6, 8), ("refused", V6, 3)])
    got, notes = check(tshark, tmp_path / "v6.pcapng", made)
    assert got["notes"] == {"syn": 11, "syn-retry": 0, "syn-ack": 8, "syn-ack-retry": 0, "ack": 8, "rst": 3}
    assert got["handshakes"] == {"complete": 8, "refused": 3, "unanswered": 0, "incomplete": 0}
    assert {n.handshake.client[0] for n in notes} == {"::1"}


@pytest.mark.capture
def test_three_hundred_at_once(dumpcap, tshark, tmp_path):
    made = make_capture(dumpcap, tmp_path / "burst.pcapng", [("concurrent", V4, 300)])
    assert len({c for _, c, _ in made}) == 300  # all open together: 300 distinct client sockets
    got, _ = check(tshark, tmp_path / "burst.pcapng", made)
    assert got["notes"] == {"syn": 300, "syn-retry": 0, "syn-ack": 300, "syn-ack-retry": 0, "ack": 300, "rst": 0}
    assert got["handshakes"] == {"complete": 300, "refused": 0, "unanswered": 0, "incomplete": 0}


@pytest.mark.capture
def test_unanswered_syns_are_retried(dumpcap, tshark, tmp_path):
    """SYNs dropped by a full accept queue: the clients retry them after 1 s and give
    up at 1.5 s. How many retries the kernel sent is timing; tshark counts them."""
    path = tmp_path / "unanswered.pcapng"
    made = make_capture(dumpcap, path, [("unanswered", V4, 2), ("unanswered", V6, 1)])
    got, notes = check(tshark, path, made)
    assert got["handshakes"] == {"complete": 0, "refused": 0, "unanswered": 3, "incomplete": 0}
    assert (got["notes"]["syn"], got["notes"]["syn-ack"], got["notes"]["ack"], got["notes"]["rst"]) == (3, 0, 0, 0)
    retried = Counter(n.handshake.client for n in notes if n.kind == "syn-retry")
    assert set(retried) == {c for _, c, _ in made}  # Linux retries a SYN after 1 s: each did, at least once
    assert got["delays_ms"] == {"syn_to_syn_ack": {"median": None, "count": 0}, "syn_ack_to_ack": {"median": None, "count": 0}}


@pytest.mark.capture
def test_mixed_capture_and_cli(dumpcap, tshark, tmp_path):
    path = tmp_path / "mixed.pcapng"
    plan = [("complete", V4, 10), ("refused", V4, 4), ("complete", V6, 6), ("refused", V6, 2),
            ("concurrent", V4, 100), ("concurrent", V6, 50), ("complete", V4, 3)]
    made = make_capture(dumpcap, path, plan)
    got, _ = check(tshark, path, made)
    assert got["notes"] == {"syn": 175, "syn-retry": 0, "syn-ack": 169, "syn-ack-retry": 0, "ack": 169, "rst": 6}
    assert got["handshakes"] == {"complete": 169, "refused": 6, "unanswered": 0, "incomplete": 0}
    assert_cli_agrees(path, got)


def test_bundled_example_capture(tshark):
    """captures/example-loopback.pcapng scores as captures/README.md says."""
    got, notes = score(EXAMPLE)
    times, tcp, _ = tshark_view(tshark, EXAMPLE)
    assert (got["packets"], got["tcp_segments"]) == (len(times), tcp) == (46, 42)
    assert got["notes"] == {"syn": 5, "syn-retry": 0, "syn-ack": 4, "syn-ack-retry": 0, "ack": 4, "rst": 1}
    assert got["handshakes"] == {"complete": 4, "refused": 1, "unanswered": 0, "incomplete": 0}
    syns = [(n.handshake.client, n.handshake.server, n.handshake.outcome) for n in notes if n.kind == "syn"]
    assert syns == [(("127.0.0.1", 51856), ("127.0.0.1", 46279), "complete"),
                    (("127.0.0.1", 51872), ("127.0.0.1", 46279), "complete"),
                    (("127.0.0.1", 51874), ("127.0.0.1", 46279), "complete"),
                    (("127.0.0.1", 60635), ("127.0.0.1", 35387), "refused"),
                    (("::1", 49498), ("::1", 34385), "complete")]
    delays = [(n.handshake.syn_ack_ns - n.handshake.syn_ns, n.handshake.ack_ns - n.handshake.syn_ack_ns)
              for n in notes if n.kind == "ack"]
    assert delays == [(12218, 11287), (4797, 4767), (5028, 5207), (9414, 5879)]
    refused = [n.time_ns - n.handshake.syn_ns for n in notes if n.kind == "rst"]
    assert refused == [6480]
    assert_cli_agrees(EXAMPLE, got)


@pytest.mark.parametrize("require", ["", "1"])
def test_no_capture_rights_skips_or_fails(tmp_path, monkeypatch, require):
    """A dumpcap refused the capture skips the test here, and fails it under HS_REQUIRE_TSHARK=1."""
    fake = tmp_path / "dumpcap"
    fake.write_text("#!/bin/sh\necho 'dumpcap: You do not have permission to capture on device \"lo\".' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("HS_REQUIRE_TSHARK", require)
    with pytest.raises(pytest.fail.Exception if require else pytest.skip.Exception, match="permission"):
        make_capture(str(fake), tmp_path / "x.pcapng", [("complete", V4, 1)])
