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

from . import __version__
from .errors import HandshakeScoreError

app = typer.Typer(
    name="hs",
    help="Listen to the TCP three-way handshake: capture traffic, score its handshakes, perform them.\n\n"
    "Typical use: [cyan]hs capture[/cyan], then [cyan]hs score[/cyan], then [cyan]hs play SCORE --stretch 10[/cyan].",
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
):
    """Find every TCP handshake in CAPTURES and write them as a score: one timed note per handshake packet.

    Prints a summary: attempts by outcome, notes by kind, median delays."""
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
    from .summary import score_files  # numpy and the reader: the last big imports

    # What the imports made lives until exit: the collector need not walk it again, nor
    # the final pass at exit (a tenth of a short run).
    gc.freeze()
    with _progress(total) as advance:
        if output is None and midi is None:  # the summary alone: no score to build
            summary = score_files(captures, strict=strict, timeout_s=timeout, max_attempts=max_attempts,
                                  on_progress=advance)
        elif midi is None and not anonymize:  # the score file alone: streamed to it, in bounded memory
            from .score import score_to_file

            streamed = score_to_file(captures, output, force=force, strict=strict, timeout_s=timeout,
                                     max_attempts=max_attempts, orchestra=band, hosts=host or (), ports=port or (),
                                     start=start, end=end, kinds=kind_list, on_progress=advance)
            summary = streamed.summary
        else:  # MIDI and pseudonyms need the whole score: it is built in memory
            from .score import compose

            result, summary = compose(captures, strict=strict, timeout_s=timeout, max_attempts=max_attempts,
                                      orchestra=band, on_progress=advance)
    for f in summary.files:
        if f.truncated_at is not None:
            print(f"hs: warning: {f.path}: cut short at byte {f.truncated_at}; scored the "
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
    if json_out:
        print(json.dumps({**summary.as_dict(), "written": written,
                          "score_notes": counts[0] if written else None}))
    else:
        print(_report(summary))
        for what, path in written.items():
            print(f"{what:<11} {path} ({counts[0]:,} notes, {counts[1]:,} attempts)")


@app.command()
def capture(
    interface: Annotated[Optional[str], typer.Option("-i", "--interface", metavar="IFACE", help="The interface to capture on, by name or number (default: the first that is not a loopback; see --list).", show_default=False)] = None,
    output: Annotated[Optional[Path], typer.Option("-o", "--output", metavar="FILE", help="The pcapng file to write (default: captures/IFACE-TIME.pcapng, the time in UTC); with --ring, the ring's base name.", show_default=False)] = None,
    duration: Annotated[Optional[float], typer.Option("--duration", metavar="S", help="Stop after S seconds.", show_default=False)] = None,
    packets: Annotated[Optional[int], typer.Option("--packets", metavar="N", help="Stop after N packets.", show_default=False)] = None,
    bpf: Annotated[str, typer.Option("-f", "--filter", metavar="BPF", help="The capture filter (libpcap syntax) in place of the default, tcp; \"\" keeps everything.", show_default=False)] = "tcp",
    snaplen: Annotated[Optional[int], typer.Option("--snaplen", metavar="N", help="Keep the first N bytes of each packet (default: 128, the headers).", show_default=False)] = None,
    full: Annotated[bool, typer.Option("--full", help="Keep whole packets, payloads too.")] = False,
    ring: Annotated[Optional[str], typer.Option("--ring", metavar="SIZE:FILES", help="A ring buffer: a new file every SIZE, the oldest deleted past FILES (100MB:10); hs score takes the base name or the files.", show_default=False)] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing capture (or ring of that name).")] = False,
    show_list: Annotated[bool, typer.Option("--list", help="List the interfaces with their descriptions and exit.")] = False,
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
    options = engine.CaptureOptions(interface, output, duration, packets, bpf,
                                    0 if full else engine.DEFAULT_SNAPLEN if snaplen is None else snaplen,
                                    ring, force)
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
    force: Annotated[bool, typer.Option("--force", help="Replace an existing MIDI file.")] = False,
):
    """Export a score as a type 1 MIDI file for musicians: a track per note kind, on the percussion channel."""
    from .files import check_writable
    from .midi import export_midi
    from .orchestra import load_orchestra
    from .scorefile import load_score
    from .timing import checked_max_gap, checked_stretch

    checked_stretch(stretch)
    checked_max_gap(max_gap)
    check_writable(out, force)
    loaded = load_score(score_file)
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
    force: Annotated[bool, typer.Option("--force", help="Replace an existing WAV file.")] = False,
):
    """Hear a score without hardware: synthesised percussion (woodblock, tin drum, click, noise) as a WAV file."""
    from .files import check_writable
    from .orchestra import load_orchestra
    from .render import render_wav
    from .scorefile import load_score
    from .timing import checked_max_gap, checked_stretch

    checked_stretch(stretch)
    checked_max_gap(max_gap)
    check_writable(out, force)
    band = load_orchestra(orchestra) if orchestra else None
    loaded = load_score(score_file)
    with _progress_bar("rendering", enabled=len(loaded) > 0) as advance:
        frames = render_wav(loaded, out, stretch=stretch, max_gap=max_gap, orchestra=band, stereo=not mono,
                            force=force, on_progress=advance)
    print(f"wrote {out} ({len(loaded):,} notes, {frames / 44100:.1f} s of audio, stretch {stretch:g})")


@app.command()
def plot(
    score_file: Annotated[Path, typer.Argument(metavar="SCORE", help="A score file (hs score writes them).", show_default=False)],
    out: Annotated[Path, typer.Option("-o", "--output", metavar="OUT.png", help="The PNG file to write.", show_default=False)],
    view: Annotated[str, typer.Option(help="sequence (arrows between client and server), density (notes and delays over time), or auto: sequence up to 40 handshakes that fit in 160 rows (a note each), density otherwise.")] = "auto",
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


PERFORMERS = ("console", "solenoids", "midi", "speakers")


@app.command()
def play(
    score_file: Annotated[Optional[Path], typer.Argument(metavar="SCORE", help="A score file (hs score writes them) or a MIDI file (hs export writes them; notes are mapped back to kinds through the orchestra).", show_default=False)] = None,
    to: Annotated[Optional[list[str]], typer.Option("--to", metavar="PERFORMERS|TIME", help="Who plays, comma-separated: console, solenoids, midi, speakers (default: console). A time instead (same forms as --from) ends the performance there.", show_default=False)] = None,
    stretch: Annotated[str, typer.Option(metavar="N|auto", help="Play N times slower (any N > 0); auto: the least factor (at least 1, at most 1000) at which no solenoid must strike sooner than its re-strike interval.")] = "1",
    max_gap: Annotated[Optional[float], typer.Option("--max-gap", metavar="S", help="After stretching, shorten every silence longer than S seconds to S.", show_default=False)] = None,
    start: Annotated[Optional[str], typer.Option("--from", help="Start here: seconds after the score's start, a time of day (14:03:05, local; 14:03:05Z, UTC) or a date and time.", show_default=False)] = None,
    until: Annotated[Optional[str], typer.Option("--until", help="End here (same forms as --from); --to TIME says the same.", show_default=False)] = None,
    loop: Annotated[bool, typer.Option("--loop", help="Play again and again until stopped (Ctrl-C, SIGTERM).")] = False,
    orchestra: Annotated[Optional[Path], typer.Option("--orchestra", help="An orchestra TOML file (default: the score's own).", show_default=False)] = None,
    port: Annotated[Optional[str], typer.Option("--port", metavar="NAME", help="For midi: the output port, by name or the start of it (see --list-ports).", show_default=False)] = None,
    list_ports: Annotated[bool, typer.Option("--list-ports", help="List the MIDI output ports and exit.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="For solenoids: rehearse on gpiozero's MockFactory (no GPIO needed).")] = False,
    pin_log: Annotated[Optional[Path], typer.Option("--pin-log", metavar="FILE", help="With --dry-run: write every pin change (pin,time_ns,state) to this CSV.", show_default=False)] = None,
    too_soon: Annotated[str, typer.Option("--too-soon", metavar="drop|defer", help="A strike that comes sooner than its coil may strike again: drop it, or defer it to the next allowed moment (within --defer-limit).")] = "drop",
    defer_limit: Annotated[float, typer.Option("--defer-limit", metavar="MS", help="With --too-soon defer: the longest a strike may be moved; later than that it is dropped.")] = 500.0,
    timing_log: Annotated[Optional[Path], typer.Option("--timing-log", metavar="FILE", help="Write a CSV of every strike: kind, scheduled_ns, actual_ns (time.perf_counter_ns), status.", show_default=False)] = None,
    live: Annotated[bool, typer.Option("--live", help="Strike the handshakes as they happen on the network (tcpdump, libpcap immediate mode; needs capture rights).")] = False,
    interface: Annotated[Optional[str], typer.Option("-i", "--interface", metavar="IFACE", help="With --live: the interface (default: tcpdump's, the first up that is not a loopback).", show_default=False)] = None,
    bpf: Annotated[str, typer.Option("-f", "--filter", metavar="BPF", help="With --live: the capture filter (libpcap syntax).")] = "tcp",
    record: Annotated[Optional[Path], typer.Option("--record", metavar="FILE.pcapng", help="With --live: keep the capture (headers only), and write its score (scores/NAME.score) when it ends.", show_default=False)] = None,
    duration: Annotated[Optional[float], typer.Option("--duration", metavar="S", help="With --live: stop after S seconds.", show_default=False)] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing timing or pin log (or recording and its score).")] = False,
):
    """Perform a score: on solenoids (gpiozero), a MIDI port, the speakers or the console, in real time or stretched.

    Ctrl-C, SIGTERM and SIGHUP stop it with every coil off; it prints what was played and dropped."""
    if list_ports:
        from .play.midiport import output_names

        names = output_names()
        print("\n".join(names) if names else "no MIDI output ports here (is there an ALSA sequencer, /dev/snd/seq?)")
        return
    if live:
        if score_file is not None:
            raise HandshakeScoreError("--live plays the network, not a score file: give one or the other")
        for given, option in ((stretch != "1", "--stretch"), (max_gap is not None, "--max-gap"), (loop, "--loop"),
                              (start is not None or until is not None, "--from/--until"), (timing_log is not None, "--timing-log")):
            if given:
                raise HandshakeScoreError(f"{option} is for a score; --live plays as it happens")
        return _play_live(to or [], orchestra, interface, bpf, record, duration, port=port, dry_run=dry_run,
                          pin_log=pin_log, force=force)
    for given, option in ((interface is not None, "--interface"), (record is not None, "--record"),
                          (duration is not None, "--duration"), (bpf != "tcp", "--filter")):
        if given:
            raise HandshakeScoreError(f"{option} is for --live")
    if score_file is None:
        raise HandshakeScoreError("give a score file to play (hs score writes them), --live, or --list-ports")
    from .files import check_writable
    from .orchestra import load_orchestra
    from .timing import checked_max_gap, checked_stretch

    who, end = _performers_and_end(to or [], until)
    auto = stretch.strip().lower() == "auto"
    factor = None if auto else checked_stretch(_number(stretch, "--stretch"))
    checked_max_gap(max_gap)
    _check_performer_options(who, port, dry_run, pin_log)
    for out in (timing_log, pin_log):
        if out is not None:
            check_writable(out, force)
    band = load_orchestra(orchestra) if orchestra else None
    loaded = _load_playable(score_file, band)
    band = band or loaded.orchestra
    if start is not None or end is not None:
        from .score import select

        loaded = select(loaded, start=start, end=end)
    if auto:
        from .play.solenoids import auto_stretch

        factor, coil = auto_stretch(loaded, band)
        why = ("no coil needs it" if coil is None else
               f"pin {coil.pin} ({', '.join(coil.kinds)}) re-strikes every {coil.restrike_ns / 1e6:g} ms")
        print(f"--stretch auto: {factor:g} ({why}{'; the cap' if factor >= 1000 else ''})", file=sys.stderr)
    performers = _open_performers(who, band, port=port, dry_run=dry_run, too_soon=too_soon, defer_limit=defer_limit)
    from .play import perform

    if max_gap is None:
        _tell_long_silence(loaded, factor)
    stopped = None
    try:
        with _play_status(loaded, factor, max_gap) as (started, progress):
            result = perform(loaded, performers, stretch=factor, max_gap=max_gap, loop=loop,
                             timing_log=timing_log, force=force, on_start=started, on_progress=progress)
    except (KeyboardInterrupt, SystemExit) as e:  # Ctrl-C; SIGTERM or SIGHUP, made SystemExit by main()
        stopped, result = 130 if isinstance(e, KeyboardInterrupt) else e.code, getattr(e, "performance", None)
    finally:
        if pin_log is not None:
            _write_pin_log(pin_log, performers, force)
    if result is not None:
        print(_play_report(result, factor, performers), file=sys.stderr)
    if stopped is not None:
        passes = "" if result is None else f" after {result.passes} pass{'es' if result.passes != 1 else ''}"
        coils = ", every coil off" if "solenoids" in who else ""
        print(f"hs: stopped{passes}{coils}", file=sys.stderr)
        sys.exit(stopped)


def _play_live(to, orchestra, interface, bpf, record, duration, *, port, dry_run, pin_log, force) -> None:
    """hs play --live: tcpdump -> tracker -> performers, as it happens."""
    import time

    from .capture.live import LiveCapture
    from .files import check_writable
    from .orchestra import DEFAULT, load_orchestra
    from .play.live import perform_live

    who, end = _performers_and_end(to, None)
    if end is not None:
        raise HandshakeScoreError("--to TIME is for a score; --live ends with Ctrl-C or --duration")
    if duration is not None and not duration > 0:
        raise HandshakeScoreError(f"--duration must be a number of seconds above 0, not {duration:g}")
    _check_performer_options(who, port, dry_run, pin_log)
    score_out = Path("scores") / (_default_name([record]) + ".score") if record is not None else None
    for out in (pin_log, record, score_out):
        if out is not None:
            check_writable(out, force)
    band = load_orchestra(orchestra) if orchestra else DEFAULT
    performers = _open_performers(who, band, port=port, dry_run=dry_run, too_soon="drop", defer_limit=0)
    capture = LiveCapture(interface, bpf, record=record, force=force)
    stopped = result = None
    try:
        capture.start()
        print(f"hs: live on {interface or 'the default interface'} ({bpf or 'everything'}); Ctrl-C stops",
              file=sys.stderr, flush=True)
        until = None if duration is None else time.monotonic() + duration
        result = perform_live(capture.batches, performers, band,
                              running=lambda: capture.running and (until is None or time.monotonic() < until))
    except (KeyboardInterrupt, SystemExit) as e:
        stopped = 130 if isinstance(e, KeyboardInterrupt) else e.code
        result = getattr(e, "performance", None)
    finally:
        for p in performers:  # perform_live silenced them; an early failure did not reach it
            p.silence()
            p.close()
        capture.close()  # the recording complete, under its name
        if pin_log is not None:
            _write_pin_log(pin_log, performers, force)
    if result is not None:
        print(_live_report(result, performers), file=sys.stderr)
    if record is not None:
        from .score import compose
        from .scorefile import save_score

        made = compose([record], orchestra=band).score
        save_score(made, score_out, force)
        print(f"recorded    {record}\nscore       {score_out} ({len(made):,} notes, {made.attempts():,} attempts)",
              file=sys.stderr)
    if stopped is not None:
        print(f"hs: stopped{', every coil off' if 'solenoids' in who else ''}", file=sys.stderr)
        sys.exit(stopped)


def _live_report(result, performers) -> str:
    import numpy as np

    lines = [f"live: {result.notes:,} notes"]
    for name in result.played:
        dropped = f" (dropped {result.dropped[name]:,}: too soon for the coil)" if result.dropped[name] else ""
        lines.append(f"  {name:<10} {result.played[name]:,} strikes{dropped}")
    for p in performers:
        lines.extend(p.report())
    if len(result.onset_ns):
        p50, p99 = np.percentile(result.onset_ns, [50, 99]) / 1e6
        lines.append(f"  from packet to strike: p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    return "\n".join(lines)


def _check_performer_options(who, port, dry_run, pin_log) -> None:
    if pin_log is not None and not ("solenoids" in who and dry_run):
        raise HandshakeScoreError("--pin-log records the rehearsal pins: give --to solenoids --dry-run too")
    if "midi" in who and port is None:
        raise HandshakeScoreError("--to midi needs --port NAME (hs play --list-ports lists them)")
    if port is not None and "midi" not in who:
        raise HandshakeScoreError("--port is for --to midi: give that too")
    if dry_run and "solenoids" not in who:
        raise HandshakeScoreError("--dry-run rehearses the solenoids: give --to solenoids too")


def _performers_and_end(values: list[str], until: str | None) -> tuple[list[str], str | None]:
    """--to's values: performer lists, or one end time."""
    who, end = [], until
    for value in values:
        names = [v.strip() for v in value.split(",") if v.strip()]
        if names and all(n.isalpha() for n in names):
            for n in names:
                if n not in PERFORMERS:
                    raise HandshakeScoreError(f"--to: unknown performer {n!r} (the performers are {', '.join(PERFORMERS)})")
                if n in who:
                    raise HandshakeScoreError(f"--to: {n} is named twice")
                who.append(n)
        elif end is None:
            end = value
        else:
            raise HandshakeScoreError(f"--to {value!r}: the end is given already ({end!r})")
    return who or ["console"], end


def _number(text: str, option: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise HandshakeScoreError(f"{option}: {text!r} is not a number") from None


def _load_playable(path: Path, band):
    from .midi import is_midi_file, load_midi
    from .scorefile import load_score

    if is_midi_file(path):
        loaded = load_midi(path, band)
        skipped = loaded.options.get("unmapped_notes", 0)
        if skipped:
            print(f"hs: warning: {path}: {skipped:,} notes on keys no instrument of the orchestra plays "
                  "were left out", file=sys.stderr)
        return loaded
    return load_score(path)


def _open_performers(who: list[str], band, *, port, dry_run: bool, too_soon: str, defer_limit: float):
    """The performers named, in the order they are called at a moment they share: the most
    time-critical first, the solenoids last (their coil driver strikes at the deadline by itself;
    the call only hears that it did)."""
    performers = []
    try:
        for name in ("midi", "speakers", "console", "solenoids"):
            if name not in who:
                continue
            if name == "solenoids":
                from .play.solenoids import SolenoidPerformer

                performers.append(SolenoidPerformer(band, too_soon=too_soon, defer_limit_ms=defer_limit,
                                                    dry_run=dry_run))
            elif name == "midi":
                from .play.midiport import MidiPortPerformer, open_port

                performers.append(MidiPortPerformer(open_port(port), band, close_port=True))
            elif name == "speakers":
                from .play.speakers import SpeakersPerformer

                performers.append(SpeakersPerformer(band))
            else:
                from .play import ConsolePerformer

                performers.append(ConsolePerformer())
    except BaseException:
        for p in performers:
            p.close()
        raise
    for p in performers:
        for line in p.notices():
            print(f"hs: warning: {line}", file=sys.stderr)
    return performers


def _tell_long_silence(score, stretch: float) -> None:
    """Before playing, a line on stderr if the score falls silent for long (without --max-gap):
    else a performance waiting months for its next note looks like one that hangs."""
    import numpy as np

    from .timing import LONG_SILENCE_S, duration_text, output_times_ns, silences_ns

    if not len(score):
        return
    gaps, order = silences_ns(output_times_ns(score.notes["time_ns"], stretch))
    longest = int(np.argmax(gaps))
    if gaps[longest] <= LONG_SILENCE_S * 1e9:
        return
    where = "the first note" if longest == 0 else f"note {int(order[longest]) + 1:,}"
    others = int(np.count_nonzero(gaps > LONG_SILENCE_S * 1e9)) - 1
    more = f" ({others:,} more silence{'s' if others != 1 else ''} over {LONG_SILENCE_S:g} s)" if others else ""
    print(f"hs: nothing sounds for {duration_text(gaps[longest])} before {where}{more}; "
          "--max-gap S shortens every silence to S seconds", file=sys.stderr)


def _play_status(score, stretch: float, max_gap: Optional[float] = None):
    """A progress line on stderr when it is a terminal: position, time left, notes played
    and dropped, and how long until the next note when that is a while. Yields (on_start,
    on_progress) for :func:`~.play.perform`."""
    from contextlib import contextmanager

    @contextmanager
    def status():
        if not sys.stderr.isatty():
            yield None, None
            return
        import time

        import numpy as np

        from .timing import duration_text, output_times_ns

        times = np.sort(output_times_ns(score.notes["time_ns"], stretch, max_gap))
        reached = {"key": (0, 1), "at": time.monotonic_ns()}  # the position last seen, and when it was reached

        def started(_):
            reached.update(key=(0, 1), at=time.monotonic_ns())

        def progress(p):
            now = time.monotonic_ns()
            if (p.position_ns, max(p.passes, 1)) != reached["key"]:
                reached.update(key=(p.position_ns, max(p.passes, 1)), at=now)
            left = duration_text(p.length_ns - p.position_ns)
            k = int(np.searchsorted(times, p.position_ns, side="right"))
            wait = int(times[k]) - p.position_ns - (now - reached["at"]) if k < len(times) else 0
            ahead = f"  next note in {duration_text(wait)}" if wait >= 1_000_000_000 else ""
            sys.stderr.write(f"\r\x1b[K{p.position_ns / 1e9:8.1f} s of {p.length_ns / 1e9:.1f} s  ({left} left)"
                             f"{f'  pass {p.passes}' if p.passes > 1 else ''}  played {p.played:,}  dropped {p.dropped:,}"
                             f"{ahead}")
            sys.stderr.flush()

        try:
            yield started, progress
        finally:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()

    return status()


def _play_report(result, stretch: float, performers=()) -> str:
    lines = [f"played {result.notes:,} notes over {result.length_ns / 1e9:.3f} s (stretch {stretch:g})"
             + (f", {result.passes} passes" if result.passes > 1 else "")]
    for name in result.played:
        extra = [f"{what} {getattr(result, what)[name]:,}" for what in ("deferred", "dropped", "refused")
                 if getattr(result, what)[name]]
        lines.append(f"  {name:<10} {result.played[name]:,} strikes" + (f" ({', '.join(extra)})" if extra else ""))
    for p in performers:
        lines.extend(p.report())
    if len(result.onset_ns):
        import numpy as np

        p50, p99 = np.percentile(result.onset_ns, [50, 99]) / 1e3
        lines.append(f"  onset error p50 {p50:.1f} us, p99 {p99:.1f} us")
    return "\n".join(lines)


def _write_pin_log(path: Path, performers, force: bool) -> None:
    from .files import atomic_write

    rows = [row for p in performers if hasattr(p, "pin_log") for row in p.pin_log()]
    with atomic_write(path, force) as f:
        f.write(("pin,time_ns,state\n" + "".join(f"{p},{t},{v}\n" for p, t, v in sorted(rows, key=lambda r: r[1]))).encode())


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
    print(f"hs demo: scoring {len(tour.tour_captures())} real captures (captures/tour/README.md says whose)",
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
