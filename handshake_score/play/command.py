"""``hs play`` on the command line: its options, the performers' own, and its reports.

The performers' options are not written here: each performer declares them
(:attr:`~.performer.Performer.options`) and :class:`PlayCommand` reads them from the
:mod:`.registry` when ``hs play`` runs or shows its help, grouped under each
performer's name. No other ``hs`` command imports a performer, and a performer added
to the registry (or by another package's entry point) is on the command line with
no change here.
"""

# No ``from __future__ import annotations``: typer reads these annotations (see cli.py).

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from typer.core import TyperCommand, TyperOption

from ..errors import HandshakeScoreError
from ..selection import Except, Only

GIVEN = "handshake_score.performer_options"  # ctx.meta: {performer name: {key: value}}

# The tunnels' extra UDP ports and the attempt key: hs play --live's, and every command
# that scores captures (cli.py takes them from here)
VxlanPort = Annotated[Optional[list[int]], typer.Option("--vxlan-port", metavar="PORT", help="Also read UDP port PORT as VXLAN (besides 4789 and Linux's 8472), for a mirror that uses another; repeatable.", show_default=False)]
GenevePort = Annotated[Optional[list[int]], typer.Option("--geneve-port", metavar="PORT", help="Also read UDP port PORT as Geneve (besides 6081); repeatable.", show_default=False)]
GtpPort = Annotated[Optional[list[int]], typer.Option("--gtp-port", metavar="PORT", help="Also read UDP port PORT as GTP-U (besides 2152); repeatable.", show_default=False)]
VlanKey = Annotated[bool, typer.Option("--vlan-key", help="Key attempts by VLAN ids and tunnel endpoints too, like Zeek's vlan_fivetuple; by default an attempt is its inner addresses and ports.")]


class PlayCommand(TyperCommand):
    """``hs play``, with every performer's options added from the registry the first time
    its parameters are asked for (to parse a command line or show its help)."""

    def get_params(self, ctx):
        if not getattr(self, "_performers_read", False):
            self._performers_read = True
            self.params = [*self.params, *performer_params({o for p in self.params for o in p.opts})]
        return super().get_params(ctx)


UNAVAILABLE: dict[str, str] = {}  # performers whose options could not be offered, and why


def performer_params(taken: set[str]) -> list[TyperOption]:
    """A click option for each option of each performer that loads here, in the help panel
    ``--to NAME``. A flag already taken (by hs play or a performer before) makes the later
    performer unavailable, in :data:`UNAVAILABLE`, rather than change the meaning of a flag."""
    from . import registry

    params = []
    for name, cls in registry.loadable().items():
        flags = [o.flag for o in cls.options]
        clash = next((f for f in flags if f in taken), None)
        if clash is not None or len(set(flags)) < len(flags):
            UNAVAILABLE[name] = f"its option {clash or 'list'} is taken already"
            continue
        taken.update(flags)
        for option in cls.options:
            params.append(_click_option(name, option))
    return params


def _click_option(performer: str, option) -> TyperOption:
    def keep(ctx, param, value):
        if value is not None and option.type is Path:
            value = [Path(v) for v in value] if option.multiple else Path(value)
        if option.multiple:
            value = list(value or ())
        ctx.meta.setdefault(GIVEN, {}).setdefault(performer, {})[option.key] = value
        return value

    flag = option.type is bool
    shown = option.default is not None and not flag
    return TyperOption(param_decls=[option.flag, f"{performer}__{option.key}"],
                       type=None if flag else (str if option.type is Path else option.type),
                       default=bool(option.default) if flag else option.default, is_flag=flag or None,
                       multiple=option.multiple, metavar=option.metavar, help=option.help, show_default=shown,
                       expose_value=False, callback=keep, rich_help_panel=f"--to {performer}")


def play(
    ctx: typer.Context,
    score_file: Annotated[Optional[Path], typer.Argument(metavar="SCORE", help="A score file (hs score writes them) or a MIDI file (hs export writes them; notes are mapped back to kinds through the orchestra).", show_default=False)] = None,
    to: Annotated[Optional[list[str]], typer.Option("--to", metavar="NAME[,NAME]|TIME", help="Who plays, comma-separated: console (the default), solenoids, midi, speakers, osc, browser, or any other hs play --performers lists. A time instead (same forms as --from) ends the performance there.", show_default=False)] = None,
    stretch: Annotated[str, typer.Option(metavar="N|auto", help="Play N times slower (any N > 0); auto: the least factor (at least 1, at most 1000) at which no solenoid must strike sooner than its re-strike interval.")] = "1",
    max_gap: Annotated[Optional[float], typer.Option("--max-gap", metavar="S", help="After stretching, shorten every silence longer than S seconds to S.", show_default=False)] = None,
    start: Annotated[Optional[str], typer.Option("--from", help="Start here: seconds after the score's start, a time of day (14:03:05, local; 14:03:05Z, UTC) or a date and time.", show_default=False)] = None,
    until: Annotated[Optional[str], typer.Option("--until", help="End here (same forms as --from); --to TIME says the same.", show_default=False)] = None,
    loop: Annotated[bool, typer.Option("--loop", help="Play again and again until stopped (Ctrl-C, SIGTERM).")] = False,
    only: Only = None,
    without: Except = None,
    orchestra: Annotated[Optional[Path], typer.Option("--orchestra", help="An orchestra TOML file (default: the score's own).", show_default=False)] = None,
    timing_log: Annotated[Optional[Path], typer.Option("--timing-log", metavar="FILE", help="Write a CSV of every strike: kind, scheduled_ns, actual_ns (time.perf_counter_ns), status.", show_default=False)] = None,
    live: Annotated[bool, typer.Option("--live", help="Strike the handshakes as they happen on the network (tcpdump, libpcap immediate mode; needs capture rights).")] = False,
    interface: Annotated[Optional[str], typer.Option("-i", "--interface", metavar="IFACE", help="With --live: the interface (default: tcpdump's, the first up that is not a loopback).", show_default=False)] = None,
    bpf: Annotated[Optional[str], typer.Option("-f", "--filter", metavar="BPF", help="With --live: the capture filter (libpcap syntax; default: TCP and the tunnels hs looks inside, their --vxlan-port etc. too; none on nflog:N).", show_default=False)] = None,
    record: Annotated[Optional[Path], typer.Option("--record", metavar="FILE.pcapng", help="With --live: keep the capture (headers only), and write its score (scores/NAME.score) when it ends.", show_default=False)] = None,
    duration: Annotated[Optional[float], typer.Option("--duration", metavar="S", help="With --live: stop after S seconds.", show_default=False)] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing timing log, a log a performer writes (--pin-log), or a recording and its score.")] = False,
    performers: Annotated[bool, typer.Option("--performers", help="List the performers there are, what each needs and whether it can play here, and exit.")] = False,
    vxlan_port: VxlanPort = None,
    geneve_port: GenevePort = None,
    gtp_port: GtpPort = None,
    vlan_key: VlanKey = False,
):
    """Perform a score: on solenoids (gpiozero), a MIDI port, the speakers, OSC, a browser or the console, in real time or stretched.

    Ctrl-C, SIGTERM and SIGHUP stop it with every coil off; it prints what was played and dropped."""
    given = ctx.meta.get(GIVEN, {})
    if performers:
        print(performers_table())
        return
    answer = _query(given)
    if answer is not None:
        print(answer)
        return
    if live:
        if score_file is not None:
            raise HandshakeScoreError("--live plays the network, not a score file: give one or the other")
        for said, option in ((stretch != "1", "--stretch"), (max_gap is not None, "--max-gap"), (loop, "--loop"),
                             (start is not None or until is not None, "--from/--until"), (timing_log is not None, "--timing-log"),
                             (only is not None or without is not None, "--only/--except")):
            if said:
                raise HandshakeScoreError(f"{option} is for a score; --live plays as it happens")
        from ..sources.readers import with_ports

        tunnels = with_ports(tuple(vxlan_port or ()), tuple(geneve_port or ()), tuple(gtp_port or ()), vlan_key)
        return play_live(to or [], given, orchestra, interface, bpf, record, duration, force=force,
                         decapsulation=tunnels)
    for said, option in ((interface is not None, "--interface"), (record is not None, "--record"),
                         (duration is not None, "--duration"), (bpf is not None, "--filter"),
                         (bool(vxlan_port), "--vxlan-port"), (bool(geneve_port), "--geneve-port"),
                         (bool(gtp_port), "--gtp-port"), (vlan_key, "--vlan-key")):
        if said:
            raise HandshakeScoreError(f"{option} is for --live")
    if score_file is None:
        raise HandshakeScoreError("give a score file to play (hs score writes them), --live, or --list-ports")
    from ..files import check_writable
    from ..orchestra import load_orchestra
    from ..timing import checked_max_gap, checked_stretch
    from .performance import perform

    who, end = performers_and_end(to or [], until)
    auto = stretch.strip().lower() == "auto"
    factor = None if auto else checked_stretch(_number(stretch, "--stretch"))
    checked_max_gap(max_gap)
    from ..rhythm import check_selection

    check_selection(only, without)  # a bad --only/--except fails before any work
    options = options_for(who, given)
    for out in (timing_log, *written_files(options)):
        if out is not None:
            check_writable(out, force)
    band = load_orchestra(orchestra) if orchestra else None
    loaded = load_playable(score_file, band)
    band = band or loaded.orchestra
    if only is not None or without is not None:  # the callers' schedules judged on the whole score
        from ..rhythm import selected_saying

        loaded = selected_saying(loaded, only, without, say=lambda line: print(f"hs: warning: {line}", file=sys.stderr))
    if start is not None or end is not None:
        from ..score import select

        loaded = select(loaded, start=start, end=end)
    if auto:
        from .solenoids import auto_stretch

        factor, coil = auto_stretch(loaded, band)
        why = ("no coil needs it" if coil is None else
               f"pin {coil.pin} ({', '.join(coil.kinds)}) re-strikes every {coil.restrike_ns / 1e6:g} ms")
        print(f"--stretch auto: {factor:g} ({why}{'; the cap' if factor >= 1000 else ''})", file=sys.stderr)
    players = open_performers(options, band, live=False)
    if max_gap is None:
        tell_long_silence(loaded, factor)
    stopped = None
    try:
        with play_status(loaded, factor, max_gap) as (started, progress):
            result = perform(loaded, players, stretch=factor, max_gap=max_gap, loop=loop,
                             timing_log=timing_log, force=force, on_start=started, on_progress=progress)
    except (KeyboardInterrupt, SystemExit) as e:  # Ctrl-C; SIGTERM or SIGHUP, made SystemExit by main()
        stopped, result = 130 if isinstance(e, KeyboardInterrupt) else e.code, getattr(e, "performance", None)
    if result is not None:
        print(play_report(result, factor, players), file=sys.stderr)
    if stopped is not None:
        passes = "" if result is None else f" after {result.passes} pass{'es' if result.passes != 1 else ''}"
        print(f"hs: stopped{passes}{at_rest(players)}", file=sys.stderr)
        sys.exit(stopped)


def play_live(to, given, orchestra, interface, bpf, record, duration, *, force: bool, decapsulation=None) -> None:
    """hs play --live: tcpdump -> tracker -> performers, as it happens, through the tunnels
    ``decapsulation`` names (default: :data:`~..sources.decoding.DEFAULT`)."""
    import time

    from ..capture.live import LiveCapture
    from ..cli import _default_name
    from ..files import check_writable
    from ..orchestra import DEFAULT, load_orchestra
    from ..sources.decoding import DEFAULT as TUNNELS
    from .live import perform_live

    who, end = performers_and_end(to, None)
    if end is not None:
        raise HandshakeScoreError("--to TIME is for a score; --live ends with Ctrl-C or --duration")
    if duration is not None and not duration > 0:
        raise HandshakeScoreError(f"--duration must be a number of seconds above 0, not {duration:g}")
    options = options_for(who, given, live=True)
    score_out = Path("scores") / (_default_name([record]) + ".score") if record is not None else None
    for out in (*written_files(options), record, score_out):
        if out is not None:
            check_writable(out, force)
    band = load_orchestra(orchestra) if orchestra else DEFAULT
    players = open_performers(options, band, live=True)
    decapsulation = TUNNELS if decapsulation is None else decapsulation
    capture = LiveCapture(interface, bpf, record=record, force=force, decapsulation=decapsulation)
    stopped = result = None
    try:
        capture.start()
        print(f"hs: live on {interface or 'the default interface'} ({capture.filter_said}); Ctrl-C stops",
              file=sys.stderr, flush=True)
        until = None if duration is None else time.monotonic() + duration
        result = perform_live(capture.batches, players, band, on_note=heartbeats(),
                              running=lambda: capture.running and (until is None or time.monotonic() < until))
    except (KeyboardInterrupt, SystemExit) as e:
        stopped = 130 if isinstance(e, KeyboardInterrupt) else e.code
        result = getattr(e, "performance", None)
    finally:
        for p in players:  # perform_live silenced them; an early failure did not reach it
            p.silence()
            p.close()
        capture.close()  # the recording complete, under its name
    if result is not None:
        print(live_report(result, players), file=sys.stderr)
    if record is not None:
        from ..score import compose
        from ..scorefile import save_score
        from ..summary import reading

        with reading("fast", decapsulation):  # what hs played is what the score says
            made = compose([record], orchestra=band).score
        save_score(made, score_out, force)
        print(f"recorded    {record}\nscore       {score_out} ({len(made):,} notes, {made.attempts():,} attempts)",
              file=sys.stderr)
    if stopped is not None:
        print(f"hs: stopped{at_rest(players)}", file=sys.stderr)
        sys.exit(stopped)


# --------------------------------------------------------------------------- the performers, from the registry

def heartbeats(say=None):
    """``on_note`` for :func:`~.live.perform_live`: each attempt's first SYN to a
    :class:`~..rhythm.RhythmWatch`, and a line (through ``say``, default standard output,
    beside the console's) the moment a caller has called on a schedule long enough: for one
    server port, or across the ports of one server when none of them alone keeps it."""
    from ..rhythm import RhythmWatch, live_line
    from ..score import KIND_CODE

    watch, heard, first_syn = RhythmWatch(), set(), KIND_CODE["syn"]
    say = say or (lambda line: print(line, flush=True))

    def on_note(score, i):
        row = score.notes[i]
        if row["kind"] != first_syn:
            return
        client, server, at = score.hosts[row["client"]], score.hosts[row["server"]], score.start_ns + int(row["time_ns"])
        for port in (int(row["server_port"]), None):
            found = watch.call(client, server, port, at)
            if found is not None and (port is not None or (client, server) not in heard):
                heard.add((client, server))
                say(f"rhythm: {live_line(found)}")

    return on_note


def performers_and_end(values: list[str], until: str | None) -> tuple[list[str], str | None]:
    """--to's values: lists of performer names (each begins with a letter), or one end time."""
    from . import registry

    who, end = [], until
    for value in values:
        names = [v.strip() for v in value.split(",") if v.strip()]
        if names and all(n[:1].isalpha() for n in names):
            for n in names:
                registry.find(n)
                if n in who:
                    raise HandshakeScoreError(f"--to: {n} is named twice")
                who.append(n)
        elif end is None:
            end = value
        else:
            raise HandshakeScoreError(f"--to {value!r}: the end is given already ({end!r})")
    return who or [registry.DEFAULT], end


def options_for(who: list[str], given: dict, *, live: bool = False) -> dict[str, dict]:
    """Each performer named, in the order they are called at a moment they share (the
    cheapest first), with its options; an option of a performer not named is an error."""
    from . import registry

    classes = {}
    for name in who:
        if name in UNAVAILABLE:
            raise HandshakeScoreError(f"--to {name}: cannot be offered here: {UNAVAILABLE[name]}")
        classes[name] = registry.load(name)
    for name, values in given.items():
        if name in classes:
            continue
        cls = registry.load(name)
        for option in cls.options:
            if values.get(option.key, option.empty) != option.empty:
                raise HandshakeScoreError(f"{option.flag} is for --to {name}: give that too")
    order = list(registry.entries())
    chosen = sorted(classes, key=lambda n: (classes[n].cost, order.index(n)))
    return {n: {**registry.defaults(classes[n]), **given.get(n, {})} for n in chosen}


def written_files(options: dict[str, dict]) -> list[Path]:
    """The files the performers were asked to write (options with ``writes``)."""
    from . import registry

    files = []
    for name, values in options.items():
        for option in registry.load(name).options:
            value = values.get(option.key)
            if option.writes and value:
                files.extend(value if option.multiple else [value])
    return files


def open_performers(options: dict[str, dict], band, *, live: bool) -> list:
    """The performers, built from their options, in the order given; if one cannot be
    built, those built before it are closed. Each one's notices are said on stderr."""
    from . import registry

    made = []
    try:
        for name, values in options.items():
            made.append(registry.build(name, band, values, live=live))
    except BaseException:
        for p in made:
            p.close()
        raise
    for p in made:
        for line in p.notices():
            print(f"hs: warning: {line}", file=sys.stderr)
    return made


def _query(given: dict) -> str | None:
    """What a performer's asking option (--list-ports) prints, if one was given."""
    from . import registry

    for name, values in given.items():
        cls = registry.load(name)
        asked = [o for o in cls.options if values.get(o.key, o.empty) != o.empty]
        if asked:
            answer = cls.query({**registry.defaults(cls), **values})
            if answer is not None:
                return answer
    return None


def performers_table() -> str:
    """``hs play --performers``: every performer, who provides it, whether it can play here,
    what it needs and its options."""
    from . import registry

    lines = []
    for name, entry in registry.entries().items():
        try:
            cls = entry.load()
            why = UNAVAILABLE.get(name) or cls.check()
            state = "ready" if why is None else f"not ready: {why}"
        except HandshakeScoreError as e:
            cls, state = None, f"cannot load: {str(e).split(': ', 1)[-1]}"
        origin = "" if entry.origin == registry.OURS else f" (from {entry.origin})"
        lines.append(f"{name}{origin}: {state}")
        if cls is not None:
            if cls.needs:
                lines.append(f"    needs    {cls.needs}")
            if cls.options:
                lines.append("    options  " + ", ".join(f"{o.flag}{' ' + o.metavar if o.metavar else ''}"
                                                         for o in cls.options))
    return "\n".join(lines)


def at_rest(players) -> str:
    """What a stopped hs play may promise: ", every coil off"."""
    return "".join(f", {p.at_rest}" for p in players if p.at_rest)


# --------------------------------------------------------------------------- the score, the status line, the reports

def _number(text: str, option: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise HandshakeScoreError(f"{option}: {text!r} is not a number") from None


def load_playable(path: Path, band):
    """A score file or a MIDI file (by its first bytes), with a warning for notes the orchestra cannot play."""
    from ..midi import is_midi_file, load_midi
    from ..scorefile import load_score

    if is_midi_file(path):
        loaded = load_midi(path, band)
        skipped = loaded.options.get("unmapped_notes", 0)
        if skipped:
            print(f"hs: warning: {path}: {skipped:,} notes on keys no instrument of the orchestra plays "
                  "were left out", file=sys.stderr)
        return loaded
    return load_score(path)


def tell_long_silence(score, stretch: float) -> None:
    """Before playing, a line on stderr if the score falls silent for long (without --max-gap):
    else a performance waiting months for its next note looks like one that hangs."""
    import numpy as np

    from ..timing import LONG_SILENCE_S, duration_text, output_times_ns, silences_ns

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


def play_status(score, stretch: float, max_gap: Optional[float] = None):
    """A progress line on stderr when it is a terminal: position, time left, notes played
    and dropped, and how long until the next note when that is a while. Yields (on_start,
    on_progress) for :func:`~.performance.perform`."""
    from contextlib import contextmanager

    @contextmanager
    def status():
        if not sys.stderr.isatty():
            yield None, None
            return
        import time

        import numpy as np

        from ..timing import duration_text, output_times_ns

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


def play_report(result, stretch: float, players=()) -> str:
    """What was played: strikes per performer (deferred, dropped, refused), each performer's
    own lines (:meth:`~.performer.Performer.report`), the onset error."""
    lines = [f"played {result.notes:,} notes over {result.length_ns / 1e9:.3f} s (stretch {stretch:g})"
             + (f", {result.passes} passes" if result.passes > 1 else "")]
    for name in result.played:
        extra = [f"{what} {getattr(result, what)[name]:,}" for what in ("deferred", "dropped", "refused")
                 if getattr(result, what)[name]]
        lines.append(f"  {name:<10} {result.played[name]:,} strikes" + (f" ({', '.join(extra)})" if extra else ""))
    for p in players:
        lines.extend(p.report())
    if len(result.onset_ns):
        import numpy as np

        p50, p99 = np.percentile(result.onset_ns, [50, 99]) / 1e3
        lines.append(f"  onset error p50 {p50:.1f} us, p99 {p99:.1f} us")
    return "\n".join(lines)


def live_report(result, players) -> str:
    """What was struck live: strikes per performer (dropped: refused at the moment), each
    performer's own lines, the delay from packet to strike."""
    import numpy as np

    lines = [f"live: {result.notes:,} notes"]
    for name in result.played:
        dropped = f" (dropped {result.dropped[name]:,})" if result.dropped[name] else ""
        lines.append(f"  {name:<10} {result.played[name]:,} strikes{dropped}")
    for p in players:
        lines.extend(p.report())
    if len(result.onset_ns):
        p50, p99 = np.percentile(result.onset_ns, [50, 99]) / 1e3 / 1e3
        lines.append(f"  from packet to strike: p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    return "\n".join(lines)
