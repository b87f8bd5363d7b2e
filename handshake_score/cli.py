"""The ``hs`` command: a thin layer over the package's functions.

Every error a user can cause is one line on stderr and exit code 2; a bug of
ours is one line too (``HS_DEBUG=1`` shows its traceback).
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from . import __version__
from .errors import HandshakeScoreError

app = typer.Typer(
    name="hs",
    help="Listen to the TCP three-way handshake: capture traffic, score its handshakes, perform them.\n\n"
    "Typical use: [cyan]hs capture[/cyan], then [cyan]hs score[/cyan], then [cyan]hs play --stretch 10[/cyan] "
    "([cyan]capture[/cyan] and [cyan]play[/cyan] are not built yet).",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)

PROGRESS_FROM = 32 << 20  # show a progress bar for captures larger than this, on a terminal


def _version(value: bool):
    if value:
        print(f"hs {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[Optional[bool], typer.Option("--version", callback=_version, is_eager=True,
                                                    help="Print the version and exit.")] = None,
):
    """The app's options; its help text is the Typer(help=...) above."""


@app.command()
def score(
    captures: Annotated[list[Path], typer.Argument(help="pcap or pcapng files.", show_default=False)],
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON object.")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="A capture cut short is an error, not a warning.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds an unfinished attempt is awaited (SYN retries last ~127 s).", min=0.001)] = 135.0,
    max_attempts: Annotated[int, typer.Option(help="Attempts tracked at once; past it the oldest are evicted.", min=1)] = 200_000,
):
    """Find every TCP handshake in CAPTURES and summarise them: attempts by outcome, notes by kind, median delays."""
    from .summary import score_files

    total = sum(p.stat().st_size for p in captures if p.is_file())
    with _progress(total) as advance:
        summary = score_files(captures, strict=strict, timeout_s=timeout, max_attempts=max_attempts, on_progress=advance)
    for f in summary.files:
        if f.truncated_at is not None:
            print(f"hs: warning: {f.path}: cut short at byte {f.truncated_at}; scored the "
                  f"{f.packets} packets before it (--strict makes this an error)", file=sys.stderr)
    if json_out:
        print(json.dumps(summary.as_dict()))
    else:
        print(_report(summary))


def _progress(total: int):
    """A progress bar on stderr for large captures read from a terminal; else nothing."""
    from contextlib import contextmanager

    @contextmanager
    def bar():
        if total < PROGRESS_FROM or not sys.stderr.isatty():
            yield None
            return
        from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

        with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                      TimeRemainingColumn(), console=_stderr_console(), transient=True) as p:
            task = p.add_task("scoring", total=total)
            yield lambda done: p.update(task, completed=done)

    return bar()


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True)


def _report(summary) -> str:
    d = summary.as_dict()
    rate = d["packets"] / summary.seconds if summary.seconds else 0.0
    delays = d["delays_ms"]

    def ms(v):
        return "-" if v is None else f"{v:.3f} ms"

    lines = [
        *(f"{f['path']}: {f['packets']:,} packets ({f['format']})" for f in d["files"]),
        "handshakes  " + "  ".join(f"{k} {v:,}" for k, v in d["handshakes"].items()),
        "notes       " + "  ".join(f"{k} {v:,}" for k, v in d["notes"].items()),
        f"delays      SYN->SYN-ACK median {ms(delays['syn_to_syn_ack']['median'])}   "
        f"SYN-ACK->ACK median {ms(delays['syn_ack_to_ack']['median'])}",
    ]
    if d["evicted"]:
        lines.append(f"evicted     {d['evicted']:,} attempts past --max-attempts")
    lines.append(f"time        {summary.seconds:.3f} s ({rate:,.0f} packets/s)")
    return "\n".join(lines)


def main() -> None:
    """Entry point. Typer reports usage errors itself (exit 2); our errors become
    one line and exit code 2, and a bug of ours one line and exit code 1."""
    # SIGTERM unwinds like Ctrl-C, so cleanup runs (a reading worker is stopped, not orphaned)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    try:
        app()
    except HandshakeScoreError as e:
        print(f"hs: error: {e}", file=sys.stderr)
        sys.exit(2)
    except Exception as e:
        if os.environ.get("HS_DEBUG"):
            raise
        print(f"hs: internal error: {type(e).__name__}: {e} (HS_DEBUG=1 shows the traceback)", file=sys.stderr)
        sys.exit(1)
