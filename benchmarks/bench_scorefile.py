"""Time writing and reading a score file against pandas doing the same with the same CSV.

    python benchmarks/bench_scorefile.py [--notes 100000] [--runs 5] [--out benchmarks/RESULTS-scorefile.md]

The score is tests/synthetic.py's (seeded). hs's ``save_score`` (header, canonical text, fsync,
rename) and ``load_score`` (every field checked, a line number for any fault) against pandas'
``to_csv`` and ``read_csv(comment="#")`` of the same table, and beside ``load_score`` the exact
line-by-line reading it falls back to: the peer a user would reach for. They
take turns run by run; the table gives the median. Each loaded table is compared with the score.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from machine import machine, publish  # benchmarks/machine.py

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE.parent))
from synthetic import synthetic_score  # noqa: E402

from handshake_score.rhythm import calls_of  # noqa: E402
from handshake_score.scorefile import _loads, dumps, load_attempts, load_score, save_score  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--notes", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", type=Path, default=HERE / "RESULTS-scorefile.md")
    args = ap.parse_args(argv)

    score = synthetic_score(args.notes)
    with tempfile.TemporaryDirectory() as tmp:
        ours, theirs = Path(tmp, "a.score"), Path(tmp, "b.csv")
        save_score(score, ours)
        frame = pd.read_csv(ours, comment="#")  # the same table, for pandas to write
        loaded = {}
        tasks = {
            "hs save_score": lambda: save_score(score, ours, force=True),
            "pandas to_csv": lambda: frame.to_csv(theirs, index=False),
            "hs load_score": lambda: loaded.__setitem__("hs", load_score(ours)),
            "pandas read_csv(comment='#')": lambda: loaded.__setitem__("pandas", pd.read_csv(ours, comment="#")),
            # the line-by-line reading load_score falls back to when anything is unusual (and before issue 13)
            "hs exact reading (the fallback)": lambda: loaded.__setitem__("exact", _loads(ours.read_text(), str(ours))),
            # what hs rhythm reads: each attempt's first note, the columns the analysis needs
            "hs load_attempts (hs rhythm's reading)": lambda: loaded.__setitem__("attempts", load_attempts(ours)),
        }
        seconds = {name: [] for name in tasks}
        for i in range(args.runs):
            for name, run in tasks.items():
                start = time.perf_counter()
                run()
                seconds[name].append(time.perf_counter() - start)
            print(f"  run {i + 1}/{args.runs}", file=sys.stderr, flush=True)
        size = ours.stat().st_size
        same = (dumps(loaded["hs"]) == ours.read_text()
                and np.array_equal(loaded["hs"].notes, loaded["exact"].notes)
                and loaded["hs"].hosts == loaded["exact"].hosts
                and np.array_equal(loaded["pandas"]["time_ns"].to_numpy(), score.notes["time_ns"])
                and all(np.array_equal(a, b) if isinstance(b, np.ndarray) else a == b
                        for a, b in zip(loaded["attempts"], calls_of(loaded["exact"]))))

    med = {name: statistics.median(s) for name, s in seconds.items()}
    lines = [
        "# Score file", "",
        f"`python benchmarks/bench_scorefile.py --notes {args.notes} --runs {args.runs}`: a {args.notes:,}-note "
        f"synthetic score (tests/synthetic.py, seed 0), {size / 1e6:.1f} MB of CSV. Writers and readers take "
        "turns in one process; median of the runs.", "",
        *machine(["numpy", "pandas", "handshake-score"]), "",
        "| task | runs | median s | notes/s | vs hs |", "|---|---:|---:|---:|---|",
    ]
    for name, m in med.items():
        ref = med["hs save_score"] if "to_csv" in name or "save" in name else med["hs load_score"]
        vs = ("1x (itself)" if name in ("hs save_score", "hs load_score") else
              f"{ref / m:.1f}x faster than load_score" if "load_attempts" in name else
              f"load_score is {m / ref:.1f}x faster" if name.startswith("hs") else
              f"hs is {m / ref:.1f}x faster" if m >= ref else f"hs is {ref / m:.1f}x slower")
        lines.append(f"| {name} | {args.runs} | {m:.3f} | {args.notes / m:,.0f} | {vs} |")
    lines += ["", "- hs load_score reads a score as hs writes it a column at a time with numpy from the bytes, "
              "checking every field as strictly as the exact line-by-line reading, which it falls back to on "
              "anything unusual to name the first bad line.",
              "- hs load_attempts (what `hs rhythm` reads of a score file) decodes time, kind and attempt on every "
              "line and the other columns the analysis needs on each attempt's first line only, checked as "
              "strictly (see its docstring for what it leaves to load_score).",
              f"- Loaded back identical (hs: same bytes when written again, the same notes and hosts as the "
              f"exact reading, load_attempts the same calls as the exact reading's notes give; pandas: same "
              f"times): "
              f"**{'yes' if same else 'NO'}**", ""]
    publish(lines, args.out)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
