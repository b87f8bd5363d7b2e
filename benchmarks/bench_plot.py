"""Time `hs plot` (``plot_png``) and its peak memory on scores of every size and on the two that broke it.

    python benchmarks/bench_plot.py [--runs 5] [--old /tmp/old_plot.py] [--out benchmarks/RESULTS-plot.md]

Cases: synthetic scores (tests/synthetic.py, seed 0) of 10,000, 100,000 and 1,000,000 notes; a
crafted capture (tests/craft.py) of one SYN sent 3,001 times, and one of 20,015 notes in 25
attempts (20 handshakes among 5 SYN storms), both scored by ``compose``; the largest sequence
view "auto" draws (34 attempts, 125 rows); and ``--view sequence`` forced on the 1,000,000 notes.

Every run is a fresh process (this script with ``--worker``) that builds its score, imports
matplotlib, then times one ``plot_png`` call; its peak RSS is read with ``os.wait4`` (that
process alone: score, matplotlib and drawing) and it reports its RSS before drawing too. The
table gives the median time. ``--old FILE`` runs a previous ``plot.py`` the same way
(``git show HEAD:handshake_score/plot.py > /tmp/old_plot.py``); a case the old code takes more
than 10 s over runs only once. Last, ``hs plot`` end to end on a 1,000,000-note score file
(process start, ``load_score``, drawing).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

CASES = {  # name: (how the score is made, view asked for)
    "10k notes": ("synthetic 10000", "auto"),
    "100k notes": ("synthetic 100000", "auto"),
    "1M notes": ("synthetic 1000000", "auto"),
    "one SYN sent 3,001 times": ("storm 0 1 3001", "auto"),
    "20,015 notes in 25 attempts": ("storm 20 5 3991", "auto"),
    "largest auto sequence (34 attempts)": ("synthetic 100 6", "auto"),
    "1M notes, --view sequence": ("synthetic 1000000", "sequence"),
}
SLOW_S = 10.0


def build(recipe: str, tmp: str):
    what, *args = recipe.split()
    if what == "synthetic":
        from synthetic import synthetic_score

        return synthetic_score(*map(int, args))
    from handshake_score.score import compose

    complete, storms, syns = map(int, args)
    return compose([craft_storm(Path(tmp, "storm.pcap"), complete=complete, storms=storms, syns=syns)]).score


def craft_storm(path: Path, *, complete: int, storms: int, syns: int) -> Path:
    """tests/test_plot.py's capture: ``complete`` handshakes 5 s apart among ``storms`` clients each
    sending one SYN ``syns`` times 30 ms apart, never answered (written with tests/craft.py)."""
    from craft import ACK, SYN, eth, pcap, tcp_ip, write

    t0 = 1_700_000_000 * 10**9
    c, s = "10.0.0.1", "10.0.0.2"
    records = []
    for j in range(storms):
        syn = eth(tcp_ip(c, s, 50000 + j, 80, SYN, 1000 * j))
        records += [(t0 + j * 7_000_000 + i * 30_000_000, syn) for i in range(syns)]
    for j in range(complete):
        at, port, isn = t0 + 2_500_000_000 + j * 5 * 10**9, 40000 + j, 77_000 * j
        records += [(at, eth(tcp_ip(c, s, port, 80, SYN, isn))),
                    (at + 1_000_000, eth(tcp_ip(s, c, 80, port, SYN | ACK, 900, isn + 1))),
                    (at + 1_100_000, eth(tcp_ip(c, s, port, 80, ACK, isn + 1, 901)))]
    records.sort(key=lambda r: r[0])
    return write(path, pcap(records))


def worker(recipe: str, view: str, module: str) -> None:
    """One run: build the score, import matplotlib, time plot_png; print a JSON line."""
    import importlib.util
    import resource

    with tempfile.TemporaryDirectory() as tmp:
        score = build(recipe, tmp)
        if module == "new":
            from handshake_score import plot
        else:  # an old plot.py, loaded as a module of the package (its relative imports work)
            spec = importlib.util.spec_from_file_location("handshake_score._old_plot", module)
            plot = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(plot)
        import matplotlib.backends.backend_agg  # noqa: F401  the import is not the drawing
        import matplotlib.figure  # noqa: F401
        from handshake_score.errors import HandshakeScoreError

        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        out = Path(tmp, "out.png")
        kwargs = {"warn": None} if module == "new" else {}
        start = time.perf_counter()
        try:
            chosen = plot.plot_png(score, out, view=view, **kwargs)
        except HandshakeScoreError as e:
            chosen = f"refused: {e}"
        seconds = time.perf_counter() - start
        height = 0
        if out.exists():  # from the PNG's IHDR (the old code's pictures are too big for PIL to open)
            with open(out, "rb") as f:
                head = f.read(24)
            assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR"
            height = int.from_bytes(head[20:24], "big")
        print(json.dumps({"seconds": seconds, "view": chosen, "before_kb": before, "height": height,
                          "notes": len(score.notes), "attempts": score.attempts()}))


def run(cmd: list[str]) -> tuple[dict | str, float, float]:
    """Run ``cmd``; its stdout's last line (JSON if it is), wall seconds, and its own peak RSS in MB."""
    with tempfile.TemporaryFile("w+") as errors:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errors, text=True)
        out = proc.stdout.read()  # to EOF; then reaped here, not by Popen, to read its own rusage
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.stdout.close()
        proc.returncode = os.waitstatus_to_exitcode(status)
        errors.seek(0)
        err = errors.read()
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {err.strip()[-500:]}")
    last = out.strip().splitlines()[-1] if out.strip() else ""
    try:
        result = json.loads(last)
    except ValueError:
        result = last
    return result, wall, usage.ru_maxrss / 1024


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--old", help="a previous plot.py to run beside this one")
    ap.add_argument("--out", type=Path, default=HERE / "RESULTS-plot.md")
    ap.add_argument("--worker", nargs=3, metavar=("RECIPE", "VIEW", "MODULE"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(*args.worker)
        return 0

    sys.path.insert(0, str(HERE))
    from machine import machine, publish

    me = [sys.executable, str(Path(__file__).resolve()), "--worker"]
    rows = []
    for name, (recipe, view) in CASES.items():
        new, old = [], []
        for i in range(args.runs):
            new.append(run([*me, recipe, view, "new"]))
            if args.old and (not old or (old[0][0]["seconds"] < SLOW_S and not old[0][0]["view"].startswith("refused"))):
                old.append(run([*me, recipe, view, args.old]))
            print(f"  {name}: run {i + 1}/{args.runs}", file=sys.stderr, flush=True)
        rows.append((name, view, new, old))

    # hs plot end to end on a score file of 1M notes: what a user waits for
    with tempfile.TemporaryDirectory() as tmp:
        from synthetic import synthetic_score

        from handshake_score.scorefile import save_score

        score_file = Path(tmp, "million.score")
        save_score(synthetic_score(1_000_000), score_file)
        hs = [sys.executable, "-m", "handshake_score", "plot", str(score_file), "-o", str(Path(tmp, "m.png")), "--force"]
        load = [sys.executable, "-c", "import sys; from handshake_score.scorefile import load_score; "
                "load_score(sys.argv[1])", str(score_file)]
        e2e = [run(hs) for _ in range(args.runs)]
        loads = [run(load) for _ in range(args.runs)]
        size_mb = score_file.stat().st_size / 1e6

    def med(results, key):
        return statistics.median(r[0][key] for r in results)

    def peak(results):
        return max(r[2] for r in results)

    lines = [
        "# Plotting (`hs plot`)", "",
        f"`python benchmarks/bench_plot.py --runs {args.runs}" + (" --old /tmp/old_plot.py" if args.old else "")
        + "`: every run a fresh process that builds its score, imports matplotlib, then times one `plot_png`; "
        "peak RSS is that process's own (`os.wait4`), score and matplotlib included, and \"before\" is its "
        "peak before drawing. Median of the runs; the largest peak. HEAD: the code before this change "
        "(`git show HEAD:handshake_score/plot.py`), run once where it took over 10 s.", "",
        *machine(["numpy", "matplotlib", "pillow", "handshake-score"]), "",
        "| score | notes | attempts | view | s (median) | peak RSS MB (before drawing) | PNG height px |"
        + (" HEAD: view | HEAD: s | HEAD: peak RSS MB |" if args.old else ""),
        "|---|---:|---:|---|---:|---:|---:|" + ("---|---:|---:|" if args.old else ""),
    ]
    for name, view, new, old in rows:
        first = new[0][0]
        line = (f"| {name} | {first['notes']:,} | {first['attempts']:,} | {first['view']}"
                + (" (forced, cut)" if view == "sequence" and first["notes"] > 160 else "")
                + f" | {med(new, 'seconds'):.3f} | {peak(new):.0f} ({max(r[0]['before_kb'] for r in new) / 1024:.0f})"
                f" | {first['height']:,} |")
        if args.old:
            o = old[0][0]
            if str(o["view"]).startswith("refused"):
                line += f" refused (error, exit 2) | {med(old, 'seconds'):.3f} | {peak(old):.0f} |"
            else:
                line += (f" {o['view']}{'' if len(old) > 1 else ' (1 run)'} | {med(old, 'seconds'):.3f} "
                         f"| {peak(old):.0f} |")
        lines.append(line)
    lines += [
        "", f"`hs plot` end to end on a 1,000,000-note score file ({size_mb:.0f} MB; process start, "
        "`load_score`, drawing), and `load_score` of that file alone in a process of its own:", "",
        "| command | s (median of wall) | peak RSS MB |", "|---|---:|---:|",
        f"| `hs plot million.score -o m.png` | {statistics.median(r[1] for r in e2e):.2f} | {peak(e2e):.0f} |",
        f"| `load_score(million.score)` alone | {statistics.median(r[1] for r in loads):.2f} | {peak(loads):.0f} |",
        "",
        f"- The drawing's share of `hs plot` end to end: about "
        f"{statistics.median(r[1] for r in e2e) - statistics.median(r[1] for r in loads):.2f} s; its peak RSS is "
        "`load_score`'s (handshake_score/scorefile.py), not the drawing's (see the 1M rows above).",
        "",
    ]
    publish(lines, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
