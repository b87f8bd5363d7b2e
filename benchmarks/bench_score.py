"""Time ``hs score`` end to end against tcpdump, tshark, dpkt and pyshark on one synthetic capture.

    python benchmarks/bench_score.py [--packets 1000000] [--runs 5] [--out benchmarks/RESULTS.md]

Every measurement is a fresh process started by measure.py, which reports wall time and the
peak RSS of the tool's largest process; one more, untimed run per tool samples the PSS of its
whole process tree. Tools take turns run by run, so the noise of a shared machine falls on all
of them alike; the table gives the median of the runs. Outputs are checked against the
generator's ground truth.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from machine import machine  # benchmarks/machine.py

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
FILTER = "tcp.flags.syn==1 or tcp.flags.reset==1"
# tcp[] indexes TCP over IPv4 only; the second half does IPv6 (no extension headers here).
BPF = "tcp[tcpflags] & (tcp-syn|tcp-rst) != 0 or (ip6[6] == 6 and ip6[53] & 0x06 != 0)"
TARGET_PPS, TARGET_RSS_MB = 2_000_000, 200
HS, HS_WRITING = "hs score --json --no-write", "hs score --json, writing the score file"
WINDOW_S = 137  # hs score --timeout (135 s) + the wait for a SYN-ACK seen before its SYN (2 s)
KINDS = ("packets", "notes", "handshakes")


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


def capture(packets: int) -> tuple[Path, dict]:
    """The synthetic capture of ``packets`` packets and its ground truth, generated if missing."""
    path = DATA / f"synthetic-{packets}.pcap"
    expected = Path(f"{path}.expected.json")
    if not (path.exists() and expected.exists()):
        DATA.mkdir(exist_ok=True)
        print(f"generating {path.name} ...", flush=True)
        subprocess.run([sys.executable, HERE / "make_capture.py", path, "--packets", str(packets)],
                       check=True, stdout=subprocess.DEVNULL)
    with open(path, "rb") as f:  # into the page cache, so no tool pays for the first read
        while f.read(1 << 24):
            pass
    return path, json.loads(expected.read_text())


def hs_command() -> list[str] | None:
    """The ``hs`` console script of this Python's environment (not a pyenv shim, whose bash
    wrapper costs 50-100 ms), else ``python -m handshake_score``; None if neither can run."""
    script = Path(sys.executable).parent / "hs"
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "handshake_score"]
    ok = subprocess.run([*cmd, "--help"], capture_output=True, cwd=HERE.parent).returncode == 0
    return cmd if ok else None


def check_hs(out: str, truth: dict) -> str:
    """Compare ``hs score --json`` output with the generator's ground truth."""
    got = json.loads(out)
    diffs = [f"{k}: {got.get(k)} != {truth[k]}" for k in KINDS if got.get(k) != truth[k]]
    return "matches ground truth" if not diffs else "MISMATCH " + "; ".join(diffs)


def check_count(name: str, got: int, want: int) -> str:
    return f"{got} {name} = truth" if got == want else f"MISMATCH {name}: {got} != {want}"


def check_dpkt(out: str, truth: dict) -> str:
    got = json.loads(out)
    keys = ("packets", "syn_packets", "syn_ack_packets", "rst_packets")
    bad = [f"{k}: {got[k]} != {truth[k]}" for k in keys if got[k] != truth[k]]
    return "SYN/SYN-ACK/RST counts = truth" if not bad else "MISMATCH " + "; ".join(bad)


def count_pcap_records(path: Path) -> int:
    """Records in a microsecond/nanosecond little-endian pcap file (tcpdump's output)."""
    data, n, off = path.read_bytes(), 0, 24
    while off + 16 <= len(data):
        off += 16 + int.from_bytes(data[off + 8:off + 12], "little")
        n += 1
    return n


def tools(path: Path, truth: dict, prefix: Path, prefix_truth: int, hs: list[str] | None) -> list[dict]:
    """What to run: name, argv, packets in the file it reads, and a check of its output."""
    py = sys.executable
    rows = [
        dict(name="tcpdump (BPF filter, C)", argv=["tcpdump", "-r", path, "-w", "/dev/null", BPF],
             packets=truth["packets"], check=lambda out: "filter only (output checked separately)"),
        dict(name="tshark -T fields -Y", packets=truth["packets"],
             argv=["tshark", "-r", path, "-T", "fields", "-e", "frame.time_epoch", "-e", "tcp.flags", "-Y", FILTER],
             check=lambda out: check_count("SYN/RST lines", len(out.splitlines()), truth["syn_or_rst_packets"])),
        dict(name="dpkt", argv=[py, HERE / "peer_dpkt.py", path], packets=truth["packets"],
             check=lambda out: check_dpkt(out, truth)),
        dict(name=f"pyshark FileCapture (first {prefix_truth['packets']:,} packets)",
             argv=[py, HERE / "peer_pyshark.py", prefix], packets=prefix_truth["packets"],
             check=lambda out: check_count("SYN/RST packets", json.loads(out)["syn_or_rst_packets"],
                                           prefix_truth["syn_or_rst_packets"])),
    ]
    if hs:
        rows[0:0] = [
            dict(name=HS, argv=[*hs, "score", path, "--json", "--no-write"],
                 packets=truth["packets"], check=lambda out: check_hs(out, truth)),
            # the default command also writes the score file (every note as a CSV line, and the
            # capture's SHA-256 in its header): more work than any peer does, shown for the record
            dict(name=HS_WRITING, argv=[*hs, "score", path, "--json", "--force", "-o", DATA / "bench.score"],
                 packets=truth["packets"], check=lambda out: check_hs(out, truth)),
        ]
    return [r for r in rows if shutil.which(str(r["argv"][0]))]


def make_prefix(path: Path, packets: int) -> tuple[Path, dict]:
    """The first ``packets`` packets of ``path`` (editcap), with tshark's SYN/RST count as truth."""
    prefix = path.with_name(f"{path.stem}-first{packets}.pcap")
    if not prefix.exists():
        subprocess.run(["editcap", "-r", path, prefix, f"1-{packets}"], check=True)
    lines = subprocess.run(["tshark", "-r", prefix, "-Y", FILTER, "-T", "fields", "-e", "frame.number"],
                           capture_output=True, text=True, check=True).stdout
    return prefix, {"packets": packets, "syn_or_rst_packets": len(lines.splitlines())}


def run_all(rows: list[dict], runs: int) -> None:
    """Fill each row with seconds/RSS of every run, tools taking turns, then one untimed run
    each sampling the memory of the tool's whole process tree."""
    for r in rows:
        r["seconds"], r["rss"] = [], []
    for i in range(runs):
        for r in rows:
            m, out = measure(r["argv"])
            r["seconds"].append(m["seconds"])
            r["rss"].append(m["max_rss_mb"])
            if i == 0:
                r["result"] = r["check"](out)
            if r["name"].startswith("hs "):  # its own reading + scoring time, without process start
                r.setdefault("inner", []).append(json.loads(out)["seconds"])
            print(f"  run {i + 1}/{runs} {r['name']}: {m['seconds']:.2f} s, {m['max_rss_mb']:.0f} MB", flush=True)
    for r in rows:
        r["tree"] = measure(r["argv"], sample=True)[0]["tree_pss_mb"]
        print(f"  memory run {r['name']}: {r['tree']:.0f} MB PSS, all processes", flush=True)


def tcpdump_check(row: dict, path: Path, truth: dict) -> None:
    """One untimed tcpdump run written to a file, to check its filter found every SYN/RST."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp, "out.pcap")
        subprocess.run(["tcpdump", "-r", path, "-w", out, BPF], check=True, stderr=subprocess.DEVNULL)
        row["result"] = check_count("SYN/RST packets kept", count_pcap_records(out), truth["syn_or_rst_packets"])


def rss_sweep(hs: list[str], sizes: list[int], runs: int) -> list[dict]:
    """hs score's time and peak RSS on captures of growing size (sizes taking turns)."""
    rows = []
    for n in sizes:
        path, truth = capture(n)
        rows.append(dict(name=f"hs score, {n:,} packets", argv=[*hs, "score", path, "--json", "--no-write"], packets=n,
                 check=lambda out, t=truth: check_hs(out, t), size_mb=path.stat().st_size / 2**20,
                 duration=truth.get("duration_s", float("nan"))))
    run_all(rows, runs)
    return rows


def summarise(r: dict) -> None:
    r["median_s"] = statistics.median(r["seconds"])
    r["pps"] = r["packets"] / r["median_s"]
    r["rss_mb"] = statistics.median(r["rss"])
    r["peak_mb"] = max(max(r["rss"]), r["tree"])  # the worse of both views of its memory


def ratio(hs_pps: float | None, r: dict) -> str:
    if hs_pps is None:
        return "-"
    x = hs_pps / r["pps"]
    if r["name"] == HS_WRITING:
        return f"{r['pps'] / hs_pps:.2f}x of hs score --no-write"
    return "1x (itself)" if r["name"] == HS else f"hs is {x:,.1f}x" if x >= 1 else f"hs is {x:.2f}x ({1 / x:.1f}x slower)"


def code_state() -> str:
    """The git commit of the package and whether its files differ from it, plus a digest of
    them, to tell whether the code changed while the bench ran."""
    root = HERE.parent
    git = lambda *a: subprocess.run(["git", "-C", root, *a], capture_output=True, text=True).stdout.strip()
    files = sorted((root / "handshake_score").rglob("*.py"))
    digest = hashlib.sha1(b"".join(f.read_bytes() for f in files)).hexdigest()[:10]
    dirty = " + uncommitted changes" if git("status", "--porcelain", "--", "handshake_score") else ""
    return f"commit {git('rev-parse', '--short', 'HEAD') or '?'}{dirty} (sources digest {digest})"


def table(rows: list[dict], hs_pps: float | None) -> list[str]:
    out = ["| tool | packets | runs | median s | packets/s | peak RSS MB, largest process | "
           "peak PSS MB, all processes | hs speed vs it | output |",
           "|---|---:|---:|---:|---:|---:|---:|---|---|"]
    for r in rows:
        out.append(f"| {r['name']} | {r['packets']:,} | {len(r['seconds'])} | {r['median_s']:.3f} | "
                   f"{r['pps']:,.0f} | {r['rss_mb']:.0f} | {r['tree']:.0f} | {ratio(hs_pps, r)} | {r['result']} |")
    return out


def sweep_table(rows: list[dict]) -> list[str]:
    out = ["| capture | capture time s | file MB | runs | median s | packets/s | peak RSS MB, largest process | "
           "peak PSS MB, all processes | output |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        out.append(f"| {r['packets']:,} packets | {r['duration']:.0f} | {r['size_mb']:.0f} | {len(r['seconds'])} | "
                   f"{r['median_s']:.3f} | {r['pps']:,.0f} | {r['rss_mb']:.0f} | {r['tree']:.0f} | {r['result']} |")
    return out


def verdicts(hs_row: dict | None, rows: list[dict], sweep: list[dict], startup: dict | None) -> list[str]:
    if hs_row is None:
        return ["- hs score could not run: no verdict."]
    met = lambda ok: "**met**" if ok else "**not met**"
    inner = statistics.median(hs_row["inner"])
    lines = [f"- Target >= {TARGET_PPS:,} packets/s end to end: {met(hs_row['pps'] >= TARGET_PPS)} "
             f"(median {hs_row['pps']:,.0f} packets/s, {hs_row['median_s']:.3f} s). Of that time, hs's own "
             f"reading and scoring (the `seconds` of its JSON) took {inner:.3f} s ({hs_row['packets'] / inner:,.0f} "
             f"packets/s)" + (f"; the same command on a {startup['packets']:,}-packet capture, nearly all process "
                              f"start, imports and CLI, takes {startup['median_s']:.3f} s" if startup else "") + ".",
             f"- Target peak RSS <= {TARGET_RSS_MB} MB: {met(hs_row['peak_mb'] <= TARGET_RSS_MB)} "
             f"({hs_row['peak_mb']:.0f} MB: the larger of the largest process's highest RSS in "
             f"{len(hs_row['rss'])} runs, {max(hs_row['rss']):.0f} MB, and all its processes' peak PSS, "
             f"{hs_row['tree']:.0f} MB)"]
    writing = next((r for r in rows if r["name"] == HS_WRITING), None)
    if writing:
        lines.append(f"- For the record, not a target: `hs score` as it runs by default, also writing the score file "
                     f"({writing['median_s']:.3f} s, {writing['pps']:,.0f} packets/s, peak {writing['peak_mb']:.0f} MB)")
    # The tracker holds the attempts of the last WINDOW_S of capture by design, so memory rises
    # until a capture outlasts that window; from there on it must not grow with the file.
    beyond = [r for r in sweep if r["duration"] > WINDOW_S]
    if len(beyond) >= 2:
        lo, hi = beyond[0], beyond[-1]
        flat = hi["peak_mb"] <= 1.1 * lo["peak_mb"] + 5
        lines.append(f"- RSS flat as the file grows, once the capture outlasts the tracker's {WINDOW_S} s window "
                     f"({hi['packets'] / lo['packets']:.0f}x the packets, {lo['duration']:.0f} s -> "
                     f"{hi['duration']:.0f} s of capture; largest peak <= 1.1x smallest + 5 MB): {met(flat)} "
                     f"({lo['peak_mb']:.0f} MB -> {hi['peak_mb']:.0f} MB)")
    elif len(sweep) >= 2:
        lines.append(f"- RSS flat as the file grows: no verdict (fewer than two captures longer than {WINDOW_S} s)")
    if len(sweep) >= 2:
        first, last = sweep[0], sweep[-1]
        lines.append(f"- Across the whole sweep, {last['packets'] // first['packets']}x the packets: "
                     f"{first['peak_mb']:.0f} MB -> {last['peak_mb']:.0f} MB (captures shorter than the window "
                     "hold fewer attempts in flight)")
    return lines


def report(args, path, truth, rows, sweep, hs_row, startup, code: tuple[str, str]) -> str:
    hs_pps = hs_row["pps"] if hs_row else None
    same_code = code[0].rsplit("digest", 1)[-1] == code[1].rsplit("digest", 1)[-1]  # a commit of other files is no change
    changed = [] if same_code else [f"- **hs's code changed during the run**: {code[1]} at the end. "
                                             "Run again for figures of one version.", ""]
    n = truth["notes"]
    lines = [
        "# hs score benchmark", "",
        f"`python benchmarks/bench_score.py --packets {args.packets} --runs {args.runs}` "
        "(see benchmarks/README.md). Medians of the runs; each tool a fresh process per run, tools taking "
        "turns. Peak RSS: the tool's largest process (median of the runs); peak PSS: all its processes "
        "together, sampled every 10 ms in one more, untimed run.", "",
        "## Machine", "", *machine(["numpy", "dpkt", "pyshark", "handshake-score"], [["tshark", "--version"], ["tcpdump", "--version"]]), f"- handshake_score: {code[0]}", "", *changed,
        "## Capture", "",
        f"`{path.name}`: {truth['packets']:,} packets, pcap, snap length {truth['snaplen']}, "
        f"{path.stat().st_size / 2**20:.0f} MB, seed {truth['seed']}; {truth['connections']:,} connections, "
        f"{truth['ipv6_packets'] / truth['packets']:.0%} IPv6 packets, "
        f"{truth['syn_or_rst_packets'] / truth['packets']:.1%} SYN/RST packets. Expected notes: "
        + ", ".join(f"{k} {v:,}" for k, v in n.items()) + "; handshakes: "
        + ", ".join(f"{k} {v:,}" for k, v in truth["handshakes"].items()) + ".", "",
        "## Speed and memory", "", *table(rows, hs_pps), "",
        "pyshark is measured on a prefix of the same capture (it runs at a few thousand packets/s); "
        "its ratio compares hs on the full file with pyshark on the prefix. "
        "tcpdump only filters (C, BPF) and writes to /dev/null; it is the ceiling, not a peer.", "",
    ]
    if sweep:
        lines += ["## RSS as the file grows (hs score)", "", *sweep_table(sweep), ""]
    lines += ["## Targets", "", *verdicts(hs_row, rows, sweep, startup), ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    ap.add_argument("--prefix", type=int, default=20_000, help="packets pyshark reads")
    ap.add_argument("--rss-sizes", default="250000,1000000,3000000,6000000",
                    help="capture sizes for the RSS sweep of hs score (comma-separated; empty: none)")
    args = ap.parse_args(argv)
    path, truth = capture(args.packets)
    prefix, prefix_truth = make_prefix(path, min(args.prefix, args.packets))
    code_before = code_state()
    hs = hs_command()
    if hs is None:
        print("hs score cannot run yet (neither `hs` nor `python -m handshake_score`): peers only", file=sys.stderr)
    rows = tools(path, truth, prefix, prefix_truth, hs)
    startup = None
    if hs:  # what process start, imports and the CLI cost, on a capture too small to matter
        small, small_truth = capture(1_000)
        startup = dict(name="hs score, 1,000 packets", argv=[*hs, "score", small, "--json", "--no-write"], packets=1_000,
                       check=lambda out: check_hs(out, small_truth))
    print(f"timing {len(rows)} tools on {path.name}, {args.runs} runs each", flush=True)
    run_all(rows + ([startup] if startup else []), args.runs)
    for r in rows + ([startup] if startup else []):
        summarise(r)
        if r["name"].startswith("tcpdump"):
            tcpdump_check(r, path, truth)
    hs_row = rows[0] if hs else None
    sizes = [int(s) for s in args.rss_sizes.split(",") if s.strip()]
    sweep = rss_sweep(hs, sizes, min(args.runs, 3)) if hs and sizes else []
    for r in sweep:
        summarise(r)
    text = report(args, path, truth, rows, sweep, hs_row, startup, (code_before, code_state()))
    print("\n" + text)
    args.out.write_text(text)
    print(f"wrote {args.out}")
    mismatched = any("MISMATCH" in r["result"] for r in rows + sweep + [startup or {"result": ""}])
    return 1 if mismatched else 0


if __name__ == "__main__":
    sys.exit(main())
