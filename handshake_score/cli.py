"""The ``hs`` command: a thin layer over the package's functions.

Every error a user can cause is one line on stderr and exit code 2; a bug of
ours is one line too (``HS_DEBUG=1`` shows its traceback).
"""

# No ``from __future__ import annotations`` here: typer reads every command's
# annotations on each run, and as strings they cost it 10 ms of eval() a run.

import gc
import json
import os
import signal
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from .errors import HandshakeScoreError
from .play.command import GenevePort, GtpPort, PlayCommand, VlanKey, VxlanPort
from .selection import Except, Only
from .play.command import play as play_command

app = typer.Typer(
    name="hs",
    help="Listen to the TCP three-way handshake: capture traffic, score its handshakes, perform them.\n\n"
    "Typical use: [cyan]hs capture[/cyan], then [cyan]hs score[/cyan], then [cyan]hs play SCORE --stretch 10[/cyan].",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)

Reader = Annotated[str, typer.Option("--reader", metavar="auto|fast|tshark", help="Who reads the captures: fast (hs's own reader), tshark (Wireshark's dissectors, slower, any link type), or auto: fast, and tshark for a link type it does not know.")]

PROGRESS_FROM = 32 << 20  # show a progress bar for captures larger than this, on a terminal


def _version(value: bool):
    if value:
        from . import version

        print(f"hs {version()}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[Optional[bool], typer.Option("--version", callback=_version, is_eager=True,
                                                    help="Print the version and exit.")] = None,
):
    """The app's options; its help text is the Typer(help=...) above."""


@app.command()
def score(
    captures: Annotated[list[Path], typer.Argument(metavar="CAPTURE...", help="pcap or pcapng files: several make one score, merged in time order; a ring buffer's base name (hs capture --ring) stands for its files.", show_default=False)],
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="The score file to write (default: scores/NAME.score, NAME from the first capture).", show_default=False)] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing score or MIDI file.")] = False,
    no_write: Annotated[bool, typer.Option("--no-write", help="Only print the summary; write no score file.")] = False,
    midi: Annotated[Optional[Path], typer.Option("--midi", help="Also export the score as a MIDI file (the score is then built in memory).", show_default=False)] = None,
    stretch: Annotated[float, typer.Option(help="For --midi: play N times slower (any N > 0).")] = 1.0,
    orchestra: Annotated[Optional[Path], typer.Option("--orchestra", help="An orchestra TOML file (see hs orchestra).", show_default=False)] = None,
    host: Annotated[Optional[list[str]], typer.Option("--host", help="Keep attempts of this host (address, network like 10.0.0.0/8, or pseudonym); repeatable.", show_default=False)] = None,
    port: Annotated[Optional[list[int]], typer.Option("--port", help="Keep attempts with this client or server port; repeatable.", show_default=False)] = None,
    start: Annotated[Optional[str], typer.Option("--from", help="Start here: seconds after the capture's start, a time of day (14:03:05, local; 14:03:05Z, UTC) or a date and time.", show_default=False)] = None,
    end: Annotated[Optional[str], typer.Option("--to", help="End here (same forms as --from).", show_default=False)] = None,
    kinds: Annotated[Optional[str], typer.Option("--kinds", help="Keep only these note kinds, comma-separated: syn,syn-retry,syn-ack,syn-ack-retry,ack,rst.", show_default=False)] = None,
    anonymize: Annotated[bool, typer.Option("--anonymize", help="Replace addresses by keyed pseudonyms, to share the score (built in memory).")] = False,
    key: Annotated[Optional[str], typer.Option("--key", envvar="HS_ANONYMIZE_KEY", help="The key of --anonymize (same key, same pseudonyms); default: random, forgotten.", show_default=False)] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON object.")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="A capture cut short is an error, not a warning.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds an unfinished attempt is awaited (SYN retries last ~127 s).", min=0.001)] = 135.0,
    max_attempts: Annotated[int, typer.Option(help="Attempts tracked at once; past it the oldest are evicted.", min=1)] = 200_000,
    reader: Reader = "auto",
    vxlan_port: VxlanPort = None,
    geneve_port: GenevePort = None,
    gtp_port: GtpPort = None,
    vlan_key: VlanKey = False,
):
    """Find every TCP handshake in CAPTURES and write them as a score: one timed note per handshake packet.

    Prints a summary: attempts by outcome, notes by kind, median delays."""
    from .digests import Digests

    # the score's header wants each capture's sha256: begun now, it runs while numpy and the reader load
    digests = None if no_write else Digests(captures)
    from .files import check_writable
    from .sources.ring import expand

    if key is not None and not anonymize:
        raise HandshakeScoreError("--key is the key of --anonymize: give --anonymize too")
    if no_write:
        output = None
    elif output is None:  # named after what was given (a ring's base name, say)
        output = Path("scores") / (_default_name(captures) + ".score")
    captures = expand(captures)  # a ring buffer's base name stands for its files
    if midi is not None:
        from .timing import checked_stretch

        checked_stretch(stretch)
        if output is not None and midi.resolve() == output.resolve():
            raise HandshakeScoreError(f"{midi}: the score and the MIDI file cannot be the same file")
    for out in (output, midi):
        if out is not None:
            check_writable(out, force)
    band = None
    if orchestra is not None or output is not None or midi is not None:
        from .orchestra import DEFAULT, load_orchestra

        band = load_orchestra(orchestra) if orchestra else DEFAULT
    kind_list = [k.strip() for k in kinds.split(",") if k.strip()] if kinds is not None else None

    total = sum(p.stat().st_size for p in captures if p.is_file())
    result = streamed = None
    from .rhythm import CallLog
    from .summary import score_files  # numpy and the reader: the last big imports

    calls = CallLog()  # each attempt's first SYN, for the summary's most regular callers
    if anonymize:  # one key for the score and the summary's callers
        from .anonymize import new_key

        key = new_key(key)

    # What the imports made lives until exit: the collector need not walk it again, nor
    # the final pass at exit (a tenth of a short run).
    gc.freeze()
    with _reading(reader, vxlan_port, geneve_port, gtp_port, vlan_key), _progress(total) as advance:
        if output is None and midi is None:  # the summary alone: no score to build
            summary = score_files(captures, strict=strict, timeout_s=timeout, max_attempts=max_attempts,
                                  on_progress=advance, on_closes=calls.add)
        elif midi is None and not anonymize:  # the score file alone: streamed to it, in bounded memory
            from .score import score_to_file

            streamed = score_to_file(captures, output, force=force, strict=strict, timeout_s=timeout,
                                     max_attempts=max_attempts, orchestra=band, hosts=host or (), ports=port or (),
                                     start=start, end=end, kinds=kind_list, on_progress=advance,
                                     on_closes=calls.add, digests=digests)
            summary = streamed.summary
        else:  # MIDI and pseudonyms need the whole score: it is built in memory
            from .score import compose

            result, summary = compose(captures, strict=strict, timeout_s=timeout, max_attempts=max_attempts,
                                      orchestra=band, on_progress=advance, on_closes=calls.add, digests=digests)
    for f in summary.files:
        if f.truncated_at is not None or f.cut_short:
            where = "" if f.truncated_at is None else f" at byte {f.truncated_at}"
            print(f"hs: warning: {f.path}: cut short{where}; scored the "
                  f"{f.packets} packets before it (--strict makes this an error)", file=sys.stderr)
    written = {}
    if streamed is not None:
        filtered = host or port or start is not None or end is not None or kind_list is not None
        if filtered and not streamed.notes and streamed.scored:
            print("hs: warning: no note passes the filters", file=sys.stderr)
        written["score"] = str(output)
        counts = (streamed.notes, streamed.attempts)
    if result is not None:
        result = _shaped(result, host, port, start, end, kind_list, anonymize, key)
        counts = (len(result), result.attempts())
    if output is not None and streamed is None:
        from .scorefile import save_score

        save_score(result, output, force)
        written["score"] = str(output)
    if midi is not None:
        from .midi import export_midi

        export_midi(result, midi, stretch=stretch, force=force)
        written["midi"] = str(midi)
    rhythm = _summary_rhythm(calls, key if anonymize else None)
    if json_out:
        print(json.dumps({**summary.as_dict(), "written": written,
                          "score_notes": counts[0] if written else None, "rhythm": rhythm.as_dict()}))
    else:
        print(_report(summary))
        print("\n".join(rhythm.lines()))
        for what, path in written.items():
            print(f"{what:<11} {path} ({counts[0]:,} notes, {counts[1]:,} attempts)")


@app.command()
def capture(
    interface: Annotated[Optional[str], typer.Option("-i", "--interface", metavar="IFACE", help="The interface to capture on, by name or number (default: the first that is not a loopback; see --list).", show_default=False)] = None,
    output: Annotated[Optional[Path], typer.Option("-o", "--output", metavar="FILE", help="The pcapng file to write (default: captures/IFACE-TIME.pcapng, the time in UTC); with --ring, the ring's base name.", show_default=False)] = None,
    duration: Annotated[Optional[float], typer.Option("--duration", metavar="S", help="Stop after S seconds.", show_default=False)] = None,
    packets: Annotated[Optional[int], typer.Option("--packets", metavar="N", help="Stop after N packets.", show_default=False)] = None,
    bpf: Annotated[Optional[str], typer.Option("-f", "--filter", metavar="BPF", help="The capture filter (libpcap syntax) in place of the default: TCP and the tunnels hs looks inside (their --vxlan-port etc. too; none on nflog:N); \"\" keeps everything.", show_default=False)] = None,
    snaplen: Annotated[Optional[int], typer.Option("--snaplen", metavar="N", help="Keep the first N bytes of each packet (default: 160, the headers, tunnelled ones too).", show_default=False)] = None,
    full: Annotated[bool, typer.Option("--full", help="Keep whole packets, payloads too.")] = False,
    ring: Annotated[Optional[str], typer.Option("--ring", metavar="SIZE:FILES", help="A ring buffer: a new file every SIZE, the oldest deleted past FILES (100MB:10); hs score takes the base name or the files.", show_default=False)] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing capture (or ring of that name).")] = False,
    show_list: Annotated[bool, typer.Option("--list", help="List the interfaces with their descriptions and exit.")] = False,
    vxlan_port: VxlanPort = None,
    geneve_port: GenevePort = None,
    gtp_port: GtpPort = None,
):
    """Record traffic into captures/ as pcapng, ready for hs score: TCP only, headers only, unless asked.

    Runs Wireshark's dumpcap. Shows packets and handshakes as they come; Ctrl-C or SIGTERM ends it cleanly (the file closed whole) and prints a summary."""
    from contextlib import ExitStack

    from . import capture as engine

    if show_list:
        print(engine.interfaces_table(engine.list_interfaces()))
        return
    if duration is not None and packets is not None:
        raise HandshakeScoreError("give --duration or --packets, not both")
    if full and snaplen is not None:
        raise HandshakeScoreError("give --snaplen or --full, not both")
    if bpf is not None and (vxlan_port or geneve_port or gtp_port):
        raise HandshakeScoreError("--vxlan-port, --geneve-port and --gtp-port widen the default filter: give them or --filter")
    from .sources.readers import with_ports

    tunnels = with_ports(tuple(vxlan_port or ()), tuple(geneve_port or ()), tuple(gtp_port or ()))
    options = engine.CaptureOptions(interface, output, duration, packets, bpf,
                                    0 if full else engine.DEFAULT_SNAPLEN if snaplen is None else snaplen,
                                    ring, force, tunnels)
    shown = {"live": None, "at": 0.0}

    def started(result):
        print(engine.describe_start(result), file=sys.stderr, flush=True)
        if sys.stderr.isatty():
            from rich.live import Live

            shown["live"] = stack.enter_context(Live("", console=_stderr_console(), transient=True,
                                                     refresh_per_second=4))

    def progress(status):
        if shown["live"] is not None:
            from rich.text import Text

            shown["live"].update(Text(engine.status_line(status)))
        elif status.elapsed_s - shown["at"] >= 30:  # a log, not a terminal: a line now and then
            shown["at"] = status.elapsed_s
            print(engine.status_line(status), file=sys.stderr, flush=True)

    failed = None
    try:
        with ExitStack() as stack:
            result = engine.record(options, on_start=started, on_progress=progress)
    except engine.CaptureFailed as e:
        failed, result = e, e.result
    for line in engine.warnings_for(result):
        print(f"hs: warning: {line}", file=sys.stderr)
    print(engine.report(result))
    if failed is not None:
        raise failed


def _reading(reader: str, vxlan_port, geneve_port, gtp_port, vlan_key: bool):
    """The ``--reader`` and tunnel options, for every capture scored inside the ``with``."""
    from .sources.readers import with_ports
    from .summary import reading

    return reading(reader, with_ports(tuple(vxlan_port or ()), tuple(geneve_port or ()), tuple(gtp_port or ()),
                                      vlan_key))


def _shaped(score, host, port, start, end, kinds, anonymize: bool, key):
    """The score as asked for: filtered (a pseudonym given to --host stands for the address
    it hides), then anonymised."""
    from .score import select

    secret = None
    if anonymize:
        from .anonymize import new_key, pseudonyms

        secret = new_key(key)
        if host:
            real = {fake: h for h, fake in pseudonyms(score.hosts, secret).items()}
            host = [real.get(h, h) for h in host]
    if host or port or start is not None or end is not None or kinds is not None:
        kept = select(score, hosts=host or (), ports=port or (), start=start, end=end, kinds=kinds)
        if not len(kept) and len(score):
            print("hs: warning: no note passes the filters", file=sys.stderr)
        score = kept
    if anonymize:
        from .anonymize import anonymize as pseudonymise

        score = pseudonymise(score, secret)
    return score


def _summary_rhythm(calls, key):
    """``hs score``'s three most regular callers, from the calls of every attempt scored."""
    from .rhythm import summarize

    return summarize(calls, key)


def _default_name(captures: list[Path]) -> str:
    name = captures[0].name
    for suffix in (".pcapng", ".pcap", ".cap", ".gz"):
        name = name.removesuffix(suffix)
    return name + (f"-and-{len(captures) - 1}-more" if len(captures) > 1 else "")


@app.command()
def export(
    score_file: Annotated[Path, typer.Argument(metavar="SCORE", help="A score file (hs score writes them).", show_default=False)],
    out: Annotated[Path, typer.Argument(metavar="OUT.mid", help="The MIDI file to write.", show_default=False)],
    stretch: Annotated[float, typer.Option(help="Play N times slower (any N > 0).")] = 1.0,
    max_gap: Annotated[Optional[float], typer.Option("--max-gap", metavar="S", help="After stretching, shorten every silence longer than S seconds to S.", show_default=False)] = None,
    orchestra: Annotated[Optional[Path], typer.Option("--orchestra", help="An orchestra TOML file (default: the score's own).", show_default=False)] = None,
    only: Only = None,
    without: Except = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing MIDI file.")] = False,
):
    """Export a score as a type 1 MIDI file for musicians: a track per note kind, on the percussion channel,
    and one per caller that keeps a schedule."""
    from .files import check_writable
    from .midi import export_midi
    from .orchestra import load_orchestra
    from .rhythm import check_selection
    from .scorefile import load_score
    from .timing import checked_max_gap, checked_stretch

    checked_stretch(stretch)
    checked_max_gap(max_gap)
    check_selection(only, without)  # a bad --only/--except fails before any work
    check_writable(out, force)
    loaded = _selected(load_score(score_file), only, without)
    export_midi(loaded, out, stretch=stretch, max_gap=max_gap, orchestra=load_orchestra(orchestra) if orchestra else None,
                force=force)
    print(f"wrote {out} ({len(loaded):,} notes, stretch {stretch:g})")


@app.command()
def render(
    score_file: Annotated[Path, typer.Argument(metavar="SCORE", help="A score file (hs score writes them).", show_default=False)],
    out: Annotated[Path, typer.Option("-o", "--output", metavar="OUT.wav", help="The WAV file to write.", show_default=False)],
    stretch: Annotated[float, typer.Option(help="Play N times slower (any N > 0).")] = 1.0,
    max_gap: Annotated[Optional[float], typer.Option("--max-gap", metavar="S", help="After stretching, shorten every silence longer than S seconds to S.", show_default=False)] = None,
    orchestra: Annotated[Optional[Path], typer.Option("--orchestra", help="An orchestra TOML file (default: the score's own).", show_default=False)] = None,
    mono: Annotated[bool, typer.Option("--mono", help="One channel (default: stereo, each client host at a place of its own).")] = False,
    only: Only = None,
    without: Except = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing WAV file.")] = False,
):
    """Hear a score without hardware: synthesised percussion (woodblock, tin drum, click, noise) as a WAV file."""
    from .files import check_writable
    from .orchestra import load_orchestra
    from .render import render_wav
    from .rhythm import check_selection
    from .scorefile import load_score
    from .timing import checked_max_gap, checked_stretch

    checked_stretch(stretch)
    checked_max_gap(max_gap)
    check_selection(only, without)  # a bad --only/--except fails before any work
    check_writable(out, force)
    band = load_orchestra(orchestra) if orchestra else None
    loaded = _selected(load_score(score_file), only, without)
    with _progress_bar("rendering", enabled=len(loaded) > 0) as advance:
        frames = render_wav(loaded, out, stretch=stretch, max_gap=max_gap, orchestra=band, stereo=not mono,
                            force=force, on_progress=advance)
    print(f"wrote {out} ({len(loaded):,} notes, {frames / 44100:.1f} s of audio, stretch {stretch:g})")


@app.command()
def plot(
    score_file: Annotated[Path, typer.Argument(metavar="SCORE", help="A score file (hs score writes them).", show_default=False)],
    out: Annotated[Path, typer.Option("-o", "--output", metavar="OUT.png", help="The PNG file to write.", show_default=False)],
    view: Annotated[str, typer.Option(help="sequence (arrows between client and server), density (notes and delays over time), rhythm (a row per caller that keeps a schedule, a tick per call), or auto: sequence up to 40 handshakes that fit in 160 rows (a note each), density otherwise.")] = "auto",
    title: Annotated[Optional[str], typer.Option(help="The picture's title (default: the captures' names).", show_default=False)] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing PNG file.")] = False,
):
    """See a score: a sequence diagram of its handshakes for a few, their density and delays for many."""
    from .files import check_writable
    from .plot import plot_png
    from .scorefile import load_score

    check_writable(out, force)
    loaded = load_score(score_file)
    chosen = plot_png(loaded, out, view=view, force=force, title=title)
    print(f"wrote {out} ({chosen} view of {loaded.attempts():,} handshakes)")


# hs play's options and reports live beside the play package; each performer's own options
# come from its registry (handshake_score/play/registry.py) when hs play runs
app.command(name="play", cls=PlayCommand)(play_command)


@app.command()
def rhythm(
    inputs: Annotated[list[Path], typer.Argument(metavar="SCORE|CAPTURE...", help="A score file, or captures (scored on the way, nothing written).", show_default=False)],
    min_calls: Annotated[int, typer.Option("--min-calls", metavar="N", help="A caller needs at least N calls (at least 3).")] = 4,
    min_score: Annotated[float, typer.Option("--min-score", metavar="S", help="Show only callers scoring at least S (0-1).")] = 0.0,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object: the callers and the attempts looked at.")] = False,
    anonymize: Annotated[bool, typer.Option("--anonymize", help="Name hosts by keyed pseudonyms, as hs score --anonymize does.")] = False,
    key: Annotated[Optional[str], typer.Option("--key", envvar="HS_ANONYMIZE_KEY", help="The key of --anonymize (same key, same pseudonyms as hs score's); default: random, forgotten.", show_default=False)] = None,
    reader: Reader = "auto",
    vxlan_port: VxlanPort = None,
    geneve_port: GenevePort = None,
    gtp_port: GtpPort = None,
    vlan_key: VlanKey = False,
):
    """Find the hosts that call home on a schedule: a table of the callers whose connection attempts repeat
    at a steady period, most regular first (client, server:port, period, spread, calls, score, p).

    A caller is a client calling a server on one port, or on any (server:*)."""
    from .rhythm import find_rhythm, read_rhythm_input, report

    if key is not None and not anonymize:
        raise HandshakeScoreError("--key is the key of --anonymize: give --anonymize too")
    if not 0 <= min_score <= 1:
        raise HandshakeScoreError(f"--min-score: {min_score:g} is not a score (0-1)")
    with _reading(reader, vxlan_port, geneve_port, gtp_port, vlan_key):  # for captures, scored on the way
        score = read_rhythm_input(inputs)
    found = find_rhythm(score, min_calls=min_calls, min_score=min_score)
    print(report(found, min_calls, json_out=json_out, key=key if anonymize else None, anonymize=anonymize))


@app.command()
def demo(
    folder: Annotated[Optional[Path], typer.Option("-o", "--output", metavar="FOLDER", help="Write into this folder (default: demo/, or demo-2/... if it exists).", show_default=False)] = None,
    no_play: Annotated[bool, typer.Option("--no-play", help="Write the files; do not play.")] = False,
):
    """Hear and see it now: score a tour of real captures, write its score, MIDI, WAV and PNG, and play it on the console.

    Needs no root, no tshark, no Raspberry Pi and no sound card."""
    from . import demo as tour

    if folder is not None and folder.exists() and any(folder.iterdir()):
        raise HandshakeScoreError(f"{folder}: exists and is not empty; hs demo writes into a new or empty folder")
    print(f"hs demo: scoring {len(tour.tour_captures())} real captures (handshake_score/tour/README.md says whose)",
          file=sys.stderr)
    made = tour.make(folder)
    print(_report(made.summary))
    for kind, path in made.files.items():
        print(f"wrote       {path}")
    if not no_play:
        print(f"\nplaying it on the console, {tour.STRETCH:g} times slower, silences over {tour.MAX_GAP_S:g} s "
              f"shortened ({min(made.seconds, tour.LONGEST_S):.0f} s; Ctrl-C stops):\n", flush=True)
        try:
            tour.perform_on_console(made)
        except KeyboardInterrupt:
            print("", file=sys.stderr)
    print("\n" + tour.next_steps(made))


@app.command(name="orchestra")
def orchestra_cmd(
    show: Annotated[bool, typer.Option("--show", help="Print the orchestra as TOML (the default action).")] = True,
    orchestra: Annotated[Optional[Path], typer.Option("--orchestra", help="Show this file over the built-in orchestra.", show_default=False)] = None,
):
    """Print the orchestra (what each note kind is played on) as TOML: a starting point for your own."""
    from .orchestra import DEFAULT, load_orchestra

    print((load_orchestra(orchestra) if orchestra else DEFAULT).to_toml(), end="")


@app.command()
def doctor(
    to: Annotated[Optional[list[str]], typer.Option("--to", metavar="PERFORMERS", help="The performers you mean to use, comma-separated: console, solenoids, midi, speakers, osc, or another package's (default: console).", show_default=False)] = None,
    orchestra: Annotated[Optional[Path], typer.Option("--orchestra", help="Check this orchestra file, and its pins.", show_default=False)] = None,
    capture: Annotated[bool, typer.Option("--capture", help="Also what hs capture needs: dumpcap, allowed to capture.")] = False,
    live: Annotated[bool, typer.Option("--live", help="Also what hs play --live needs: tcpdump, allowed to capture.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="The solenoids only rehearse (hs play --dry-run): they need no GPIO.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object: each check, the ones needed, the verdict.")] = False,
):
    """Check this installation: each thing hs uses, ok or missing, and how to fix what is missing.

    Exit 0 when everything the --to performers (and --capture, --live) need is here, 2 otherwise."""
    from .doctor import diagnose

    found = diagnose(to or (), orchestra, capture=capture, live=live, dry_run=dry_run)
    print(json.dumps(found.as_dict()) if json_out else found.text())
    if not found.ready:
        raise typer.Exit(found.exit_code)


def _progress(total: int):
    """A progress bar on stderr for large captures read from a terminal; else nothing.
    Yields ``advance(bytes_done)`` or None."""
    from contextlib import contextmanager

    @contextmanager
    def bar():
        with _progress_bar("scoring", total >= PROGRESS_FROM, in_bytes=True) as update:
            yield None if update is None else (lambda done: update(done, total))

    return bar()


def _progress_bar(description: str, enabled: bool = True, in_bytes: bool = False):
    """A transient progress bar on stderr when it is a terminal; yields ``update(done, total)``,
    or None when there is no bar to draw."""
    from contextlib import contextmanager

    @contextmanager
    def bar():
        if not enabled or not sys.stderr.isatty():
            yield None
            return
        from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

        with Progress("[progress.description]{task.description}", BarColumn(), *([DownloadColumn()] if in_bytes else []),
                      TimeRemainingColumn(), console=_stderr_console(), transient=True) as p:
            task = p.add_task(description, total=None)
            yield lambda done, total: p.update(task, completed=done, total=total)

    return bar()


def _selected(score, only, without):
    """``--only periodic`` / ``--except periodic``: the notes asked for, with a warning when none is left."""
    from .rhythm import selected_saying

    return selected_saying(score, only, without, say=lambda line: print(f"hs: warning: {line}", file=sys.stderr))


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
        *(_file_line(f) for f in d["files"]),
        "handshakes  " + "  ".join(f"{k} {v:,}" for k, v in d["handshakes"].items()),
        "notes       " + "  ".join(f"{k} {v:,}" for k, v in d["notes"].items()),
        f"delays      SYN->SYN-ACK median {ms(delays['syn_to_syn_ack']['median'])}   "
        f"SYN-ACK->ACK median {ms(delays['syn_ack_to_ack']['median'])}",
    ]
    if d["evicted"]:
        lines.append(f"evicted     {d['evicted']:,} attempts past --max-attempts")
    lines.append(f"time        {summary.seconds:.3f} s ({rate:,.0f} packets/s)")
    return "\n".join(lines)


def _file_line(f: dict) -> str:
    """``PATH: N packets (FORMAT)``, and what a reader says of it beyond that."""
    said = [f["format"]]
    if f.get("reader") == "tshark":
        said.append("read through tshark")
    if f.get("protected"):
        said.append(f"{f['protected']:,} protected 802.11 frame{'s' if f['protected'] != 1 else ''} skipped")
    return f"{f['path']}: {f['packets']:,} packets ({', '.join(said)})"


def main() -> None:
    """Entry point. Typer reports usage errors itself (exit 2); our errors become
    one line and exit code 2, and a bug of ours one line and exit code 1."""
    # SIGTERM unwinds like Ctrl-C, so cleanup runs (a reading worker is stopped, not orphaned)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda number, _: sys.exit(128 + number))
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
