"""Time and memory of ``hs score`` on a SYN flood, writing the score file and not, and whether
writing the normal benchmark capture got slower; the code before a change runs beside it.

    python benchmarks/bench_flood.py [--packets 10000000] [--runs 3] [--before REF] [--out benchmarks/RESULTS-flood.md]

The flood (``make_capture.py --shape flood``: unanswered SYNs from many clients, headers only,
each SYN an attempt of its own) and bench_score.py's 1M-packet capture are made once in
benchmarks/data/ (git-ignored). With ``--before REF`` the package as it was at git ref REF (read
with ``git archive``, the working tree untouched) runs the same commands in turn with the current
one, so both meet the same noise. Every run is a fresh process, started from a scratch folder:
its wall time (to the microsecond: ``os.wait4``, where measure.py's ``wait(timeout)`` polls in
50 ms steps, too coarse for a 0.7 s command) and its largest process's peak RSS (the rusage
``wait4`` returns), and in one more, untimed run under measure.py the peak PSS of all the
command's processes together (sampled every 10 ms). The table gives medians. Outputs are checked:
the JSON's counts against the generator's ground truth, and the score files of both versions
byte for byte.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_score import DATA, HERE, capture, check_hs, code_state, measure  # benchmarks/bench_score.py
from machine import machine, publish  # benchmarks/machine.py

TARGET_MB = 200  # hs score --no-write on the flood, all processes together


def flood(packets: int) -> tuple[Path, dict]:
    """The flood capture of ``packets`` SYNs and its ground truth, generated if missing."""
    path = DATA / f"flood-{packets}.pcap"
    expected = Path(f"{path}.expected.json")
    if not (path.exists() and expected.exists()):
        DATA.mkdir(exist_ok=True)
        print(f"generating {path.name} ...", flush=True)
        subprocess.run([sys.executable, HERE / "make_capture.py", path, "--shape", "flood", "--packets", str(packets)],
                       check=True, stdout=subprocess.DEVNULL)
    with open(path, "rb") as f:  # into the page cache
        while f.read(1 << 24):
            pass
    return path, json.loads(expected.read_text())


def hs_from(folder: Path) -> list[str]:
    """``hs`` run by this Python from the package in ``folder`` (-P: not from the current folder).
    Both versions start the same way, so only their code differs."""
    return ["env", f"PYTHONPATH={folder}", sys.executable, "-P", "-c", "from handshake_score.cli import main; main()"]


def before_command(ref: str, tmp: Path, files: list[str]) -> list[str]:
    """``hs`` as the package was at git ref ``ref``, in ``tmp``: all of it, or only ``files``
    (paths in the repository) as they were, the rest as in the working tree (others' changes
    then count on both sides). Read with git archive and git show: the checkout is untouched."""
    if files:
        shutil.copytree(HERE.parent / "handshake_score", tmp / "handshake_score",
                        ignore=shutil.ignore_patterns("__pycache__"))
        for name in files:
            old = subprocess.run(["git", "-C", HERE.parent, "show", f"{ref}:{name}"], capture_output=True, check=True)
            (tmp / name).write_bytes(old.stdout)
    else:
        archive = subprocess.run(["git", "-C", HERE.parent, "archive", ref, "handshake_score"], capture_output=True,
                                 check=True)
        subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
    return hs_from(tmp)


def timed(argv: list) -> tuple[float, float, str]:
    """One run of ``argv`` in a fresh process, from a scratch folder: (wall seconds, peak RSS MB
    of its largest process, stdout)."""
    with tempfile.TemporaryDirectory() as cwd, tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(list(map(str, argv)), stdout=out, stderr=err, cwd=cwd)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            raise RuntimeError(f"{argv[0]} exited {proc.returncode}: {err.read().decode(errors='replace')[-500:]}")
        out.seek(0)
        return seconds, usage.ru_maxrss / 1024, out.read().decode()


def rows_for(name: str, hs: list[str], path: Path, truth: dict, score: Path) -> list[dict]:
    check = lambda out: check_hs(out, truth)  # noqa: E731
    return [
        dict(name=f"{name}: hs score --json --no-write", argv=[*hs, "score", path, "--json", "--no-write"],
             packets=truth["packets"], check=check),
        dict(name=f"{name}: hs score --json, writing the score file",
             argv=[*hs, "score", path, "--json", "--force", "-o", score], packets=truth["packets"], check=check,
             score=score),
    ]


def run_all(rows: list[dict], runs: int) -> None:
    """Timed runs, rows taking turns (forward, then backward), then one sampled run each for all
    processes' memory."""
    for r in rows:
        r["seconds"], r["rss"] = [], []
    for i in range(runs):
        for r in rows if i % 2 == 0 else rows[::-1]:  # turns in both orders: no command always follows another
            seconds, rss, out = timed(r["argv"])
            r["seconds"].append(seconds)
            r["rss"].append(rss)
            if i == 0:
                r["result"] = r["check"](out)
                r["inner"] = json.loads(out)["seconds"]
            print(f"  run {i + 1}/{runs} {r['name']}: {seconds:.3f} s, {rss:.0f} MB", flush=True)
    for r in rows:
        r["tree"] = measure(r["argv"], sample=True, timeout=3600)[0]["tree_pss_mb"]
        print(f"  memory run {r['name']}: {r['tree']:.0f} MB PSS, all processes", flush=True)
        r["median_s"] = statistics.median(r["seconds"])
        r["peak_mb"] = max(max(r["rss"]), r["tree"])


def table(rows: list[dict]) -> list[str]:
    out = ["| command | packets | runs | median s | packets/s | peak RSS MB, largest process | "
           "peak PSS MB, all processes | output |", "|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        out.append(f"| {r['name']} | {r['packets']:,} | {len(r['seconds'])} | {r['median_s']:.3f} | "
                   f"{r['packets'] / r['median_s']:,.0f} | {statistics.median(r['rss']):.0f} | {r['tree']:.0f} | "
                   f"{r['result']} |")
    return out


def same_bytes(rows: list[dict]) -> list[str]:
    """The score files written by the two versions, compared byte for byte."""
    written = [r for r in rows if "score" in r]
    lines = []
    for a, b in zip(written[::2], written[1::2]):
        same = filecmp.cmp(a["score"], b["score"], shallow=False)
        lines.append(f"- `{a['score'].name}` and `{b['score'].name}` ({a['score'].stat().st_size / 2**20:,.0f} MB): "
                     + ("**identical bytes**" if same else "**DIFFERENT BYTES**"))
        for r in (a, b):
            r["same"] = same
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=10_000_000, help="SYNs in the flood (0: skip it)")
    ap.add_argument("--normal", type=int, default=1_000_000, help="packets of bench_score.py's capture (0: skip it)")
    ap.add_argument("--runs", type=int, default=3, help="timed runs on the flood")
    ap.add_argument("--normal-runs", type=int, default=15, help="timed runs on the normal capture")
    ap.add_argument("--before", metavar="REF", help="also run the package as it was at this git ref")
    ap.add_argument("--before-files", metavar="FILES", default="",
                    help="with --before: only these files (comma-separated, e.g. handshake_score/score.py) as at REF")
    ap.add_argument("--out", type=Path, default=HERE / "RESULTS-flood.md")
    args = ap.parse_args(argv)
    hs = hs_from(HERE.parent)
    code_before = code_state()
    with tempfile.TemporaryDirectory() as tmp:
        files = [f for f in args.before_files.split(",") if f]
        label = f"before ({args.before}" + (f": {', '.join(Path(f).name for f in files)}" if files else "") + ")"
        versions = [("now", hs)] + ([(label, before_command(args.before, Path(tmp), files))] if args.before else [])
        sections = []
        captures = [("flood", *flood(args.packets), args.runs)] if args.packets else []
        if args.normal:
            captures.append(("normal", *capture(args.normal), args.normal_runs))
        for what, cap, t, runs in captures:
            rows = []
            for i, (name, cmd) in enumerate(versions):
                rows += rows_for(name, cmd, cap, t, DATA / f"bench-{what}-{'now' if i == 0 else 'before'}.score")
            # writing and not side by side, each version's beside the other's
            rows = [rows[k] for k in (range(0, len(rows), 2))] + [rows[k] for k in range(1, len(rows), 2)]
            print(f"{what}: {cap.name}, {runs} runs", flush=True)
            run_all(rows, runs)
            sections.append((what, cap, t, rows, same_bytes(rows)))
            for r in rows:
                if "score" in r:
                    r["score"].unlink(missing_ok=True)
    code_after = code_state()
    lines = ["# hs score on a SYN flood", "",
             f"`python benchmarks/bench_flood.py --packets {args.packets} --runs {args.runs} --normal-runs "
             f"{args.normal_runs}" + (f" --before {args.before}" if args.before else "")
             + (f" --before-files {args.before_files}" if args.before_files else "")
             + "` (see the script's docstring). Medians of the "
             "runs; each command a fresh process per run, commands taking turns, timed to the microsecond (`os.wait4`). "
             "Peak RSS: the largest process (median of the runs); peak PSS: all the command's processes together, "
             "sampled every 10 ms in one more, untimed run.", "",
             "## Machine", "", *machine(["numpy", "handshake-score"]), f"- handshake_score: {code_before}", ""]
    if code_after.rsplit("digest", 1)[-1] != code_before.rsplit("digest", 1)[-1]:
        lines += [f"- **hs's code changed during the run**: {code_after} at the end.", ""]
    verdict = []
    for what, cap, t, rows, cmp_lines in sections:
        head = (f"`{cap.name}`: {t['packets']:,} packets, {cap.stat().st_size / 2**20:,.0f} MB"
                + (f", {t['clients']:,} client addresses, {t['rate']:,} SYNs/s ({t['duration_s']:.0f} s of capture); "
                   f"every SYN unanswered, each its own attempt" if t.get("shape") == "flood" else
                   f", bench_score.py's capture ({t['connections']:,} connections)") + ".")
        lines += [f"## {'The flood' if what == 'flood' else 'The normal benchmark capture'}", "", head, "",
                  *table(rows), "", *cmp_lines, ""]
        now = {("write" if "writing" in r["name"] else "no-write"): r for r in rows if r["name"].startswith("now")}
        old = {("write" if "writing" in r["name"] else "no-write"): r for r in rows if not r["name"].startswith("now")}
        if what == "flood":
            ok = now["no-write"]["peak_mb"] < TARGET_MB
            verdict.append(f"- Flood, `--no-write`, all processes under {TARGET_MB} MB: "
                           f"{'**met**' if ok else '**not met**'} ({now['no-write']['peak_mb']:.0f} MB: the larger "
                           f"of the largest process's highest RSS and all processes' peak PSS"
                           + (f"; before: {old['no-write']['peak_mb']:.0f} MB" if old else "") + ")")
            verdict.append(f"- Flood, writing the score file: {now['write']['peak_mb']:.0f} MB in "
                           f"{now['write']['median_s']:.1f} s" + (f" (before: {old['write']['peak_mb']:,.0f} MB in "
                                                                  f"{old['write']['median_s']:.1f} s)" if old else ""))
        elif old:
            # judged as bench_score.py's row is, end to end; what writing adds to the same command
            # without it is shown too (there start-up, imports and reading cancel out, but so does
            # any difference the versions' CLI modules make to the run without writing)
            a, b = now["write"]["median_s"], old["write"]["median_s"]
            wa, wb = a - now["no-write"]["median_s"], b - old["no-write"]["median_s"]
            verdict.append(f"- Normal capture, writing the score file not slower: {'**met**' if a <= b else '**not met**'} "
                           f"(median {a:.3f} s now, {b:.3f} s before, {a / b - 1:+.1%}; for the record, what writing "
                           f"adds to `--no-write`: {wa:.3f} s now, {wb:.3f} s before)")
    lines += ["## Verdict", "", *verdict, ""]
    publish(lines, args.out)
    bad = any("MISMATCH" in r["result"] or r.get("same") is False for *_, rows, _ in sections for r in rows)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
