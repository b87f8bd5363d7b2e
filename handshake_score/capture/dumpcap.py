"""Wireshark's dumpcap: finding it, listing interfaces, and its messages as one line of ours."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from ..errors import HandshakeScoreError
from .options import CaptureResult, Interface

INSTALL = ("dumpcap (Wireshark's capture engine) is not installed: on Debian, Ubuntu or Raspberry Pi OS "
           "run `sudo apt install tshark` (or scripts/setup.sh); elsewhere install Wireshark's command-line tools")


def no_permission(interface: str | None, dumpcap: str) -> str:
    on = f" on {interface}" if interface else ""
    return (f"no permission to capture{on}: add your user to the wireshark group (sudo dpkg-reconfigure "
            f"wireshark-common, answer Yes; sudo usermod -aG wireshark $USER; log in again) or give dumpcap "
            f"the rights (sudo setcap cap_net_raw,cap_net_admin=eip {dumpcap}); hs itself needs no root")


def find_dumpcap() -> str:
    """dumpcap on the PATH. One there that we may not run is a permission problem, not a
    missing tool: Debian's "non-superusers may capture" makes it 0754, group wireshark."""
    path = shutil.which("dumpcap")
    if path:
        return path
    for folder in os.environ.get("PATH", os.defpath).split(os.pathsep):
        there = os.path.join(folder or ".", "dumpcap")
        if os.path.isfile(there):
            raise HandshakeScoreError(no_permission(None, there))
    raise HandshakeScoreError(INSTALL)


def list_interfaces(dumpcap: str | None = None) -> list[Interface]:
    """The interfaces dumpcap can capture on, in its order (the first is its default)."""
    dumpcap = dumpcap or find_dumpcap()
    try:
        run = subprocess.run([dumpcap, "-D", "-M"], capture_output=True, text=True, errors="replace",
                             stdin=subprocess.DEVNULL, env=c_locale(), timeout=60)
    except PermissionError:
        raise HandshakeScoreError(no_permission(None, dumpcap)) from None
    if run.returncode != 0:
        raise HandshakeScoreError(reason(run.stderr, None, None, dumpcap))
    found = []
    for line in run.stdout.splitlines():
        cells = line.split("\t")
        m = re.fullmatch(r"(\d+)\. (.+)", cells[0])
        if not m:
            continue
        cells += [""] * (7 - len(cells))
        vendor, friendly, _, addresses, kind = cells[1:6]
        found.append(Interface(int(m.group(1)), m.group(2), friendly or vendor,
                               tuple(a for a in addresses.split(",") if a), kind == "loopback"))
    return found


def c_locale() -> dict:
    """dumpcap's messages in English, whatever the user's locale, so they can be recognised."""
    return {**os.environ, "LC_ALL": "C"}


_STATUS_LINES = ("Capturing on ", "File: ", "Packets captured: ", "Packets received/dropped", "Packets: ")


def statistics(lines: list[str], result: CaptureResult) -> None:
    for line in lines:
        m = re.match(r"Packets received/dropped on interface .*: (\d+)/(\d+) ", line)
        if m:
            result.received = (result.received or 0) + int(m.group(1))
            result.dropped = (result.dropped or 0) + int(m.group(2))


def reason(text: str, interface: str | None, bpf: str | None, dumpcap: str,
            output: Path | None = None) -> str:
    """dumpcap's complaint as one line of ours."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith(_STATUS_LINES)]
    said = " ".join(lines)
    low = said.lower()
    if "invalid capture filter" in low:
        m = re.search(r"isn't a valid capture filter \((.*?)\)\.?\s*(?:See|$)", said)
        why = m.group(1) if m else said.removeprefix("dumpcap: ")
        return f"bad capture filter {bpf!r}: {why}"
    if "no space left" in low:
        return "the disk is full"
    if "could not be opened" in low:  # the output file
        line = next(ln for ln in lines if "could not be opened" in ln.lower())
        why = line.partition("could not be opened: ")[2].rstrip(".") or line
        return f"{output}: cannot write the capture: {why}"
    if "there is no device named" in low or "no such device" in low or "adapter index" in low:
        return f"no interface named {interface!r} here (hs capture --list shows them)"
    if "permission to capture" in low or "operation not permitted" in low or "permission denied" in low:
        return no_permission(interface, dumpcap)
    first = lines[0].removeprefix("dumpcap: ") if lines else "no reason given"
    detail = lines[1] if len(lines) > 1 and lines[1].startswith("(") else ""
    return f"dumpcap failed: {first}{' ' + detail if detail else ''}"
