"""What every benchmark result shares: the lines on when, on what and with which versions it
ran, and how it is printed and saved."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path


def version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def first_line(cmd: list[str]) -> str:
    try:
        res = subprocess.run(cmd, capture_output=True, text=True)
        return (res.stdout or res.stderr).strip().splitlines()[0]
    except (OSError, IndexError):
        return "not installed"


def machine(packages: list[str], tools: list[list[str]] = ()) -> list[str]:
    """Markdown list lines: date, CPU, cores, memory, OS, Python and ``packages``' versions,
    and the first line of each of ``tools``' version commands."""
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), platform.processor())
    mem = next(int(l.split()[1]) for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal"))
    lines = [
        f"- Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}",
        f"- CPU: {platform.machine()}, {cpu}, {os.cpu_count()} cores; memory {mem / 2**20:.1f} GiB; "
        f"{platform.system()} {platform.release()}",
        f"- Python {platform.python_version()}, " + ", ".join(f"{p} {version(p)}" for p in packages),
    ]
    if tools:
        lines.append("- " + "; ".join(first_line(t) for t in tools))
    return lines


def publish(lines: list[str], out: Path) -> str:
    """Print the result and write it to ``out`` (the committed results file)."""
    text = "\n".join(lines)
    print(text)
    out.write_text(text)
    print(f"wrote {out}", file=sys.stderr)
    return text
