"""The network's rhythm (handshake_score/rhythm/, hs rhythm, and where it shows elsewhere).

Known schedules are built as scores (the analysis is what is tested) and as crafted captures
(for the commands, end to end); a loopback capture the test records itself holds a client
connecting every 0.25 s among random connections; every corpus capture must show no caller.
"""

from __future__ import annotations

import json
import random
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import mido
import numpy as np
import pytest

from conftest import corpus_expectations
from craft import ACK, SYN, eth, pcap, tcp_ip, write
from loopback import PAYLOAD, V4, Server, complete, record

from handshake_score.anonymize import pseudonym
from handshake_score.errors import HandshakeScoreError
from handshake_score.midi import to_midi
from handshake_score.rhythm import (Calls, CallLog, RhythmWatch, analyse, find_rhythm, live_line, selected,
                                    summary_lines, table)
from handshake_score.score import NO_DELAY, NOTE, Score, Source, compose
from handshake_score.tracker import Kind, Outcome

S = 10**9
START_NS = 1_700_000_000 * S
KIND = {k: i for i, k in enumerate(Kind.ALL)}
COMPLETE = Outcome.ALL.index(Outcome.COMPLETE)
UNANSWERED = Outcome.ALL.index(Outcome.UNANSWERED)


def hs(*args, check=True) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "handshake_score", *map(str, args)], capture_output=True, text=True)
    if check:
        assert result.returncode == 0, result.stderr
    return result


# --- scores built directly ---------------------------------------------------------------------------

def score_of(attempts) -> Score:
    """A score of ``attempts``: (client, server, server port, SYN time ns, retried) each. A
    retried attempt's SYN is sent again 1 s later and never answered; the others complete
    (SYN-ACK 20 ms after the SYN, ACK 0.1 ms after that)."""
    hosts = sorted({h for a in attempts for h in a[:2]})
    at = {h: i for i, h in enumerate(hosts)}
    rows = []
    for n, (client, server, port, t, retried) in enumerate(attempts):
        if retried:
            notes = [(t, KIND["syn"]), (t + S, KIND["syn-retry"])]
            outcome, d1, d2 = UNANSWERED, NO_DELAY, NO_DELAY
        else:
            notes = [(t, KIND["syn"]), (t + 20_000_000, KIND["syn-ack"]), (t + 20_100_000, KIND["ack"])]
            outcome, d1, d2 = COMPLETE, 20_000_000, 100_000
        rows += [(time, kind, n, at[client], 40000 + n % 20000, at[server], port, outcome, d1, d2)
                 for time, kind in notes]
    rows.sort(key=lambda r: (r[0], r[2]))
    notes = np.zeros(len(rows), NOTE)
    for i, name in enumerate(("time_ns", "kind", "attempt", "client", "client_port", "server", "server_port",
                              "outcome", "syn_to_syn_ack_ns", "syn_ack_to_ack_ns")):
        notes[name] = [r[i] for r in rows]
    # attempts numbered in the order of their first notes, as a score numbers them
    order = {}
    for a in notes["attempt"].tolist():
        order.setdefault(a, len(order) + 1)
    notes["attempt"] = [order[a] for a in notes["attempt"].tolist()]
    t0 = int(notes["time_ns"].min()) if len(notes) else 0
    notes["time_ns"] -= t0
    notes["source"] = 1
    return Score(notes, hosts, [Source("built.pcap", 0, "0" * 64, START_NS + t0)], START_NS + t0)


def schedule(rng, client, server, port, period_s, slots, jitter=0.0, missing=0.0, start_s=0.0, retry_every=0):
    """A caller's attempts: ``slots`` beats of ``period_s`` from ``start_s``, each call within
    +-``jitter`` of a period of its beat, ``missing`` of them (a share, at random) left out,
    every ``retry_every``-th call a SYN sent twice (0: none)."""
    gone = set(rng.choice(slots, int(missing * slots), replace=False).tolist()) if missing else set()
    calls = []
    for k in range(slots):
        if k in gone:
            continue
        t = (start_s + k * period_s + rng.uniform(-jitter, jitter) * period_s) * S
        calls.append((client, server, port, int(t), bool(retry_every) and k % retry_every == 1))
    return calls


def poisson(rng, client, server, port, mean_s, span_s, at_least=4):
    """A random caller: calls at exponential intervals over ``span_s``, at least ``at_least``."""
    while True:
        t = np.cumsum(rng.exponential(mean_s, int(span_s / mean_s * 3) + 20))
        t = t[t < span_s]
        if len(t) >= at_least:
            return [(client, server, port, int(x * S), False) for x in t]
        mean_s /= 2


PERIODS = [1, 5, 15, 60, 300, 600]


def scheduled_callers(rng):
    """Every period with jitter up to 10 % and up to a third of the calls missing, some SYNs
    retried, and one client calling one server on three ports each on its own schedule."""
    callers = {}
    n = 0
    for period in PERIODS:
        for jitter in (0.0, 0.05, 0.1):
            for missing in (0.0, 0.2, 1 / 3):
                n += 1
                client, server = f"10.1.{n}.2", f"203.0.113.{n}"
                callers[(client, server, 443)] = (period, schedule(rng, client, server, 443, period, 15, jitter, missing,
                                                                  rng.uniform(0, period), retry_every=4))
    for port, period in ((443, 15), (8883, 60), (5228, 300)):  # one device, one server, three schedules
        callers[("10.2.0.7", "52.94.233.1", port)] = (period, schedule(rng, "10.2.0.7", "52.94.233.1", port, period,
                                                                       14, 0.05, 0.2, rng.uniform(0, 30)))
    return callers


def test_every_scheduled_caller_found_with_its_period_among_random_callers():
    rng = np.random.default_rng(13)
    callers = scheduled_callers(rng)
    attempts = [a for _, calls in callers.values() for a in calls]
    for n in range(200):  # random callers, some to the same servers and ports
        server = f"203.0.113.{rng.integers(1, 60)}" if n % 2 else f"198.51.100.{n}"
        attempts += poisson(rng, f"10.3.{n}.9", server, 443, float(np.exp(rng.uniform(0, np.log(600)))), 9000)
    score = score_of(attempts)
    found = find_rhythm(score)
    by_caller = {(c.client, c.server, c.server_port): c for c in found.callers}
    assert set(by_caller) == set(callers)  # every schedule, and nothing else
    for key, (period, calls) in callers.items():
        c = by_caller[key]
        assert abs(c.period_s / period - 1) < 0.02, (key, c.period_s, period)
        assert c.calls == len(calls)
        t0 = min(a[3] for a in attempts)  # score_of puts time 0 at the first call
        assert (c.first_ns, c.last_ns) == (min(a[3] for a in calls) - t0, max(a[3] for a in calls) - t0)
        assert 0 < c.score <= 1 and c.p_value < 1e-3
        retried = sum(a[4] for a in calls)
        assert c.completed == pytest.approx(1 - retried / len(calls))
        assert c.syn_to_syn_ack_ms == pytest.approx(20.0)
    assert found.attempts == len(attempts)
    # the mask: every note of their attempts (retries too), and no other
    mine = np.zeros(len(score.notes), bool)
    hosts = np.array(score.hosts)
    keys = list(zip(hosts[score.notes["client"]], hosts[score.notes["server"]], score.notes["server_port"].tolist()))
    mine[[k in callers for k in keys]] = True
    assert np.array_equal(found.mask, mine)
    heartbeat = score.with_notes(found.mask)
    assert (heartbeat.kinds() == "syn-retry").sum() == sum(a[4] for _, c in callers.values() for a in c)


def test_random_callers_are_not_periodic():
    """1,000 Poisson callers with 4 or more calls, rates from one a second to one in ten
    minutes, over ten minutes to four hours: at most 1 % flagged."""
    rng = np.random.default_rng(7)
    attempts = []
    for n in range(1000):
        span = [600, 3600, 4 * 3600][n % 3]
        attempts += poisson(rng, f"10.{n // 250}.{n % 250}.1", f"198.51.100.{n % 200}", 443,
                            float(np.exp(rng.uniform(0, np.log(600)))), span)
    score = score_of(attempts)
    calls = find_rhythm(score)
    assert len({(a[0], a[1]) for a in attempts}) == 1000
    assert len(calls.callers) <= 10, [c.describe() for c in calls.callers]


def test_a_schedule_whose_jitter_accumulates_is_found():
    """Each interval the period +-10 % (a sleep with jitter, so the calls drift off any grid):
    the period is the mean interval, within 2 % over 200 calls."""
    rng = np.random.default_rng(3)
    t = np.cumsum(60 * (1 + rng.uniform(-0.1, 0.1, 200)))
    score = score_of([("10.0.0.5", "198.51.100.7", 443, int(x * S), False) for x in t])
    (c,) = find_rhythm(score).callers
    assert abs(c.period_s / 60 - 1) < 0.02 and c.calls == 200


def test_a_device_that_changes_port_every_call_is_a_caller_across_ports():
    rng = np.random.default_rng(5)
    calls = [("10.0.0.9", "192.0.2.1", int(p), int((k * 30 + rng.uniform(-1, 1)) * S), False)
             for k, p in enumerate(rng.integers(20000, 60000, 20))]
    (c,) = find_rhythm(score_of(calls)).callers
    assert (c.client, c.server, c.server_port, c.target) == ("10.0.0.9", "192.0.2.1", None, "192.0.2.1:*")
    assert abs(c.period_s - 30) < 0.3 and c.as_dict()["server_port"] is None


def test_a_fast_loop_is_not_a_schedule():
    """A client connecting in a tight loop (every 10 ms) is regular, but no heartbeat."""
    calls = [("10.0.0.1", "10.0.0.2", 80, k * 10_000_000, False) for k in range(100)]
    assert find_rhythm(score_of(calls)).callers == []


def test_min_calls_and_min_score():
    rng = np.random.default_rng(1)
    attempts = schedule(rng, "10.0.0.1", "192.0.2.1", 443, 15, 5, 0.01) + \
        schedule(rng, "10.0.0.2", "192.0.2.1", 443, 10, 30, 0.1)
    score = score_of(attempts)
    assert {c.client for c in find_rhythm(score).callers} == {"10.0.0.1", "10.0.0.2"}
    assert {c.client for c in find_rhythm(score, min_calls=6).callers} == {"10.0.0.2"}
    best = find_rhythm(score).callers
    assert best[0].score >= best[1].score
    assert [c.client for c in find_rhythm(score, min_score=(best[0].score + best[1].score) / 2).callers] == \
        [best[0].client]
    with pytest.raises(HandshakeScoreError, match="--min-calls: 2"):
        find_rhythm(score, min_calls=2)


def test_selected_only_and_except():
    rng = np.random.default_rng(2)
    beat = schedule(rng, "10.0.0.1", "192.0.2.1", 443, 15, 20, 0.02)
    noise = poisson(rng, "10.0.0.2", "192.0.2.1", 443, 10, 300)
    score = score_of(beat + noise)
    alone, rest = selected(score, only="periodic"), selected(score, without="periodic")
    assert len(alone) == 3 * len(beat) and len(rest) == 3 * len(noise)
    assert set(alone.hosts) == {"10.0.0.1", "192.0.2.1"} and set(rest.hosts) == {"10.0.0.2", "192.0.2.1"}
    assert selected(score) is score
    with pytest.raises(HandshakeScoreError, match="--only: 'loud'"):
        selected(score, only="loud")
    with pytest.raises(HandshakeScoreError, match="not both"):
        selected(score, only="periodic", without="periodic")


def test_midi_puts_each_periodic_caller_on_a_track_named_after_it(tmp_path):
    rng = np.random.default_rng(4)
    attempts = schedule(rng, "10.0.0.1", "192.0.2.1", 443, 15, 20, 0.02) + \
        schedule(rng, "10.0.0.3", "2001:db8::1", 8883, 60, 12, 0.05, retry_every=3) + \
        poisson(rng, "10.0.0.2", "192.0.2.1", 443, 10, 300)
    score = score_of(attempts)
    found = find_rhythm(score)
    path = tmp_path / "beat.mid"
    to_midi(score).save(path)
    midi = mido.MidiFile(path)
    names = [next(m.name for m in t if m.type == "track_name") for t in midi.tracks]
    assert names[1:7] == list(Kind.ALL)
    assert names[7:] == [c.describe().rsplit(" (", 1)[0] for c in found.callers]
    assert sorted(n.split(" every ")[0] for n in names[7:]) == ["10.0.0.1 -> 192.0.2.1:443",
                                                                "10.0.0.3 -> [2001:db8::1]:8883"]

    def ons(track):
        now, out = 0, []
        for m in track:
            now += m.time
            if m.type == "note_on":
                out.append((now, m.note))
        return out

    tick_ns = 500_000
    for i, c in enumerate(found.callers):
        mine = score.notes[found.caller_of == i]
        got = ons(midi.tracks[7 + i])
        assert len(got) == len(mine)
        assert np.abs(np.array([t for t, _ in got]) * tick_ns - np.sort(mine["time_ns"])).max() <= tick_ns / 2
        keys = {score.orchestra[Kind.ALL[k]].note for k in np.unique(mine["kind"]).tolist()}
        assert {n for _, n in got} == keys  # each note on its kind's instrument
    rest = sum(len(ons(t)) for t in midi.tracks[1:7])
    assert rest == int((~found.mask).sum())
    assert len(to_midi(score, rhythm=False).tracks) == 7


# --- crafted captures, the commands end to end -------------------------------------------------------

T0 = 1_700_000_000 * S


def craft_heartbeat(path: Path, calls: int = 12, period_s: float = 15.0) -> Path:
    """A capture: 10.0.0.23 -> 52.94.233.1:443 every ``period_s`` (a SYN retried once, 1 s
    later, in every third call, then answered), beside 10.0.0.40 calling 198.51.100.9:80
    at random; each connection a whole handshake."""
    rng = random.Random(9)
    records = []

    def handshake(at, c, s, sport, dport, isn, retried=False):
        syn = eth(tcp_ip(c, s, sport, dport, SYN, isn))
        records.append((at, syn))
        if retried:
            at += S
            records.append((at, syn))
        records.append((at + 30_000_000, eth(tcp_ip(s, c, dport, sport, SYN | ACK, 5000, isn + 1))))
        records.append((at + 30_100_000, eth(tcp_ip(c, s, sport, dport, ACK, isn + 1, 5001))))

    for k in range(calls):
        at = T0 + int((k * period_s + rng.uniform(-0.3, 0.3)) * S) // 1000 * 1000
        handshake(at, "10.0.0.23", "52.94.233.1", 50000 + k, 443, 1000 * k, retried=k % 3 == 1)
    t = 0.0
    for k in range(25):
        t += rng.expovariate(1 / 7)
        handshake(T0 + int(t * S) // 1000 * 1000, "10.0.0.40", "198.51.100.9", 40000 + k, 80, 777 * k)
    records.sort(key=lambda r: r[0])
    return write(path, pcap(records))


def test_hs_rhythm_on_a_capture_and_its_score(tmp_path):
    capture = craft_heartbeat(tmp_path / "beat.pcap")
    out = hs("rhythm", capture).stdout.splitlines()
    assert out[0].split() == ["client", "server:port", "period", "spread", "calls", "score", "p"]
    row = out[1].split()
    assert row[:2] == ["10.0.0.23", "52.94.233.1:443"] and row[3] == row[5] == "s" and row[6] == "12"
    assert abs(float(row[2]) - 15) < 0.3
    assert out[2:] == ["1 periodic caller among 37 attempts"]
    hs("score", capture, "-o", tmp_path / "beat.score")
    assert hs("rhythm", tmp_path / "beat.score").stdout.splitlines() == out  # the same from its score
    data = json.loads(hs("rhythm", capture, "--json").stdout)
    assert data["attempts"] == 37 and len(data["callers"]) == 1
    c = data["callers"][0]
    assert set(c) >= {"client", "server", "server_port", "period_s", "spread_s", "calls", "score", "p_value",
                      "first_ns", "last_ns"}
    assert (c["client"], c["server"], c["server_port"], c["calls"]) == ("10.0.0.23", "52.94.233.1", 443, 12)
    assert abs(c["period_s"] - 15) < 0.3 and c["p_value"] < 1e-3 and 0 < c["score"] <= 1
    assert c["first_ns"] < 0.5 * S and abs(c["last_ns"] - 165 * S) < 0.5 * S
    assert c["completed"] == 1.0 and abs(c["syn_to_syn_ack_ms"] - 30) < 0.01  # a retried SYN is part of its call
    assert json.loads(hs("rhythm", capture, "--json", "--min-score", "0.99").stdout)["callers"] == []
    assert hs("rhythm", capture, "--min-calls", "13").stdout == \
        "no periodic caller among 37 attempts (a caller needs 13+ calls on a schedule)\n"


def test_hs_rhythm_reads_of_a_score_only_its_calls(tmp_path):
    """hs rhythm reads a score file's calls (load_attempts), not every note: the same callers as the
    whole score gives, and a fault in what it reads named by its line, as every command names it."""
    from handshake_score.rhythm import read_rhythm_input
    from handshake_score.scorefile import load_score

    capture = craft_heartbeat(tmp_path / "beat.pcap")
    hs("score", capture, "-o", tmp_path / "beat.score")
    calls = read_rhythm_input([tmp_path / "beat.score"])
    assert isinstance(calls, Calls) and len(calls.time_ns) == 37
    found, whole = find_rhythm(calls), find_rhythm(load_score(tmp_path / "beat.score"))
    assert found.callers == whole.callers and found.attempts == whole.attempts == 37
    assert len(found.mask) == 37 and found.mask.sum() == 12  # of the calls: the caller's 12
    lines = (tmp_path / "beat.score").read_text().splitlines(keepends=True)
    column = next(i for i, line in enumerate(lines) if line.startswith("time_ns,"))
    lines[column + 5] = "x" + lines[column + 5]
    (tmp_path / "bad.score").write_text("".join(lines))
    r = hs("rhythm", tmp_path / "bad.score", check=False)
    assert r.returncode == 2 and r.stdout == ""
    time_ns = lines[column + 5].split(",")[0]
    assert r.stderr == f"hs: error: {tmp_path / 'bad.score'}:{column + 6}: time_ns: '{time_ns}' is not an integer\n"


def test_hs_rhythm_anonymized_names_match_hs_score(tmp_path):
    capture = craft_heartbeat(tmp_path / "beat.pcap")
    data = json.loads(hs("rhythm", capture, "--json", "--anonymize", "--key", "k1").stdout)
    c = data["callers"][0]
    assert (c["client"], c["server"]) == (pseudonym("10.0.0.23", b"k1"), pseudonym("52.94.233.1", b"k1"))
    hs("score", capture, "-o", tmp_path / "a.score", "--anonymize", "--key", "k1")
    assert json.loads(hs("rhythm", tmp_path / "a.score", "--json").stdout)["callers"][0]["client"] == c["client"]
    assert "10.0.0.23" not in hs("score", capture, "--no-write", "--anonymize", "--key", "k1").stdout


def test_hs_score_names_the_most_regular_callers(tmp_path):
    capture = craft_heartbeat(tmp_path / "beat.pcap")
    out = hs("score", capture, "--no-write").stdout.splitlines()
    assert [line for line in out if line.startswith("rhythm")] == \
        [f"rhythm      10.0.0.23 -> 52.94.233.1:443 every {line_period(out)} s (12 calls), score {line_score(out)}"]
    for args in (["--no-write"], ["-o", tmp_path / "s.score"], ["-o", tmp_path / "m.score", "--midi", tmp_path / "m.mid"]):
        data = json.loads(hs("score", capture, "--json", *args).stdout)
        assert data["rhythm"]["periodic"] == 1 and data["rhythm"]["attempts"] == 37
        (c,) = data["rhythm"]["callers"]
        assert (c["client"], c["server_port"], c["calls"]) == ("10.0.0.23", 443, 12)
    quiet = hs("score", craft_heartbeat(tmp_path / "q.pcap", calls=3), "--no-write").stdout
    assert "rhythm      no caller on a schedule" in quiet.splitlines()


def line_period(out):
    line = next(x for x in out if x.startswith("rhythm"))
    return line.split(" every ")[1].split(" s ")[0]


def line_score(out):
    return next(x for x in out if x.startswith("rhythm")).rsplit("score ", 1)[1]


def test_summary_lines_name_three_and_count_the_rest():
    rng = np.random.default_rng(8)
    attempts = [a for n in range(5) for a in schedule(rng, f"10.0.0.{n}", "192.0.2.1", 443, 10 + n, 20, 0.02)]
    callers = find_rhythm(score_of(attempts)).callers
    lines = summary_lines(callers)
    assert len(lines) == 4 and lines[0].startswith("rhythm      10.0.0.") and lines[3] == \
        "            and 2 more (hs rhythm lists them)"


def test_export_and_render_only_and_except_periodic(tmp_path):
    capture = craft_heartbeat(tmp_path / "beat.pcap")
    hs("score", capture, "-o", tmp_path / "beat.score")
    only = hs("export", tmp_path / "beat.score", tmp_path / "only.mid", "--only", "periodic").stdout
    rest = hs("export", tmp_path / "beat.score", tmp_path / "rest.mid", "--except", "periodic").stdout
    # the heartbeat: 12 calls, 3 notes each and 4 SYNs sent again; the rest: 25 handshakes
    assert only == f"wrote {tmp_path / 'only.mid'} (40 notes, stretch 1)\n"
    assert rest == f"wrote {tmp_path / 'rest.mid'} (75 notes, stretch 1)\n"
    tracks = mido.MidiFile(tmp_path / "only.mid").tracks
    assert sum(m.type == "note_on" for m in tracks[7]) == 40 and len(tracks) == 8
    assert len(mido.MidiFile(tmp_path / "rest.mid").tracks) == 7
    out = hs("render", tmp_path / "beat.score", "-o", tmp_path / "only.wav", "--only", "periodic").stdout
    assert out.startswith(f"wrote {tmp_path / 'only.wav'} (40 notes, ")
    bad = hs("export", tmp_path / "beat.score", tmp_path / "x.mid", "--only", "noisy", check=False)
    assert bad.returncode == 2 and bad.stderr.startswith("hs: error: --only: 'noisy'") and len(bad.stderr.splitlines()) == 1
    assert not (tmp_path / "x.mid").exists()
    both = hs("render", tmp_path / "beat.score", "-o", tmp_path / "x.wav", "--only", "periodic", "--except", "periodic",
              check=False)
    assert both.returncode == 2 and "not both" in both.stderr and not (tmp_path / "x.wav").exists()


def test_play_only_and_except_periodic(tmp_path):
    capture = craft_heartbeat(tmp_path / "beat.pcap")
    hs("score", capture, "-o", tmp_path / "beat.score")
    heard = {}
    for option in ("--only", "--except"):
        r = hs("play", tmp_path / "beat.score", "--max-gap", "0.001", option, "periodic")
        lines = [line for line in r.stdout.splitlines() if line.strip()]
        heard[option] = {line.split()[2] if line.split()[1] != "SYN-ACK" else line.split()[4] for line in lines}
        assert f"console    {len(lines)} strikes" in r.stderr
        assert len(lines) == (40 if option == "--only" else 75), r.stdout
    # the heartbeat's caller alone, then everyone else: never both
    assert {a.rsplit(":", 1)[0] for a in heard["--only"]} == {"10.0.0.23"}
    assert {a.rsplit(":", 1)[0] for a in heard["--except"]} == {"10.0.0.40"}
    bad = hs("play", tmp_path / "beat.score", "--only", "noisy", check=False)
    assert bad.returncode == 2 and bad.stderr.startswith("hs: error: --only: 'noisy'") and not bad.stdout
    live = hs("play", "--live", "--only", "periodic", check=False)
    assert live.returncode == 2 and live.stderr.strip() == "hs: error: --only/--except is for a score; --live plays as it happens"


def test_plot_rhythm_view(tmp_path):
    from test_plot import read_png

    capture = craft_heartbeat(tmp_path / "beat.pcap")
    hs("score", capture, "-o", tmp_path / "beat.score")
    out = hs("plot", tmp_path / "beat.score", "-o", tmp_path / "beat.png", "--view", "rhythm").stdout
    assert out == f"wrote {tmp_path / 'beat.png'} (rhythm view of 37 handshakes)\n"
    img = read_png(tmp_path / "beat.png")
    blue = (np.abs(img[..., :3].astype(int) - (0x1F, 0x5F, 0xB4)).sum(axis=2) < 30)
    width = img.shape[1]
    blue[:, :int(0.24 * width)] = blue[:, int(0.755 * width):] = False  # the plot, not the words beside it
    columns = np.flatnonzero(blue.any(axis=0))
    # twelve ticks for twelve calls (each a few pixels wide) on the first caller's row
    assert 12 <= np.count_nonzero(np.diff(columns) > 3) + 1 <= 13
    hs("score", craft_heartbeat(tmp_path / "q.pcap", calls=3), "-o", tmp_path / "q.score")
    hs("plot", tmp_path / "q.score", "-o", tmp_path / "q.png", "--view", "rhythm")
    assert (read_png(tmp_path / "q.png") < 200).any()


def test_bad_input_is_one_line(tmp_path):
    capture = craft_heartbeat(tmp_path / "beat.pcap")
    hs("score", capture, "-o", tmp_path / "a.score")
    hs("score", capture, "-o", tmp_path / "b.score")
    (tmp_path / "notes.txt").write_text("hello\n")
    cases = [
        ([tmp_path / "a.score", tmp_path / "b.score"], "hs: error: hs rhythm takes one score file"),
        ([tmp_path / "missing.pcap"], "hs: error: "),
        ([tmp_path / "notes.txt"], "hs: error: "),
        ([capture, "--min-calls", "2"], "hs: error: --min-calls: 2 is too few"),
        ([capture, "--min-score", "1.5"], "hs: error: --min-score: 1.5"),
        ([capture, "--key", "k"], "hs: error: --key is the key of --anonymize"),
    ]
    for args, start in cases:
        r = hs("rhythm", *args, check=False)
        assert r.returncode == 2 and r.stdout == "" and r.stderr.startswith(start), (args, r.stderr)
        assert len(r.stderr.splitlines()) == 1


# --- the corpus: no schedule, no caller --------------------------------------------------------------

def test_no_caller_in_any_corpus_capture(corpus):
    expected = corpus_expectations()
    for capture in sorted(corpus.glob("*.pcap*")):
        attempts = expected[capture.name]["notes"]["syn"]
        out = hs("rhythm", capture).stdout
        assert out == f"no periodic caller among {attempts:,} attempt{'s' * (attempts != 1)} " \
                      "(a caller needs 4+ calls on a schedule)\n", capture.name
        assert json.loads(hs("rhythm", capture, "--json").stdout) == {"callers": [], "attempts": attempts}
        assert find_rhythm(compose([capture]).score).callers == []


# --- loopback: a client that connects every 0.25 s for 10 s, beside random connections -------------------

def test_loopback_heartbeat_among_random_connections(tmp_path, dumpcap):
    capture = tmp_path / "beat.pcapng"
    made = {"beat": [], "random": []}

    def connect(port, what):
        with socket.create_connection((V4, port), timeout=5) as s:
            made[what].append(s.getsockname()[1])
            s.sendall(PAYLOAD)
            s.recv(1024)

    with Server() as beat, Server() as other, record(dumpcap, capture, [beat.port, other.port]):
        rng = random.Random(11)
        randoms = []
        t = rng.expovariate(1 / 0.4)
        while t < 10:
            randoms.append(t)
            t += rng.expovariate(1 / 0.4)

        def noise(start):
            for at in randoms:
                time.sleep(max(0.0, start + at - time.monotonic()))
                connect(other.port, "random")

        start = time.monotonic() + 0.1
        side = threading.Thread(target=noise, args=(start,))
        side.start()
        for k in range(40):  # every 0.25 s, on an absolute clock: no drift
            time.sleep(max(0.0, start + k * 0.25 - time.monotonic()))
            connect(beat.port, "beat")
        side.join()
    assert len(made["beat"]) == 40 and len(made["random"]) == len(randoms) > 10
    data = json.loads(hs("rhythm", capture, "--json").stdout)
    assert data["attempts"] == 40 + len(randoms)
    (c,) = data["callers"]
    assert (c["client"], c["server"], c["server_port"], c["calls"]) == (V4, V4, beat.port, 40)
    assert abs(c["period_s"] / 0.25 - 1) < 0.02 and c["completed"] == 1.0
    out = hs("score", capture, "--no-write").stdout
    assert f"rhythm      127.0.0.1 -> 127.0.0.1:{beat.port} every 0.25 s (40 calls)" in out


# --- the Python-level parts --------------------------------------------------------------------------

def test_call_log_gives_what_the_score_gives(tmp_path):
    capture = craft_heartbeat(tmp_path / "beat.pcap")
    log = CallLog()
    score = compose([capture], on_closes=log.add).score
    from_log, _ = analyse(log.calls())
    assert [c.describe() for c in from_log] == [c.describe() for c in find_rhythm(score).callers]
    assert from_log[0].as_dict() == find_rhythm(score).callers[0].as_dict()
    small = CallLog(limit=10)
    compose([capture], on_closes=small.add)
    assert len(small) == 10 and small.full


def test_rhythm_watch_notices_once_and_stays_bounded():
    watch = RhythmWatch(max_callers=100)
    noticed = []
    for k in range(10):
        found = watch.call("192.168.1.23", "52.94.233.1", 443, k * 15 * S)
        if found is not None:
            noticed.append((k, live_line(found)))
    assert noticed == [(5, "192.168.1.23 -> 52.94.233.1:443 every 15.0 s (6 calls so far)")]
    # a flood of one-call callers: at most max_callers tracked, and the heartbeat crowded out
    for n in range(5000):
        watch.call(f"10.{n // 256}.{n % 256}.1", "52.94.233.1", 443, 150 * S + n)
    assert len(watch) == 100 and watch.forgotten >= 4901
    # a caller silent for 10 periods is forgotten
    watch = RhythmWatch()
    for k in range(6):
        watch.call("a", "b", 1, k * 15 * S)
    watch.call("c", "d", 2, 75 * S + 149 * S)
    assert len(watch) == 2
    watch.call("c", "d", 2, 75 * S + 151 * S)
    assert len(watch) == 1
    # random calls are not noticed
    rng = np.random.default_rng(0)
    watch = RhythmWatch()
    t = np.cumsum(rng.exponential(10, 200)) * S
    assert all(watch.call("x", "y", 1, int(x)) is None for x in t)


def test_calls_and_table_words():
    calls = Calls(np.zeros(0, np.uint32), np.zeros(0, np.uint32), np.zeros(0, np.uint16), np.zeros(0, np.int64),
                  np.zeros(0, np.uint8), np.zeros(0, np.int64), [], 0)
    assert analyse(calls) == ([], pytest.approx(np.zeros(0)))
    assert table([], 1) == "no periodic caller among 1 attempt (a caller needs 4+ calls on a schedule)"


def test_hs_play_live_names_a_caller_once_it_keeps_a_schedule():
    import re
    import shutil
    import signal

    from conftest import missing

    if not shutil.which("tcpdump"):
        missing("tcpdump is not installed")
    with Server(V4) as server, Server(V4) as other:
        p = subprocess.Popen([sys.executable, "-m", "handshake_score", "play", "--live", "-i", "lo", "--filter",
                              f"tcp port {server.port} or tcp port {other.port}", "--to", "console"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            started, deadline = "", time.monotonic() + 15
            while "Ctrl-C stops" not in started:
                started += p.stderr.readline()
                if p.poll() is not None or time.monotonic() > deadline:
                    missing(f"hs play --live cannot capture here: {started}{p.communicate()[1]}")
            rng, done = random.Random(5), threading.Event()

            def at_random():  # beside the schedule, connections to the other server at random (Poisson)
                while not done.wait(rng.expovariate(1 / 0.3)):
                    complete(V4, other.port, 1)

            noise = threading.Thread(target=at_random)
            noise.start()
            beat = time.monotonic()
            for k in range(10):  # a call every 0.25 s
                complete(V4, server.port, 1)
                beat += 0.25
                time.sleep(max(0.0, beat - time.monotonic()))
            done.set()
            noise.join()
            time.sleep(0.5)
        finally:
            p.send_signal(signal.SIGTERM)
            out, err = p.communicate(timeout=20)
    rhythm = [line for line in out.splitlines() if line.startswith("rhythm:")]
    assert not any(f":{other.port} " in line for line in rhythm), out  # never the random caller
    # the caller across ports (both servers are 127.0.0.1) may be named too, before its
    # port's schedule is plain under load; the one on a schedule is named exactly once
    assert all(line.startswith("rhythm: 127.0.0.1 -> 127.0.0.1:* ") for line in rhythm
               if f":{server.port} " not in line), out
    said = [line for line in rhythm if f":{server.port} " in line]
    assert len(said) == 1, out
    m = re.fullmatch(rf"rhythm: 127\.0\.0\.1 -> 127\.0\.0\.1:{server.port} every (0\.2[3-7]) s \((\d+) calls so far\)",
                     said[0])
    assert m and 6 <= int(m[2]) <= 10, said
    # said beside the console's lines, after the SYN that made the schedule plain
    syns = [line for line in out.splitlines() if " SYN " in line and f":{server.port} " in line]
    assert len(syns) == 10 and out.index(said[0]) > out.index(syns[int(m[2]) - 1])
