"""What ``hs capture`` prints: the interface list, the start, a status line, the summary."""

from __future__ import annotations

from ..sources.ring import split_name
from .options import DEFAULT_SNAPLEN, CaptureResult, Interface, Ring, Status, is_nflog
from .session import STOP_WAIT_S

def interfaces_table(interfaces: list[Interface]) -> str:
    """``hs capture --list``: number, name, description and addresses; the default marked."""
    default = next((i.name for i in interfaces if not i.loopback), interfaces[0].name if interfaces else None)
    rows = [("#", "interface", "description", "addresses")]
    rows += [(str(i.number), i.name + (" (default)" if i.name == default else ""), i.description,
              ", ".join(i.addresses)) for i in interfaces]
    widths = [max(len(r[k]) for r in rows) for k in range(3)]
    return "\n".join(f"{r[0]:>{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}".rstrip() for r in rows)


def describe_start(result: CaptureResult) -> str:
    """What is being recorded, where, and what is kept of each packet: said when it starts."""
    o = result.options
    ring = Ring.parse(o.ring) if isinstance(o.ring, str) else o.ring
    if o.bpf is None:
        what = ("TCP only, and the tunnels, VLANs, MPLS and PPPoE it may be inside (--filter changes it)"
                if result.bpf else "none: NFLOG cannot be filtered, its nft rule chooses the packets (give "
                "the rule queue-threshold 1: dumpcap keeps only the first packet of a batch)")
    else:
        what = f"{o.bpf!r} (yours)" if o.bpf else "none: every packet (TCP or not)"
    keep = (f"the first {o.snaplen} bytes of each packet" + (": the headers, tunnels' too, not the payload "
                                                             "(--full keeps it)"
                                                             if o.snaplen == DEFAULT_SNAPLEN else "")
            if o.snaplen else "whole packets, payloads too")
    if is_nflog(result.interface):  # libpcap cannot cut them short there (see session)
        keep = "what the nft rule copies of each packet (its snaplen limits it)"
    until = []
    if o.duration is not None:
        until.append(f"{o.duration:g} s have passed")
    if o.packets is not None:
        until.append(f"{o.packets:,} packets are captured")
    until = ("until    " + " or ".join(until) + "; Ctrl-C stops it sooner") if until else "until    Ctrl-C (or SIGTERM)"
    lines = [f"capturing on {result.interface} into {result.output}", f"  filter   {what}", f"  keeping  {keep}",
             "  " + until]
    if ring is not None:
        _, prefix, suffix = split_name(result.output)
        lines.append(f"  ring     a new file every {_size(ring.size)}, the newest {ring.files} kept: "
                     f"{prefix}_NNNNN_YYYYmmddHHMMSS{suffix}")
    return "\n".join(lines)


def status_line(s: Status) -> str:
    """One line while it runs: time, packets, handshakes so far, bytes written, time left."""
    parts = [_clock(s.elapsed_s), f"packets {s.packets:,}",
             f"handshakes {s.handshakes:,} (complete {s.complete:,}, refused {s.refused:,})", _size(s.bytes)]
    if s.files > 1:
        parts.append(f"file {s.files:,}")
    if s.left_s is not None:
        parts.append(f"{_clock(s.left_s)} left")
    return "  ".join(parts)


def report(result: CaptureResult) -> str:
    """The summary printed at the end."""
    r = result
    if r.options.ring is None:
        head = f"{r.output}: {r.packets:,} packets (pcapng), {r.size:,} bytes"
        again = str(r.output)
    else:
        kept = (f"{r.files[0].name} to {r.files[-1].name}" if len(r.files) > 1 else
                r.files[0].name if r.files else "none left")
        head = (f"{r.output}: {r.packets:,} packets (pcapng) in a ring of {r.written:,} files, {len(r.files):,} "
                f"kept ({kept}), {r.size:,} bytes")
        folder, prefix, suffix = split_name(r.output)
        again = str(folder / f"{prefix}_*{suffix}")
    stopped = {"duration": f"after {r.options.duration or 0:g} s (--duration)", "stop": "when asked",
               "packets": f"after {r.options.packets or 0:,} packets (--packets)",
               "SIGINT": "by Ctrl-C (SIGINT)", "dumpcap": "when dumpcap ended"}.get(r.stopped, f"by {r.stopped}")
    if r.error:
        stopped = f"by an error: {r.error}"
    lines = [head,
             "handshakes  " + "  ".join(f"{k} {v:,}" for k, v in r.handshakes.items()),
             "notes       " + "  ".join(f"{k} {v:,}" for k, v in r.notes.items()),
             f"time        {r.seconds:.1f} s, stopped {stopped}"]
    if r.files:
        lines.append(f"next        hs score {again}")
    return "\n".join(lines)


def warnings_for(result: CaptureResult) -> list[str]:
    """What the user should know about the capture's completeness, one line each."""
    r, out = result, []
    if r.dropped:
        out.append(f"dumpcap dropped {r.dropped:,} of {r.received:,} packets: it could not keep up")
    if r.killed:
        out.append(f"dumpcap did not stop within {STOP_WAIT_S:g} s of being asked and was killed")
    if r.cut_bytes:
        out.append(f"{r.files[-1] if r.files else r.output}: cut off the last {r.cut_bytes:,} bytes, a record "
                   f"dumpcap could not finish; every packet before it is whole")
    if r.missed:
        out.append(f"{len(r.missed):,} ring files were deleted before they could be read; their packets "
                   f"and handshakes are not in the counts")
    if r.not_followed:
        out.append(f"packets could not be counted as they came ({r.not_followed}); the capture itself is complete")
    return out


def _clock(seconds: float) -> str:
    s = int(seconds + 0.5)
    return f"{s // 3600}:{s // 60 % 60:02}:{s % 60:02}" if s >= 3600 else f"{s // 60}:{s % 60:02}"


def _size(n: int) -> str:
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"
