"""Time ``hs score`` end to end beside tshark and tcpdump on captures of several shapes.

    python benchmarks/bench_score.py [--packets 1000000] [--runs 5] [--tshark-runs 2] [--out benchmarks/RESULTS.md]
                                     [--shapes mixed,vxlan,erspan] [--before DIR]

Shapes (``--shapes``, all by default), each about ``--packets`` packets, made once in
benchmarks/data/ (git-ignored) by make_capture.py:

- ``mixed``: the synthetic capture of make_capture.py as it always was (pcap, 128-byte frames);
- ``upload-full``, ``upload-cut``: the same connections, their data from the client, whole
  frames and cut to 128 bytes (pcap): every client packet acknowledges the server's ISN + 1;
- ``download-full``, ``download-cut``: the data from the server (pcapng);
- ``loopback``: real traffic recorded by dumpcap on lo (pcapng, 128 bytes) while
  make_capture.py uploads and downloads a few MB, makes hundreds of short connections a second
  and connects to a closed port and to a listener that never answers;
- ``vxlan``, ``erspan``: the mixed capture as a switch mirrors it, every frame inside VXLAN
  with a VLAN tag inside, or inside GRE and ERSPAN type II (pcap, 160-byte frames). Not among
  the default shapes; tcpdump's filter does not look inside tunnels, so it is not run on them.

``--before DIR``: a checkout of an older commit (``git worktree add --detach DIR COMMIT``);
its ``hs score --no-write`` runs beside today's, taking turns, and a table compares them.

hs runs from a copy of the package made when the run starts (so the whole run measures one
version, whatever is edited meanwhile). Rows per shape: ``hs score --json --no-write``, ``hs score --json`` writing the score file,
tcpdump with a BPF filter for SYN/RST (reading and filtering in C: the floor) and tshark with
a display filter for SYN/RST. Every measurement is a fresh process started by measure.py (wall
time, the peak RSS of the largest process); one more, untimed run of each hs row samples the
PSS of its whole process tree (it forks a reader). Commands take turns run by run, so the noise
of a shared machine falls on all alike; the table gives medians and the ratios of medians of the
same run. Outputs are checked against the generator's ground truth (for the recorded capture:
the attempts made, by outcome; tshark's and tcpdump's SYN/RST counts against each other). The
last section times the stages of hs inside one process, shape by shape: where the time goes.
"""

from __future__ import annotations

import argparse
import filecmp
import hashlib
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import machine  # benchmarks/machine.py

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
FILTER = "tcp.flags.syn==1 or tcp.flags.reset==1"
# tcp[] indexes TCP over IPv4 only; the second half does IPv6 (no extension headers here).
BPF = "tcp[tcpflags] & (tcp-syn|tcp-rst) != 0 or (ip6[6] == 6 and ip6[53] & 0x06 != 0)"
TSHARK_X, TCPDUMP_X, TARGET_RSS_MB, WRITING_X = 50, 3, 200, 1.5
HS, HS_WRITING, TCPDUMP, TSHARK = "hs score --no-write", "hs score, writing the score", "tcpdump BPF", "tshark -Y"
KINDS = ("packets", "notes", "handshakes")
SHAPES = {  # name: make_capture.py arguments and file name
    "mixed": (["--shape", "mixed"], "synthetic-{n}.pcap"),
    "upload-full": (["--shape", "upload", "--snaplen", "0"], "upload-full-{n}.pcap"),
    "upload-cut": (["--shape", "upload"], "upload-cut-{n}.pcap"),
    "download-full": (["--shape", "download", "--snaplen", "0", "--format", "pcapng"], "download-full-{n}.pcapng"),
    "download-cut": (["--shape", "download", "--format", "pcapng"], "download-cut-{n}.pcapng"),
    "loopback": (["--shape", "loopback"], "loopback-{n}.pcapng"),
    "vxlan": (["--shape", "mixed", "--tunnel", "vxlan", "--snaplen", "160"], "vxlan-{n}.pcap"),
    "erspan": (["--shape", "mixed", "--tunnel", "erspan", "--snaplen", "160"], "erspan-{n}.pcap"),
}
DEFAULT_SHAPES = [s for s in SHAPES if s not in ("vxlan", "erspan")]
TUNNELLED = ("vxlan", "erspan")
HS_BEFORE = "hs score --no-write, before"
HS_WRITING_BEFORE = "hs score, writing the score, before"
HS_TSHARK = "hs score --no-write --reader tshark"  # Wireshark's dissectors: for link types hs does not read
OURS = (HS, HS_WRITING, HS_BEFORE, HS_WRITING_BEFORE, HS_TSHARK)  # the rows that print hs's JSON summary


def measure(argv, sample=False, timeout=900) -> tuple[dict, str]:
    """One run of ``argv`` in a fresh process under measure.py: ({seconds, max_rss_mb,
    tree_pss_mb}, stdout)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp, "out")
        cmd = [sys.executable, HERE / "measure.py", out, str(timeout), *(["--sample"] if sample else []), "--", *argv]
        res = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, check=True, cwd=HERE.parent)
        m = json.loads(res.stdout)
        if m["rc"] != 0:
            err = Path(f"{out}.err").read_text(errors="replace").strip().splitlines()
            raise RuntimeError(f"{argv[0]} exited {m['rc']}: {err[-1] if err else ''}")
        return m, out.read_text(errors="replace")


def capture(packets: int, shape: str = "mixed") -> tuple[Path, dict]:
    """The capture of ``shape`` (see SHAPES) of about ``packets`` packets and its ground truth,
    made if missing."""
    args, name = SHAPES[shape]
    path = DATA / name.format(n=packets)
    expected = Path(f"{path}.expected.json")
    if not (path.exists() and expected.exists()):
        DATA.mkdir(exist_ok=True)
        print(f"making {path.name} ...", flush=True)
        subprocess.run([sys.executable, HERE / "make_capture.py", path, "--packets", str(packets), *args],
                       check=True, stdout=subprocess.DEVNULL)
    with open(path, "rb") as f:  # into the page cache, so no tool pays for the first read
        while f.read(1 << 24):
            pass
    return path, json.loads(expected.read_text())


def snapshot(folder: Path, root: Path = HERE.parent) -> list[str]:
    """A copy of the package as it is now in ``folder``, byte-compiled, and the command that runs
    its ``hs``: the whole run measures one version, whatever is edited meanwhile."""
    shutil.copytree(root / "handshake_score", folder / "handshake_score",
                    ignore=shutil.ignore_patterns("__pycache__"))
    # compiled, as pip compiles an installed package: else, where PYTHONDONTWRITEBYTECODE is set, every
    # run would compile the modules it imports, a cost no installed hs pays
    subprocess.run([sys.executable, "-m", "compileall", "-q", folder / "handshake_score"], check=True,
                   stdout=subprocess.DEVNULL)
    return ["env", f"PYTHONPATH={folder}", sys.executable, "-P", "-c", "from handshake_score.cli import main; main()"]


def check_hs(out: str, truth: dict) -> str:
    """Compare ``hs score --json`` output with the generator's ground truth."""
    got = json.loads(out)
    diffs = [f"{k}: {got.get(k)} != {truth[k]}" for k in KINDS if got.get(k) != truth[k]]
    return "matches ground truth" if not diffs else "MISMATCH " + "; ".join(diffs)


def count_pcap_records(path: Path) -> int:
    """Records in a microsecond/nanosecond little-endian pcap file (tcpdump's output)."""
    data, n, off = path.read_bytes(), 0, 24
    while off + 16 <= len(data):
        off += 16 + int.from_bytes(data[off + 8:off + 12], "little")
        n += 1
    return n


def check_handshakes(out: str, truth: dict) -> str:
    """The recorded capture: the attempts hs found, by outcome, against those made."""
    got = json.loads(out)["handshakes"]
    return "attempts made = found" if got == truth["handshakes"] else f"MISMATCH handshakes: {got} != {truth['handshakes']}"


def syn_rst_count(path: Path) -> int:
    """SYN/RST packets tcpdump's filter keeps (one untimed run written to a file)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp, "out.pcap")
        subprocess.run(["tcpdump", "-r", path, "-w", out, BPF], check=True, stderr=subprocess.DEVNULL)
        return count_pcap_records(out)


def found_by_before(out: str, truth: dict) -> str:
    """The older code's result, said without failing the run (it may not read a new shape)."""
    got = json.loads(out)
    if "notes" not in truth:  # the recorded capture: the attempts made
        found, made = got["handshakes"], truth["handshakes"]
        return "attempts made = found" if found == made else f"{sum(found.values()):,} attempts of {sum(made.values()):,}"
    return "matches ground truth" if all(got.get(k) == truth[k] for k in KINDS) else \
        f"{sum(got.get('notes', {}).values()):,} notes of {sum(truth['notes'].values()):,}"


def score_path(shape: str, version: str = "now") -> Path:
    """Where the rows of ``shape`` that write the score write it."""
    return DATA / f"bench-{shape}-{version}.score"


def rows_for(shape: str, path: Path, truth: dict, hs: list[str] | None, before: list[str] | None = None) -> list[dict]:
    """What to run on one capture: name, argv, runs, and a check of its output."""
    synthetic = "notes" in truth
    check = (lambda out: check_hs(out, truth)) if synthetic else (lambda out: check_handshakes(out, truth))
    syn_rst = truth.get("syn_or_rst_packets")
    rows = [
        dict(name=TCPDUMP, argv=["tcpdump", "-r", path, "-w", "/dev/null", BPF], check=lambda out: "(checked apart)"),
        dict(name=TSHARK, argv=["tshark", "-r", path, "-T", "fields", "-e", "frame.time_epoch", "-e", "tcp.flags",
                                "-Y", FILTER], check=lambda out: len(out.splitlines())),
    ]
    if hs:
        rows[0:0] = [dict(name=HS, argv=[*hs, "score", path, "--json", "--no-write"], check=check),
                     dict(name=HS_WRITING, argv=[*hs, "score", path, "--json", "--force", "-o", score_path(shape)],
                          check=check),
                     dict(name=HS_TSHARK, argv=[*hs, "score", path, "--json", "--no-write", "--reader", "tshark"],
                          check=check)]
    if hs and before:
        rows.insert(1, dict(name=HS_BEFORE, argv=[*before, "score", path, "--json", "--no-write"],
                            check=lambda out: found_by_before(out, truth)))
        rows.insert(3, dict(name=HS_WRITING_BEFORE, argv=[*before, "score", path, "--json", "--force", "-o",
                                                          score_path(shape, "before")],
                            check=lambda out: found_by_before(out, truth)))
    if shape in TUNNELLED:
        rows = [r for r in rows if r["name"] != TCPDUMP]
    for r in rows:
        r["shape"], r["capture"] = shape, path
    return [r for r in rows if shutil.which(str(r["argv"][0]))]


def warm(path) -> None:
    """Read ``path`` once, untimed, so every command finds it in the page cache: the first
    command to read a capture of a round would otherwise pay for the disk alone (a sandbox's
    page cache need not hold every shape's capture)."""
    with open(path, "rb") as f:
        while f.read(1 << 24):
            pass


def in_turns(rows: list[dict], i: int) -> list[dict]:
    """The rows of run ``i``: shape by shape, each capture warmed before its commands, and
    the commands of a shape in reverse order every other run, so that none always runs first."""
    shapes = {}
    for r in rows:
        shapes.setdefault(r["shape"], []).append(r)
    ordered = []
    for group in shapes.values():
        ordered += [None] + (group[::-1] if i % 2 else group)  # None: warm the capture first
    return ordered


def run_all(rows: list[dict], runs: int, tshark_runs: int) -> None:
    """Fill each row with the seconds and RSS of every run, commands taking turns; then one
    untimed run of each hs row sampling the memory of its whole process tree."""
    for r in rows:
        r["seconds"], r["rss"], r["inner"] = [], [], []
    for i in range(runs):
        turns = in_turns(rows, i)
        for k, r in enumerate(turns):
            if r is None:
                warm(turns[k + 1]["capture"])
                continue
            if r["name"] in (TSHARK, HS_TSHARK) and i >= tshark_runs:
                continue
            m, out = measure(r["argv"], timeout=1800)
            r["seconds"].append(m["seconds"])
            r["rss"].append(m["max_rss_mb"])
            if i == 0:
                r["result"] = r["check"](out)
            if r["name"] in OURS:
                r["inner"].append(json.loads(out)["seconds"])
            print(f"  run {i + 1}/{runs} {r['shape']} {r['name']}: {m['seconds']:.3f} s, {m['max_rss_mb']:.0f} MB",
                  flush=True)
    for r in rows:
        r["tree"] = measure(r["argv"], sample=True, timeout=1800)[0]["tree_pss_mb"] if r["name"] in OURS else 0
        r["median_s"] = statistics.median(r["seconds"])
        r["rss_mb"] = statistics.median(r["rss"])
        r["peak_mb"] = max(max(r["rss"]), r["tree"])


def stages(path: Path) -> dict:
    """Where hs's time goes, in this process (no worker): reading and decoding the records,
    the prefilter, decoding the rows it keeps, and the tracker (the best of three)."""
    from handshake_score.sources import CaptureReader
    from handshake_score.tracker import HandshakeTracker

    best = None
    for _ in range(3):
        t = dict(read=0.0, prefilter=0.0, select=0.0, tracker=0.0)
        tracker, fed, segments = HandshakeTracker(), 0, 0
        clock = time.perf_counter()
        for batch in CaptureReader(path).batches():
            a = time.perf_counter()
            wanted = tracker.prefilter.wanted(batch)
            b = time.perf_counter()
            rows = batch.select(wanted)
            c = time.perf_counter()
            tracker.feed(rows)
            d = time.perf_counter()
            t["read"] += a - clock
            t["prefilter"] += b - a
            t["select"] += c - b
            t["tracker"] += d - c
            fed, segments = fed + len(rows), segments + len(batch)
            clock = time.perf_counter()
        a = time.perf_counter()
        tracker.close()
        t["tracker"] += time.perf_counter() - a
        t.update(fed=fed, segments=segments)
        if best is None or sum(t[k] for k in ("read", "prefilter", "select", "tracker")) < \
                sum(best[k] for k in ("read", "prefilter", "select", "tracker")):
            best = t
    return best


def code_state(package: Path | None = None) -> str:
    """The git commit of the package and whether its files differ from it, plus a digest of
    them (of ``package``'s copy if given), to tell whether the code changed while the bench ran."""
    root = HERE.parent
    git = lambda *a: subprocess.run(["git", "-C", root, *a], capture_output=True, text=True).stdout.strip()
    files = sorted(((package or root) / "handshake_score").rglob("*.py"))
    digest = hashlib.sha1(b"".join(f.read_bytes() for f in files)).hexdigest()[:10]
    dirty = " + uncommitted changes" if git("status", "--porcelain", "--", "handshake_score") else ""
    return f"commit {git('rev-parse', '--short', 'HEAD') or '?'}{dirty} (sources digest {digest})"


def verdict_rows(shapes: dict) -> list[str]:
    met = lambda ok: "**met**" if ok else "**not met**"
    out = ["| capture | hs --no-write s | vs tshark (>= 50x) | vs tcpdump's filter (<= 3x its time) | "
           "peak RSS MB (<= 200) | writing / --no-write (<= 1.5x) |", "|---|---:|---|---|---|---|"]
    for shape, rows in shapes.items():
        by = {r["name"]: r for r in rows}
        hs, writing, tcpdump, tshark = by.get(HS), by.get(HS_WRITING), by.get(TCPDUMP), by.get(TSHARK)
        if not hs:
            continue
        x_tshark = tshark["median_s"] / hs["median_s"] if tshark else None
        x_tcpdump = hs["median_s"] / tcpdump["median_s"] if tcpdump else None
        peak = max(hs["peak_mb"], writing["peak_mb"] if writing else 0)
        x_write = writing["median_s"] / hs["median_s"] if writing else None
        cell = lambda x, ok, fmt: "-" if x is None else f"{met(ok)} ({fmt.format(x)})"
        out.append(f"| {shape} | {hs['median_s']:.3f} | {cell(x_tshark, x_tshark and x_tshark >= TSHARK_X, '{:.0f}x')} | "
                   f"{cell(x_tcpdump, x_tcpdump and x_tcpdump <= TCPDUMP_X, '{:.1f}x')} | "
                   f"{met(peak <= TARGET_RSS_MB)} ({peak:.0f}) | {cell(x_write, x_write and x_write <= WRITING_X, '{:.2f}x')} |")
    return out


def table(rows: list[dict]) -> list[str]:
    by = {r["name"]: r for r in rows}
    hs = by.get(HS)
    out = ["| command | runs | median s | packets/s | peak RSS MB, largest process | peak PSS MB, all processes | "
           "beside hs --no-write | output |", "|---|---:|---:|---:|---:|---:|---|---|"]
    for r in rows:
        if hs is None or r is hs:
            beside = "itself" if r is hs else "-"
        elif r["name"] in OURS:
            beside = f"{r['median_s'] / hs['median_s']:.2f}x its time"
        else:
            x = r["median_s"] / hs["median_s"]
            beside = f"hs is {x:,.1f}x faster" if x >= 1 else f"hs takes {1 / x:.1f}x its time"
        tree = f"{r['tree']:.0f}" if r["tree"] else "-"
        out.append(f"| {r['name']} | {len(r['seconds'])} | {r['median_s']:.3f} | {r['packets'] / r['median_s']:,.0f} | "
                   f"{r['rss_mb']:.0f} | {tree} | {beside} | {r['result']} |")
    return out


def before_after(shapes: dict, before_code: str) -> list[str]:
    """hs --no-write and hs writing the score, now and at the older commit, shape by shape, from the same run."""
    out = [f"Before: {before_code}. Same run, commands taking turns; medians.", "",
           "| capture | before s | before packets/s | now s | now packets/s | now / before | before found | "
           "writing, before s | writing, now s | now / before | the scores |",
           "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---|"]
    for shape, rows in shapes.items():
        by = {r["name"]: r for r in rows}
        old, new = by.get(HS_BEFORE), by.get(HS)
        old_w, new_w = by.get(HS_WRITING_BEFORE), by.get(HS_WRITING)
        writing = (f" {old_w['median_s']:.3f} | {new_w['median_s']:.3f} | {new_w['median_s'] / old_w['median_s']:.2f}x | "
                   f"{same_bytes(score_path(shape), score_path(shape, 'before'))} |" if old_w and new_w else " - | - | - | - |")
        if old and new:
            out.append(f"| {shape} | {old['median_s']:.3f} | {old['packets'] / old['median_s']:,.0f} | "
                       f"{new['median_s']:.3f} | {new['packets'] / new['median_s']:,.0f} | "
                       f"{new['median_s'] / old['median_s']:.2f}x | {old['result']} |{writing}")
    return out


def same_bytes(a: Path, b: Path) -> str:
    return "**identical bytes**" if filecmp.cmp(a, b, shallow=False) else "**differ**"


def describe(shape: str, path: Path, truth: dict, packets: int) -> str:
    size = f"{path.stat().st_size / 2**20:,.0f} MB"
    if shape == "loopback":
        made = truth["handshakes"]
        return (f"`{path.name}`: {packets:,} packets, pcapng, {size}, recorded by dumpcap on lo (snap length "
                f"{truth['snaplen']}): {made['complete']:,} connections made (uploads and downloads of "
                f"{truth['transfer_mb']:g} MB and short ones), {made['refused']:,} refused, "
                f"{made['unanswered']:,} unanswered.")
    snap = "whole frames" if not truth["snaplen"] else f"snap length {truth['snaplen']}"
    tunnel = {"vxlan": ", every frame in VXLAN over IPv4 with a VLAN tag inside",
              "erspan": ", every frame in GRE and ERSPAN type II over IPv4"}.get(truth.get("tunnel"), "")
    return (f"`{path.name}`: {packets:,} packets, {truth['format']}, {snap}, {size}, {truth.get('shape', 'mixed')} "
            f"connections{tunnel}, {truth['connections']:,} of them, {truth['syn_or_rst_packets'] / packets:.1%} SYN/RST packets.")


def report(args, captures, shapes, profile, startup, code, before_code=None) -> str:
    same_code = code[0].rsplit("digest", 1)[-1] == code[1].rsplit("digest", 1)[-1]
    changed = [] if same_code else [f"- **hs's code changed during the run**: {code[1]} at the end. "
                                    "Run again for figures of one version.", ""]
    lines = [
        "# hs score benchmark", "",
        f"`python benchmarks/bench_score.py --packets {args.packets} --runs {args.runs} --tshark-runs {args.tshark_runs}"
        f"{' --shapes ' + args.shapes if args.shapes != ','.join(DEFAULT_SHAPES) else ''}"
        f"{' --before DIR' if args.before else ''}` "
        "(see benchmarks/README.md). Each command a fresh process per run, commands taking turns (a capture read once, untimed, before its commands in each round, and their order reversed every other round); medians of the "
        "runs, and ratios of medians of this run. Peak RSS: the largest process (median of the runs); peak PSS: "
        "all of hs's processes together (it reads in a forked worker), sampled every 10 ms in one more, untimed run.", "",
        "## Machine", "",
        *machine(["numpy", "handshake-score"], [["tshark", "--version"], ["tcpdump", "--version"]]),
        f"- handshake_score: {code[0]}", "", *changed,
        "## Targets, shape by shape", "", *verdict_rows(shapes), "",
        f"tshark and hs --reader tshark are at most {args.tshark_runs} runs a shape (they are slow); the rest {args.runs}. "
        + (f"Process start, imports and the CLI alone (hs score on a 1,000-packet capture): "
           f"{startup['median_s']:.3f} s." if startup else ""), "",
        "## Captures", "", *[f"- **{shape}**: {describe(shape, *captures[shape])}" for shape in shapes], "",
        *(["## Before and after", "", *before_after(shapes, before_code), ""] if before_code else []),
        "## Every run", "",
    ]
    for shape, rows in shapes.items():
        lines += [f"### {shape}", "", *table(rows), ""]
    lines += ["## Where hs's time goes now", "",
              "The stages inside one process, without the reading worker (best of three): reading the records and "
              "decoding their TCP headers, the prefilter, decoding the rows it keeps, the tracker (in `hs score` the "
              "first three run in the worker while the tracker runs in the main process).", "",
              "| capture | segments | fed to the tracker | read + decode s | prefilter s | select s | tracker s |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for shape, t in profile.items():
        lines.append(f"| {shape} | {t['segments']:,} | {t['fed']:,} ({t['fed'] / max(t['segments'], 1):.1%}) | "
                     f"{t['read']:.3f} | {t['prefilter']:.3f} | {t['select']:.3f} | {t['tracker']:.3f} |")
    lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--tshark-runs", type=int, default=2, help="runs of tshark per shape (it is slow)")
    ap.add_argument("--shapes", default=",".join(DEFAULT_SHAPES), help="comma-separated, of: " + ", ".join(SHAPES))
    ap.add_argument("--before", type=Path, help="a checkout of an older commit, timed beside today's code")
    ap.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    args = ap.parse_args(argv)
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    names = [s.strip() for s in args.shapes.split(",") if s.strip()]
    captures, shapes, profile = {}, {}, {}
    copy = Path(tempfile.mkdtemp(prefix="bench-score-"))
    try:
        hs = snapshot(copy)
        before = snapshot(copy / "before", args.before) if args.before else None
        sys.path.insert(0, str(copy))  # the stages are timed on the same copy
        return run(args, names, captures, shapes, profile, hs, copy, before)
    finally:
        shutil.rmtree(copy, ignore_errors=True)


def run(args, names, captures, shapes, profile, hs, copy: Path, before: list[str] | None = None) -> int:
    for shape in names:
        path, truth = capture(args.packets, shape)
        packets = truth.get("packets") or _packets(path)
        captures[shape] = (path, truth, packets)
        shapes[shape] = rows_for(shape, path, truth, hs, before)
        for r in shapes[shape]:
            r["packets"] = packets
    code_before = code_state(copy)
    startup = None
    all_rows = [r for rows in shapes.values() for r in rows]
    if hs:
        small, small_truth = capture(1_000)
        startup = dict(name="startup", shape="1,000 packets", capture=small, argv=[*hs, "score", small, "--json", "--no-write"],
                       packets=1_000, check=lambda out: check_hs(out, small_truth))
    print(f"timing {len(all_rows)} commands, {args.runs} runs each (tshark {args.tshark_runs})", flush=True)
    run_all(all_rows + ([startup] if startup else []), args.runs, args.tshark_runs)
    for shape, rows in shapes.items():
        path, truth, packets = captures[shape]
        kept = syn_rst_count(path) if shutil.which("tcpdump") and shape not in TUNNELLED else None
        want = truth.get("syn_or_rst_packets", kept)
        for r in rows:
            if r["name"] == TCPDUMP:
                r["result"] = f"{kept:,} SYN/RST kept" + ("" if "syn_or_rst_packets" not in truth else
                                                          " = truth" if kept == want else f" MISMATCH != {want:,}")
            elif r["name"] == TSHARK:
                n = r["result"]
                r["result"] = f"{n:,} SYN/RST lines" + (" = " + ("truth" if "syn_or_rst_packets" in truth else "tcpdump's")
                                                         if n == want else f" MISMATCH != {want:,}")
        if hs:
            profile[shape] = stages(path)
    before_code = None
    if before:
        commit = subprocess.run(["git", "-C", args.before, "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True).stdout.strip() or "?"
        before_code = f"commit {commit} (`{args.before}`)"
    text = report(args, captures, shapes, profile, startup, (code_before, code_state(copy)), before_code)
    print("\n" + text)
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 1 if any("MISMATCH" in str(r["result"]) for r in all_rows) else 0


def _packets(path: Path) -> int:
    """Records in a capture, counted by hs's reader."""
    from handshake_score.sources import CaptureReader

    reader = CaptureReader(path)
    for _ in reader.batches():
        pass
    return reader.packets


if __name__ == "__main__":
    sys.exit(main())
