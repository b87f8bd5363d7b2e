"""Run one command; print its wall time and memory as JSON. Used by bench_score.py.

    python benchmarks/measure.py OUT TIMEOUT [--sample] -- COMMAND...

The command's stdout goes to OUT (stderr to OUT.err). ``max_rss_mb`` is the largest single
process of the command's tree (``getrusage(RUSAGE_CHILDREN).ru_maxrss``: exact, but a tool that
forks a worker, or pyshark with its tshark, is more than its largest process). With
``--sample`` the whole tree's PSS (shared pages counted once) is also read every 10 ms and its
peak reported as ``tree_pss_mb``; the sampling costs CPU, so timed runs go without it.
"""

import json
import os
import resource
import subprocess
import sys
import threading
import time


def descendants(root: int) -> list[int]:
    """``root`` and every process below it (from /proc/*/stat parent ids)."""
    parent = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    parent[int(name)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass  # gone meanwhile
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += [child for child, ppid in parent.items() if ppid == pid]
    return tree


def pss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("Pss:"))
        except (OSError, StopIteration, ValueError):
            pass
    return total


def main(out: str, timeout: float, sample: bool, argv: list[str]) -> None:
    peak = 0
    with open(out, "wb") as stdout, open(out + ".err", "wb") as stderr:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=stdout, stderr=stderr)
        if sample:
            while proc.poll() is None and time.perf_counter() - start < timeout:
                peak = max(peak, pss_kib(descendants(proc.pid)))
                time.sleep(0.01)
        # a blocking wait4 returns the moment the command ends (Popen.wait(timeout) polls in
        # steps of up to 50 ms: too coarse for tcpdump's tenth of a second); a timer kills it if late
        killer = threading.Timer(max(1.0, timeout - (time.perf_counter() - start)), proc.kill)
        killer.start()
        try:
            rc = proc.wait()
        finally:
            killer.cancel()
        seconds = time.perf_counter() - start
    max_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"seconds": seconds, "max_rss_mb": max_rss, "tree_pss_mb": peak / 1024 if sample else None,
                      "rc": rc}))


if __name__ == "__main__":
    args = sys.argv[1:]
    cut = args.index("--")
    main(args[0], float(args[1]), "--sample" in args[2:cut], args[cut + 1:])
