"""Onset error of `hs play` (actual minus scheduled time of each performer call) against mido's
MidiFile.play() and a bare sleep-then-spin loop, on an idle machine and with a second core busy.

    python benchmarks/bench_play.py [--notes 2000] [--seed 0] [--out benchmarks/RESULTS-play.md]
    python benchmarks/bench_play.py --quick      # 300 notes, prints the table, writes nothing unless --out

One score for every method and condition: notes alternating SYN (woodblock, pin 17) and SYN-ACK
(tin drum, pin 27), the first at 50 ms, then seeded random gaps of 5 to 40 ms (5 ms plus an
exponential of mean 5 ms, capped at 40 ms), on the 0.5 ms grid of hs's MIDI files so the MIDI file
holds exactly the same times. Every method runs in this process, in turn, once per condition:

- mido `MidiFile.play()` on the score's MIDI file (`to_midi`, saved and read back): the moment
  (perf_counter_ns) each note_on is yielded, against t0 (perf_counter_ns just before the first
  `next()`) plus the cumulative seconds of every message before it, metas included, as play()
  counts them. play() schedules on time.time() and only sleeps; the run also reports how far
  time.time() and perf_counter drifted apart over it.
- bare loop: per deadline, time.sleep until 1.5 ms before, spin on perf_counter_ns, read the clock.
  No performer, no thread: the floor of the method hs's conductor uses.
- hs `perform()` with each performer alone, then all of them together, each built through the
  registry (`handshake_score.play.registry`) as `hs play` builds it: console (to /dev/null),
  solenoids (`--dry-run`: gpiozero's MockFactory in the coil driver's process; it drops the
  notes that come within 80 ms of the last on their coil), midi (`MidiPortPerformer` on a port
  whose send() appends to a list: there is no ALSA sequencer here), speakers (when `jackd` is
  installed: a JACK server of this run's own on its dummy driver, a sound card paced by the
  clock), osc (when `handshake_score.play.osc` exists: to a local UDP socket this benchmark
  reads, every datagram counted). Per performer, from the timing log: actual_ns - scheduled_ns of
  every strike it made (played; a strike a coil refuses at its hard limits is counted apart).
  The speakers place each voice by its deadline on the stream's clock, and the log keeps that
  moment; their row "the call" is when the conductor called them.

Conditions: idle; busy, a separate process spinning `while True: pass` for the whole
condition (the machine this was written on has 2 cores: the second one busy); both busy, two
such processes (every core busy, as on a Pi that also captures and scores).

The solenoids' strikes are made by the coil driver, a real-time process of its own that is
handed each strike ahead and makes it at its deadline; the timing log's actual time for them is
the driver's moment of switching, and "the pin's change" row is the mock pin's own record.
"""

from __future__ import annotations

import argparse
import csv
import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mido
import numpy as np

from machine import machine, publish  # benchmarks/machine.py

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from handshake_score.midi import NS_PER_TICK, to_midi  # noqa: E402
from handshake_score.orchestra import DEFAULT  # noqa: E402
from handshake_score.play import MidiPortPerformer, perform, registry  # noqa: E402
from handshake_score.play.conductor import SPIN_NS  # noqa: E402
from handshake_score.score import NO_DELAY, NOTE, OUTCOME_CODE, Score  # noqa: E402
from handshake_score.tracker import Kind, Outcome  # noqa: E402

LEAD_NS = 50_000_000  # the first note, for every method
TARGETS = {"idle": (5.0, 50.0), "busy": (None, 500.0), "both busy": (None, 500.0)}  # hs play: p50, p99 in us
SPINNERS = {"idle": 0, "busy": 1, "both busy": 2}  # processes spinning `while True: pass` beside the run


# ----------------------------------------------------------------------------- the score

def make_score(n: int, seed: int) -> Score:
    rng = np.random.default_rng(seed)
    gaps = np.minimum(5e6 + rng.exponential(5e6, n - 1), 40e6)
    gaps = np.rint(gaps / NS_PER_TICK).astype(np.int64) * NS_PER_TICK  # on the MIDI file's 0.5 ms grid
    notes = np.zeros(n, NOTE)
    notes["time_ns"] = LEAD_NS + np.concatenate([[0], np.cumsum(gaps)])
    notes["kind"] = np.where(np.arange(n) % 2 == 0, Kind.ALL.index(Kind.SYN), Kind.ALL.index(Kind.SYN_ACK))
    notes["attempt"] = np.arange(n) // 2 + 1
    notes["client"], notes["server"] = 0, 1
    notes["client_port"] = 40000 + (np.arange(n) // 2) % 20000
    notes["server_port"] = 443
    notes["outcome"] = OUTCOME_CODE[Outcome.ALL[0]]
    notes["syn_to_syn_ack_ns"] = notes["syn_ack_to_ack_ns"] = NO_DELAY
    notes["source"] = 1
    return Score(notes, ["10.0.0.1", "93.184.216.34"], [], 0, {"bench_play": {"n": n, "seed": seed}}, DEFAULT)


# ----------------------------------------------------------------------------- the methods

def run_mido(midi: mido.MidiFile, score_ns: np.ndarray) -> dict:
    # the schedule play() follows: every message's delta, metas included, summed in seconds as it does
    cum, sched = 0.0, []
    for msg in midi:
        cum += msg.time
        if msg.type == "note_on" and msg.velocity > 0:
            sched.append(cum)
    sched_ns = np.rint(np.array(sched) * 1e9).astype(np.int64)
    assert len(sched_ns) == len(score_ns) and np.abs(sched_ns - score_ns).max() < 1_000, "MIDI file is not the score"
    midi.merged_track  # noqa: B018 - merged (and cached) before the clock starts, not during play()
    clock, actual = time.perf_counter_ns, []
    player = midi.play()
    wall0, t0 = time.time_ns(), clock()
    for msg in player:
        if msg.type == "note_on":
            actual.append(clock())
    wall1, t1 = time.time_ns(), clock()
    onsets = np.array(actual, np.int64) - (t0 + sched_ns)
    return {"mido play()": {"onsets": onsets, "dropped": 0, "refused": 0,
                            "drift_us": ((wall1 - wall0) - (t1 - t0)) / 1e3}}


def run_bare(times_ns: np.ndarray) -> dict:
    clock, sleep = time.perf_counter_ns, time.sleep
    due = times_ns.tolist()
    actual = [0] * len(due)
    woke = [0] * len(due)  # how late each sleep woke, against deadline - SPIN_NS (0 where no sleep)
    t0 = clock()
    for j, d in enumerate(due):
        deadline = t0 + d
        wait = deadline - clock() - SPIN_NS
        if wait > 0:
            sleep(wait / 1e9)
            woke[j] = clock() - (deadline - SPIN_NS)
        while clock() < deadline:
            pass
        actual[j] = clock()
    onsets = np.array(actual, np.int64) - (t0 + times_ns)
    return {"bare sleep+spin": {"onsets": onsets, "dropped": 0, "refused": 0, "woke": np.array(woke, np.int64)}}


class ListPort:
    """A MIDI output port that keeps what it is sent."""

    def __init__(self):
        self.sent = []

    def send(self, msg):
        self.sent.append(msg)


class Outputs:
    """Where the performers play in this run: a MIDI port of our own, /dev/null for the console,
    a UDP socket that counts what OSC sends, a JACK server for the speakers (each if there is one)."""

    def __init__(self):
        self.port = ListPort()
        self.devnull = open(os.devnull, "w")
        self.udp = self.jack = None
        names = registry.names()
        if "osc" in names:
            try:
                registry.load("osc")
                # the receiver is a process of its own: a thread here would take Python's lock from the conductor
                self.counted = multiprocessing.Value("q", 0)
                ready = multiprocessing.Queue()
                self.udp = multiprocessing.Process(target=_count_datagrams, args=(self.counted, ready), daemon=True)
                self.udp.start()
                self.udp_port = ready.get(timeout=10)
            except Exception as e:  # noqa: BLE001
                print(f"  no osc: {e}", file=sys.stderr)
                self.udp = None
        if shutil.which("jackd"):
            server = f"hs-bench-{os.getpid()}"
            self.jack = subprocess.Popen(["jackd", "-n", server, "-R", "-d", "dummy", "-r", "44100", "-p", "256"],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            os.environ["JACK_DEFAULT_SERVER"] = server  # read by PortAudio when sounddevice is first imported
            time.sleep(1.0)
        self.performers = ["console", "solenoids", "midi"] + (["speakers"] if self._speakers() else []) + (
            ["osc"] if self.udp is not None else [])

    def _speakers(self) -> bool:
        try:
            registry.build("speakers", DEFAULT).close()
            return True
        except Exception as e:  # noqa: BLE001 - no sound card: left out, and said
            print(f"  no speakers: {e}", file=sys.stderr)
            return False

    @property
    def datagrams(self) -> int:
        return self.counted.value if self.udp is not None else 0

    def make(self, name: str):
        if name == "midi":  # no ALSA sequencer here: the performer on a port of our own
            return MidiPortPerformer(self.port, DEFAULT)
        if name == "console":  # hs play's console writes to stdout: here, to /dev/null
            return registry.load("console")(self.devnull, colour=False)
        options = {"solenoids": {"dry_run": True},
                   "osc": {"osc": [f"127.0.0.1:{self.udp_port}"] if self.udp else []}}.get(name, {})
        p = registry.build(name, DEFAULT, options)
        if name == "speakers":  # the conductor's call, beside the place the voice was given
            calls, strike = [], p.strike

            def timed(note):
                calls.append((note, time.perf_counter_ns()))
                return strike(note)
            p.strike, p.calls = timed, calls
        return p

    def close(self):
        self.devnull.close()
        if self.udp is not None:
            self.udp.kill()
            self.udp.join()
        if self.jack is not None:
            if "sounddevice" in sys.modules:  # PortAudio let go of JACK before its server ends
                sys.modules["sounddevice"]._terminate()
            self.jack.terminate()
            self.jack.wait(10)


def _count_datagrams(counted, ready) -> None:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    ready.put(udp.getsockname()[1])
    while True:
        udp.recv(65536)
        with counted.get_lock():
            counted.value += 1


def run_hs(score: Score, which: list[str], tmp: str, outputs: Outputs) -> dict:
    performers = [outputs.make(w) for w in which]
    log = Path(tmp, "timing.csv")
    sent_before, datagrams_before = len(outputs.port.sent), outputs.datagrams
    perf = perform(score, performers, timing_log=log, force=True)
    per = {p.name: [] for p in performers}
    scheduled_solenoid: list[int] = []
    called: dict[str, dict[int, int]] = {p.name: {} for p in performers}    # note -> actual_ns
    onset_of: dict[str, dict[int, int]] = {p.name: {} for p in performers}  # note -> actual - scheduled
    scheduled: dict[int, int] = {}
    statuses: dict[str, int] = {}
    with open(log, newline="") as f:
        for row in csv.DictReader(f):
            statuses[row["status"]] = statuses.get(row["status"], 0) + 1
            if row["status"] in ("played", "deferred"):
                per[row["performer"]].append(int(row["actual_ns"]) - int(row["scheduled_ns"]))
                called[row["performer"]][int(row["note"])] = int(row["actual_ns"])
                scheduled[int(row["note"])] = int(row["scheduled_ns"])
                if row["performer"] == "solenoids":
                    scheduled_solenoid.append(int(row["scheduled_ns"]))
                onset_of[row["performer"]][int(row["note"])] = per[row["performer"]][-1]
    # every planned strike reached
    assert "not-reached" not in statuses and perf.complete, f"the performance did not reach every strike: {statuses}"
    # the log and Performance.onset_ns tell the same story
    assert np.array_equal(np.sort(np.concatenate([np.array(v, np.int64) for v in per.values()])),
                          np.sort(perf.onset_ns)), "timing log and Performance.onset_ns disagree"
    if "midi" in which:
        ons = sum(m.type == "note_on" for m in outputs.port.sent[sent_before:])
        assert ons == perf.played["midi"], f"port got {ons} note_on, played says {perf.played['midi']}"
    if "osc" in which:
        deadline = time.monotonic() + 2
        while outputs.datagrams - datagrams_before < perf.played["osc"] + 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        got = outputs.datagrams - datagrams_before
        assert got == perf.played["osc"] + 2, f"the socket got {got} datagrams for {perf.played['osc']} notes"  # + start, stop
    tag = "alone" if len(which) == 1 else "together"
    out = {f"hs {p} ({tag})": {"onsets": np.array(v, np.int64), "dropped": perf.dropped[p], "refused": perf.refused[p]}
           for p, v in per.items()}
    for p in performers:
        if p.name == "speakers":
            called["speakers"] = dict(p.calls)
            calls = np.array([t - scheduled[n] for n, t in p.calls if n in scheduled], np.int64)
            out[f"hs speakers ({tag}): the call"] = {"onsets": calls, "dropped": 0, "refused": 0}
    if which == ["solenoids"]:
        # when the (mock) pin itself went high, in the coil driver: its checks and gpiozero's layers
        rises = np.array(sorted(t for _, t, v in performers[0].pin_log() if v == 1), np.int64)
        assert len(rises) == len(scheduled_solenoid), "a strike without its pin change"
        out["hs solenoids (alone): the pin's change"] = {
            "onsets": rises - np.array(sorted(scheduled_solenoid), np.int64),
            "dropped": perf.dropped["solenoids"], "refused": perf.refused["solenoids"]}
    if len(which) > 1:
        order = sorted(called, key=lambda n: (next(p.cost for p in performers if p.name == n), which.index(n)))
        out["ahead"] = ahead({n: called[n] for n in order}, onset_of)
    return out


def ahead(called: dict[str, dict[int, int]], onset: dict[str, dict[int, int]]) -> str:
    """Together, a performer called at a shared deadline waits for the calls before it: how long each
    performer's strike held up the next performer's call at the same note, in hs's order (the
    cheapest first). The speakers' moment here is their call; the solenoids' is their driver's strike."""
    names = list(called)
    said = []
    for first, then in zip(names, names[1:]):
        gap = np.array([called[then][k] - called[first][k] for k in called[first] if k in called[then]], np.int64) / 1e3
        if len(gap):
            said.append(f"a {first} strike held up the {then} call after it by p50 {np.percentile(gap, 50):.1f} us, "
                        f"p99 {np.percentile(gap, 99):.1f} us, max {gap.max():.0f} us ({len(gap)} notes)")
    late = {name: sum(o > 50_000 for o in onset[name].values()) for name in names}
    return "; ".join(said) + "; strikes later than 50 us: " + ", ".join(f"{n} {k}" for n, k in late.items())


# ----------------------------------------------------------------------------- the busy core

def _spin() -> None:
    while True:
        pass


def cpu_seconds(pid: int | str = "self") -> float:
    """CPU time (user + system) of a process, in s."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu() -> tuple[float, float]:
    """CPU time the whole machine has spent busy, and stolen by the hypervisor, in s."""
    v = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = v[:8]
    tck = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / tck, steal / tck


# ----------------------------------------------------------------------------- the run

def stats(onsets: np.ndarray) -> tuple[float, float, float]:
    us = onsets / 1e3
    return float(np.percentile(us, 50)), float(np.percentile(us, 99)), float(us.max())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--notes", type=int, default=2000)
    ap.add_argument("--quick", action="store_true", help="300 notes; writes no file unless --out is given")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None,
                    help="write the results here (default benchmarks/RESULTS-play.md; none with --quick)")
    args = ap.parse_args(argv)
    n = 300 if args.quick else args.notes
    out = args.out if args.out is not None else (None if args.quick else HERE / "RESULTS-play.md")
    started = time.perf_counter()

    score = make_score(n, args.seed)
    times = score.notes["time_ns"]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "score.mid")
        to_midi(score).save(path)
        outputs = Outputs()
        together = sorted(outputs.performers, key=lambda n: registry.load(n).cost)
        methods = [
            ("mido play()", lambda: run_mido(mido.MidiFile(path), times)),
            ("bare sleep+spin", lambda: run_bare(times)),
            *((f"hs {name}", lambda name=name: run_hs(score, [name], tmp, outputs)) for name in outputs.performers),
            ("hs together", lambda: run_hs(score, together, tmp, outputs)),
        ]
        results: dict[str, dict] = {}
        load: dict[str, str] = {}
        held_up: dict[str, str] = {}
        for condition, count in SPINNERS.items():
            spinners = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(count)]
            for spinner in spinners:
                spinner.start()
            if spinners:
                time.sleep(0.5)
            try:
                spin0 = sum(cpu_seconds(s.pid) for s in spinners)
                (busy0, steal0), self0, wall0 = machine_cpu(), cpu_seconds(), time.perf_counter()
                results[condition] = {}
                for name, run in methods:
                    t = time.perf_counter()
                    got = run()
                    if "ahead" in got:
                        held_up[condition] = got.pop("ahead")
                    results[condition].update(got)
                    print(f"  {condition:4} {name:16} {time.perf_counter() - t:6.1f} s", file=sys.stderr, flush=True)
                wall = time.perf_counter() - wall0
                (busy1, steal1), self1 = machine_cpu(), cpu_seconds()
                assert all(s.is_alive() for s in spinners), "a busy process died"
                spun = sum(cpu_seconds(s.pid) for s in spinners) - spin0
                other = (busy1 - busy0) - (self1 - self0) - spun
                load[condition] = (f"{wall:.0f} s; this benchmark {(self1 - self0) / wall:.0%} of a core"
                                   + (f", the busy processes {spun / wall:.0%}" if spinners else "")
                                   + f", other processes {max(other, 0) / wall:.0%}, stolen by the hypervisor "
                                   f"{(steal1 - steal0) / wall:.0%}")
            finally:
                for spinner in spinners:
                    spinner.kill()
                    spinner.join()
        outputs.close()
    elapsed = time.perf_counter() - started

    span = (times[-1] - times[0]) / 1e9
    gaps = np.diff(times) / 1e6
    cmd = "python benchmarks/bench_play.py" + "".join(f" {a}" for a in (sys.argv[1:] if argv is None else argv))
    lines = [
        "# hs play: onset error", "",
        f"`{cmd}`: {n:,} notes (seed {args.seed}) alternating SYN (pin 17) and SYN-ACK (pin 27), "
        f"{span:.1f} s long, gaps {gaps.min():.1f}-{gaps.max():.1f} ms (median {np.median(gaps):.1f} ms; "
        "5 ms + exponential of mean 5 ms, capped at 40 ms, on MIDI's 0.5 ms grid). Onset error = actual minus "
        "scheduled time of each performer call (perf_counter_ns), every method in this one process, in turn, "
        "on the same score; idle, then with a separate process spinning `while True: pass` (busy), then with two "
        "of them (both busy: every core). "
        f"Whole run {elapsed:.0f} s.", "",
        *machine(["numpy", "mido", "gpiozero", "python-osc", "sounddevice", "handshake-score"],
                 [["jackd", "--version"]]), code_state(),
        f"- sys.getswitchinterval() {sys.getswitchinterval() * 1e3:g} ms; conductor spins the last "
        f"{SPIN_NS / 1e6:g} ms before a deadline", "",
        *(f"- {c}: {text}" for c, text in load.items()), "",
        "| condition | method | calls timed | dropped | p50 us | p99 us | max us | late > 50 us | late > 1.5 ms |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    verdicts = []
    for condition, rows in results.items():
        for name, r in rows.items():
            p50, p99, mx = stats(r["onsets"])
            dropped = f"{r['dropped']:,}" + (f" (+{r['refused']} refused)" if r["refused"] else "")
            late = (int(np.count_nonzero(r["onsets"] > 50_000)), int(np.count_nonzero(r["onsets"] > SPIN_NS)))
            lines.append(f"| {condition} | {name} | {len(r['onsets']):,} | {dropped} | {p50:.1f} | {p99:.1f} | {mx:.1f} "
                         f"| {late[0]} | {late[1]} |")
            if name.startswith("hs "):
                t50, t99 = TARGETS[condition]
                ok = (t50 is None or p50 <= t50) and p99 <= t99
                verdicts.append((condition, name, ok, p50, p99))
    lines += ["", "Each performer alone and together, side by side (p50 / p99 / max, us), with the peers of the same run:", "",
              "| condition | performer | alone p50 | together p50 | alone p99 | together p99 | alone max | together max |",
              "|---|---|---:|---:|---:|---:|---:|---:|"]
    for condition, rows in results.items():
        for peer in ("mido play()", "bare sleep+spin"):
            p50, p99, mx = stats(rows[peer]["onsets"])
            lines.append(f"| {condition} | {peer} (peer) | {p50:.1f} | | {p99:.1f} | | {mx:.1f} | |")
        for name in together:
            for suffix in ("", ": the call"):
                alone, both = rows.get(f"hs {name} (alone){suffix}"), rows.get(f"hs {name} (together){suffix}")
                if alone is None or both is None:
                    continue
                a, b = stats(alone["onsets"]), stats(both["onsets"])
                lines.append(f"| {condition} | {name}{suffix} | {a[0]:.1f} | {b[0]:.1f} | {a[1]:.1f} | {b[1]:.1f} "
                             f"| {a[2]:.1f} | {b[2]:.1f} |")
    lines += ["", f"Together, the performers are called one after the other from the conductor thread, the cheapest "
              f"first ({', '.join(together)}: `Performer.cost`), so at a shared deadline a later one's call waits for "
              "the earlier ones'; the solenoids come last, since their coil driver strikes at the deadline by itself "
              "and their call only hears that it did; the speakers place each voice by its deadline, whenever they "
              "are called. "
              "Late > 1.5 ms: later than the whole spin window: the sleep before it woke after the deadline, or the "
              "thread lost its CPU.", "",
              "Targets for hs play: p50 <= 5 us and p99 <= 50 us idle; p99 <= 500 us with one or both cores busy. "
              "Peers measured before on this kind of machine: mido play() p50 107 us, p99 160 us; "
              "bare sleep-then-spin p50 0.3 us, p99 2 us.", ""]
    for condition in results:
        mine = [v for v in verdicts if v[0] == condition]
        missed = [f"{name} (p50 {p50:.1f}, p99 {p99:.1f} us)" for _, name, ok, p50, p99 in mine if not ok]
        t50, t99 = TARGETS[condition]
        what = (f"p50 <= {t50:g} us, " if t50 is not None else "") + f"p99 <= {t99:g} us"
        lines.append(f"- {condition} ({what}): " + ("**met** by every hs row" if not missed
                                                     else f"**NOT met** by {', '.join(missed)}"))
    for condition, rows in results.items():
        woke = rows["bare sleep+spin"]["woke"]
        woke = woke[woke != 0] / 1e3
        lines.append(f"- {condition}: time.sleep() woke late (bare loop, against deadline - {SPIN_NS / 1e6:g} ms) by "
                     f"p50 {np.percentile(woke, 50):.0f} us, p99 {np.percentile(woke, 99):.0f} us, max {woke.max():.0f} us, "
                     f"past the deadline itself (> {SPIN_NS / 1e3:.0f} us) {np.count_nonzero(woke > SPIN_NS / 1e3)} of "
                     f"{len(woke)} sleeps; "
                     f"mido play(): time.time() - perf_counter drift over the run {rows['mido play()']['drift_us']:+.1f} us")
    for condition, text in held_up.items():
        lines.append(f"- {condition}, together: {text}")
    lines.append("")
    text = "\n".join(lines)
    if out is not None:
        publish(lines, out)
    else:
        print(text)
    return 0


def code_state() -> str:
    git = lambda *a: subprocess.run(["git", "-C", HERE.parent, *a], capture_output=True, text=True).stdout.strip()
    dirty = " + uncommitted changes" if git("status", "--porcelain", "--", "handshake_score") else ""
    return f"- handshake_score: commit {git('rev-parse', '--short', 'HEAD') or '?'}{dirty}"


if __name__ == "__main__":
    sys.exit(main())
