"""The score file: CSV with a commented header (spec: ``docs/score-format.md``).

>>> save_score(score, "scores/a.score")
>>> score = load_score("scores/a.score")      # pandas: pd.read_csv(path, comment="#")

Header lines are ``# key: value`` with JSON values, written canonically
(sorted keys, no spaces), so loading a score and writing it again gives the
same bytes. A file that is not a score, or is damaged, raises
:class:`ScoreFileError` naming the file and the line.

>>> attempts = load_attempts("scores/a.score")  # hs rhythm: each attempt's call, a third of the work
"""

from __future__ import annotations

import csv
import json
import mmap
import os
import re
import time
from typing import BinaryIO, Iterator, NamedTuple

import numpy as np

from .csvtext import integers, lines, words
from .errors import HandshakeScoreError
from .files import atomic_write
from .orchestra import Orchestra
from .score import KIND_CODE, NO_DELAY, NOTE, OUTCOME_CODE, Score, Source
from .segments import INT64_MAX, INT64_MIN
from .tracker import Kind, Outcome

FORMAT = 1
MAGIC = "# handshake-score score, format "
COLUMNS = ("time_ns", "kind", "attempt", "client", "client_port", "server", "server_port",
           "outcome", "syn_to_syn_ack_ns", "syn_ack_to_ack_ns", "source")
_HEADER_KEYS = ("tool", "start_ns", "start_utc", "source", "options", "orchestra")


class ScoreFileError(HandshakeScoreError):
    def __init__(self, path: str, line: int, problem: str):
        self.path, self.line, self.problem = path, line, problem
        super().__init__(f"{path}:{line}: {problem}")


def utc(ns: int) -> str:
    """Nanoseconds since the Unix epoch as ISO 8601 UTC, to the nanosecond."""
    seconds, fraction = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{fraction:09d}Z"


def _json(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def header_text(tool: str, start_ns: int, sources: list[Source], options: dict, orchestra: Orchestra) -> str:
    """The header of a score file and its column line (see ``docs/score-format.md``)."""
    head = [f"{MAGIC}{FORMAT}", f"# tool: {_json(tool)}", f"# start_ns: {start_ns}",
            f"# start_utc: {_json(utc(start_ns))}"]
    for n, s in enumerate(sources, 1):
        head.append("# source: " + _json({"n": n, "name": s.name, "size": s.size, "sha256": s.sha256,
                                          "start_ns": s.start_ns,
                                          "start_utc": None if s.start_ns is None else utc(s.start_ns)}))
    head += [f"# options: {_json(options)}", f"# orchestra: {_json(orchestra.as_dict())}", ",".join(COLUMNS)]
    return "\n".join(head) + "\n"


def rows_bytes(time_ns: np.ndarray, kind: np.ndarray, attempt: np.ndarray, clients: list[str], client: np.ndarray,
               client_port: np.ndarray, servers: list[str], server: np.ndarray, server_port: np.ndarray,
               outcome: np.ndarray, syn_to_syn_ack_ns: np.ndarray, syn_ack_to_ack_ns: np.ndarray,
               source: np.ndarray) -> bytes:
    """Note lines, one per row of the given columns: numpy arrays of the :data:`~.score.NOTE`
    codes, except that ``client`` indexes the hosts' text ``clients`` and ``server`` ``servers``."""
    return lines([integers(time_ns), words(list(Kind.ALL), kind), integers(attempt), words(clients, client),
                  integers(client_port), words(servers, server), integers(server_port),
                  words(list(Outcome.ALL), outcome), integers(syn_to_syn_ack_ns, NO_DELAY),
                  integers(syn_ack_to_ack_ns, NO_DELAY), integers(source)])


def _blocks(score: Score, rows_per_block: int = 65536) -> Iterator[bytes]:
    """The bytes of a score file, in blocks of lines (a long score is never all in memory as text)."""
    yield header_text(score.tool, score.start_ns, score.sources, score.options, score.orchestra).encode()
    for at in range(0, len(score.notes), rows_per_block):
        notes = score.notes[at:at + rows_per_block]
        yield rows_bytes(notes["time_ns"], notes["kind"], notes["attempt"], score.hosts, notes["client"],
                         notes["client_port"], score.hosts, notes["server"], notes["server_port"],
                         notes["outcome"], notes["syn_to_syn_ack_ns"], notes["syn_ack_to_ack_ns"], notes["source"])


def dumps(score: Score) -> str:
    """The text of a score file."""
    return b"".join(_blocks(score)).decode()


def write_score(score: Score, f: BinaryIO) -> None:
    for block in _blocks(score):
        f.write(block)


def save_score(score: Score, path: str | os.PathLike, force: bool = False) -> None:
    """Write ``score`` to ``path`` safely (see :func:`~.files.atomic_write`)."""
    with atomic_write(path, force) as f:
        write_score(score, f)


def load_score(path: str | os.PathLike) -> Score:
    """Read a score file. Raises :class:`ScoreFileError`.

    A file as ``hs score`` writes it (ASCII, no quotes, ``\\n`` line ends) is read a column at a
    time by numpy from the bytes; anything else, or anything wrong, is read line by line, which
    names the first bad line."""
    path = os.fspath(path)
    src, lo, hi = _mapped(path)
    magic = MAGIC.encode()
    if src[lo:lo + len(magic)].tobytes() == magic:
        score = _fast_score(src, lo, hi, path)
        if score is not None:
            return score
    data = src[lo:hi].tobytes()
    if not data.startswith(magic):  # a capture, an image...: say so before trying to decode it
        return _loads(data[:200].decode(errors="replace"), path)
    try:
        text = data.decode()
    except UnicodeDecodeError as e:
        raise ScoreFileError(path, data.count(b"\n", 0, e.start) + 1, "not UTF-8 text: not a score file") from None
    return _loads(text, path)


class Attempts(NamedTuple):
    """A score's attempts, one row each: its first note's columns, at the time of its SYN (of
    its first note if it has none). ``client`` and ``server`` index ``hosts``."""

    client: np.ndarray             # uint32
    server: np.ndarray             # uint32
    server_port: np.ndarray        # uint16
    time_ns: np.ndarray            # int64, since the score's start
    outcome: np.ndarray            # uint8, Outcome.ALL codes
    syn_to_syn_ack_ns: np.ndarray  # int64, NO_DELAY where there is none
    hosts: list[str]
    span_ns: int                   # from the score's first note to its last


def load_attempts(path: str | os.PathLike) -> Attempts | None:
    """The attempts of a score file, one row each, read for an analysis of who calls whom
    (``hs rhythm``): a third of the work of :func:`load_score`. None when the file is not as hs
    writes it, or has a fault (:func:`load_score` then reads it, and names the first bad line).

    What is checked is what the analysis reads: the header, as :func:`load_score` checks it;
    every note line's shape (eleven fields, ``\\n`` line ends); on every line its time (in
    range, in time order), kind and attempt number; on each attempt's first line its client,
    server, server port, outcome and SYN->SYN-ACK delay, each as strictly as :func:`load_score`
    checks it. What it does not read (the client port, the SYN-ACK->ACK delay, the source, and
    the rest of an attempt's later lines) is :func:`load_score`'s to check."""
    path = os.fspath(path)
    src, lo, hi = _mapped(path)
    found = _fast_header(src, lo, hi, path)
    if found is None:
        return None
    body, header = found
    return _fast_attempts(src, body, hi, min(INT64_MAX, INT64_MAX - header[1]))


def _mapped(path: str) -> tuple[np.ndarray, int, int]:
    """A file's bytes as a numpy array, mapped rather than copied (the page cache's own pages:
    a large score costs no memory of its own), and where its text starts (past a byte order
    mark, which a spreadsheet may add) and ends."""
    try:
        with open(path, "rb") as f:
            try:
                data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            except (ValueError, OSError):  # empty, or not a regular file (a pipe): read it
                data = f.read()
    except OSError as e:
        problem = "no such file" if isinstance(e, FileNotFoundError) else (e.strerror or str(e))
        raise ScoreFileError(path, 0, problem) from None
    src = np.frombuffer(data, np.uint8)
    return src, 3 if src[:3].tobytes() == b"\xef\xbb\xbf" else 0, len(src)


_PAD = 32  # zero bytes either side of a block of lines in memory, so any field can be read 8 bytes at a time


def _padded(data: bytes) -> tuple[np.ndarray, int, int]:
    buf = np.zeros(len(data) + 2 * _PAD, np.uint8)
    buf[_PAD:_PAD + len(data)] = np.frombuffer(data, np.uint8)
    return buf, _PAD, _PAD + len(data)


def loads(text: str, path: str = "<score>") -> Score:
    """A score from its text (see :func:`load_score`)."""
    if text.startswith(MAGIC) and text.isascii():
        score = _fast_score(*_padded(text.encode("ascii")), path)
        if score is not None:
            return score
    return _loads(text, path)


def _loads(text: str, path: str) -> Score:
    """The exact, line-by-line reading: every fault named by its line."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the final newline
    first = lines[0].rstrip("\r") if lines else ""
    if not first.startswith(MAGIC):
        raise ScoreFileError(path, 1, f"not a handshake-score score (its first line should begin {MAGIC.strip()!r})")
    version = first[len(MAGIC):len(MAGIC) + 20]  # a damaged file may have no line ends: not all of it
    if first[len(MAGIC):] != str(FORMAT):
        newer = version.isdigit() and int(version) > FORMAT
        raise ScoreFileError(path, 1, f"score format {version!r} " + (
            f"is newer than this hs reads ({FORMAT}): upgrade handshake-score" if newer else "is unknown"))
    number, start_ns, sources, options, orchestra, tool = _header(lines, path)
    # every note's moment, start_ns + time_ns, is a time 64-bit nanoseconds hold
    notes, hosts = _notes(path, number, lines[number:], len(sources), min(INT64_MAX, INT64_MAX - start_ns))
    return Score(notes, hosts, sources, start_ns, options, orchestra, tool)


def _header(lines: list[str], path: str) -> tuple:
    """The header after its first line: (the column line's number, start_ns, sources, options,
    orchestra, tool), or :class:`ScoreFileError`."""
    header: dict = {"source": []}
    at: dict[str, int] = {}  # the line of each header key
    number = 1
    for number in range(2, len(lines) + 1):
        line = lines[number - 1].rstrip("\r")
        if not line.startswith("#"):
            break
        key, sep, value = line[1:].strip().partition(":")
        if not sep or key not in _HEADER_KEYS:
            raise ScoreFileError(path, number, f"unknown header line {line[:60]!r}")
        try:
            value = json.loads(value)
        except ValueError as e:
            raise ScoreFileError(path, number, f"{key}: not valid JSON ({e})") from None
        if key == "source":
            header["source"].append((number, value))
        elif key in header:
            raise ScoreFileError(path, number, f"{key}: given twice")
        else:
            header[key], at[key] = value, number
    else:
        raise ScoreFileError(path, len(lines), "no column line: the file ends inside its header")
    for key in ("tool", "start_ns", "options", "orchestra"):
        if key not in header:
            raise ScoreFileError(path, number, f"the header has no {key!r} line")
    if lines[number - 1].rstrip("\r") != ",".join(COLUMNS):
        raise ScoreFileError(path, number, f"the column line should be {','.join(COLUMNS)!r}")
    start_ns = header["start_ns"]
    if not isinstance(start_ns, int) or isinstance(start_ns, bool):
        raise ScoreFileError(path, at["start_ns"], "start_ns: not an integer")
    if not INT64_MIN <= start_ns <= INT64_MAX:
        raise ScoreFileError(path, at["start_ns"], f"start_ns: {_shown(start_ns)} is out of range ({_TIMES})")
    if len(header["source"]) > _MAX_SOURCES:
        raise ScoreFileError(path, header["source"][_MAX_SOURCES][0], f"source: more than {_MAX_SOURCES} sources")
    sources = [_source(path, n, i, v, start_ns) for i, (n, v) in enumerate(header["source"], 1)]
    if not isinstance(header["tool"], str):
        raise ScoreFileError(path, at["tool"], "tool: not a string")
    if not isinstance(header["options"], dict):
        raise ScoreFileError(path, at["options"], "options: not a JSON object")
    try:
        orchestra = Orchestra.from_dict(header["orchestra"])
    except HandshakeScoreError as e:
        raise ScoreFileError(path, at["orchestra"], f"orchestra: {e}") from None
    return number, start_ns, sources, header["options"], orchestra, header["tool"]


_TIMES = "64-bit nanoseconds since 1970 hold the years 1677-2262"
_MAX_SOURCES = 0xFFFF  # a note's source is a uint16


def _shown(value, width: int = 40) -> str:
    """A value for an error message: in one line (a string as its repr), and not a whole damaged file."""
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= width else text[:width] + "..."


def _is_integer(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _source(path: str, line: int, n: int, v, start_ns: int) -> Source:
    try:
        if not isinstance(v, dict):
            raise ValueError("not a JSON object")
        if not _is_integer(v["n"]) or v["n"] != n:
            raise ValueError(f"numbered {_shown(v['n'])}, expected {n}")
        start, size = v["start_ns"], v["size"]
        if not _is_integer(size) or not (start is None or _is_integer(start)):
            raise ValueError("size and start_ns must be integers")
        if not 0 <= size <= INT64_MAX:
            raise ValueError(f"size {_shown(size)} is out of range (0-{INT64_MAX})")
        # the console shows each note's time from its source's start: that difference is an int64 too
        if start is not None and not (INT64_MIN <= start <= INT64_MAX and INT64_MIN <= start_ns - start <= INT64_MAX):
            raise ValueError(f"start_ns {_shown(start)} is out of range ({_TIMES}, and it is the score's "
                             "start_ns give or take that)")
        if not isinstance(v["name"], str) or not isinstance(v["sha256"], str):
            raise ValueError("name and sha256 must be strings")
        return Source(v["name"], size, v["sha256"], start)
    except (KeyError, TypeError, ValueError) as e:
        raise ScoreFileError(path, line, f"source: {e}") from None


# the range of each integer column: what its NOTE dtype holds, and what a score can mean
_LIMITS = {"time_ns": (0, INT64_MAX), "attempt": (1, 0xFFFFFFFF), "client_port": (0, 0xFFFF),
           "server_port": (0, 0xFFFF), "syn_to_syn_ack_ns": (INT64_MIN + 1, INT64_MAX),  # INT64_MIN is NO_DELAY
           "syn_ack_to_ack_ns": (INT64_MIN + 1, INT64_MAX), "source": (1, _MAX_SOURCES)}
_ONE_INT = re.compile(r"-?[1-9][0-9]*|0")  # an integer as a score writes it
_POWERS_OF_10 = np.array([10 ** k for k in range(1, 20)], np.uint64)


def _notes(path: str, header_lines: int, lines: list[str], n_sources: int,
           max_time: int = INT64_MAX) -> tuple[np.ndarray, list[str]]:
    """Parse the note lines a column at a time; on any problem find the first bad line and name it.
    ``max_time``: the latest ``time_ns`` the score's start allows."""
    body = "\n".join(lines)
    if "\r" in body:  # CRLF line ends (a spreadsheet's); a carriage return anywhere else is refused below
        lines = [line[:-1] if line.endswith("\r") else line for line in lines]
        body = "\n".join(lines)
    try:
        if '"' in body:  # saved by a spreadsheet: quoted fields
            rows = list(csv.reader(lines, strict=True))
            if len(rows) != len(lines) or any(len(r) != len(COLUMNS) for r in rows):
                raise ValueError("field count")
            cols = list(zip(*rows)) if rows else [()] * len(COLUMNS)
        else:  # as we write it: no quoting, so one split gives every field
            fields = body.replace("\n", ",").split(",") if lines else []
            if len(fields) != len(lines) * len(COLUMNS):
                raise ValueError("field count")
            cols = [fields[i::len(COLUMNS)] for i in range(len(COLUMNS))]
            if body.isascii():  # so every field is: their total length checks the integers' forms at once
                return _columns(cols, n_sources, max_time, len(body) - max(len(fields) - 1, 0))
        return _columns(cols, n_sources, max_time)
    except (ValueError, KeyError, IndexError, OverflowError, csv.Error):
        pass
    times = []
    for i, line in enumerate(lines):  # the slow way, to say where
        try:
            row = _fields(line)
            if len(row) != len(COLUMNS):
                raise ValueError(f"{len(row)} fields, expected {len(COLUMNS)}")
            _columns([[v] for v in row], n_sources, max_time)
        except (ValueError, KeyError, IndexError, OverflowError) as e:
            raise ScoreFileError(path, header_lines + 1 + i, str(e)) from None
        times.append(int(row[0]))
    for i in range(1, len(times)):
        if times[i] < times[i - 1]:
            raise ScoreFileError(path, header_lines + 1 + i, "notes out of time order")
    raise ScoreFileError(path, header_lines + 1, "damaged notes")  # unreachable unless a check above is missing


def _fields(line: str) -> list[str]:
    """The fields of one note line, or ValueError saying what is wrong with it."""
    if "\r" in line:
        raise ValueError("a carriage return (\\r) inside the line")
    if '"' not in line:
        return line.split(",")
    try:
        return next(csv.reader([line], strict=True), [""])
    except csv.Error as e:
        raise ValueError(f"not a CSV line: {e}") from None


def _int_column(name: str, values, missing_ok: bool = False, hi: int | None = None,
                lengths: list | None = None) -> np.ndarray:
    """A column of integers as a score writes them: an optional minus and digits, no leading
    zeros, nothing else (``missing_ok``: or empty, read as NO_DELAY); each within
    ``_LIMITS[name]`` (``hi``: a lower upper limit). Checked for the whole column at once.

    ``lengths``: the caller knows the values are ASCII and checks their total length
    against the text itself; this appends the length they have written plainly."""
    lo, top = _LIMITS[name]
    hi = top if hi is None else min(hi, top)
    n = len(values)
    if not n:
        return np.zeros(0, np.int64)
    written = None
    if lengths is None:
        joined = "\n".join(values)
        written = len(joined) - (n - 1) if joined.isascii() else None  # int() takes other scripts' digits too
    out = None
    if lengths is not None or written is not None:
        try:  # and "+1", " 1", "1_0", "007", "-0": each is longer than the integer written plainly
            out = np.array([int(v) if v else NO_DELAY for v in values] if missing_ok else list(map(int, values)),
                           np.int64)
        except (ValueError, OverflowError):
            pass
    if out is not None:
        present = out[out != NO_DELAY] if missing_ok else out
        if not len(present) or (lo <= int(present.min()) and int(present.max()) <= hi):
            # the length of each value written plainly: the text is as long only if every value is written so
            magnitude = np.where(present < 0, np.uint64(0) - present.view(np.uint64), present.view(np.uint64))
            plain = (int(np.searchsorted(_POWERS_OF_10, magnitude, side="right").sum()) + len(present)
                     + int(np.count_nonzero(present < 0)))
            if lengths is not None:
                lengths.append(plain)
                return out
            if plain == written:
                return out
    for v in values:  # the slow way, to say which
        if missing_ok and v == "":
            continue
        if not _ONE_INT.fullmatch(v):
            why = " (no spaces, plus signs, underscores or leading zeros)" if _is_int(v) else ""
            raise ValueError(f"{name}: {_shown(v)} is not an integer{why}")
        if len(v) > 20 or not lo <= int(v) <= hi:
            shown = v if len(v) <= 25 else v[:25] + "..."
            if name == "source":
                raise ValueError(f"source: {shown} is not a source of the header")
            why = f": start_ns + time_ns must be at most {INT64_MAX} ({_TIMES})" if hi < top else ""
            raise ValueError(f"{name}: {shown} is out of range ({lo} to {hi}{why})")
    raise ValueError(f"{name}: damaged")  # unreachable unless a check above is missing


def _is_int(v: str) -> bool:
    try:
        int(v)
        return True
    except ValueError:
        return False


def _host_ok(host: str) -> bool:
    """An address or a pseudonym: not empty, no control characters, spaces, commas or quotes."""
    return bool(host) and host.isprintable() and not any(c in host for c in ' ,"')


_KIND_LENGTH = np.array([len(k) for k in Kind.ALL], np.int64)
_OUTCOME_LENGTH = np.array([len(o) for o in Outcome.ALL], np.int64)


def _columns(cols: list, n_sources: int, max_time: int = INT64_MAX,
             text_length: int | None = None) -> tuple[np.ndarray, list[str]]:
    """The notes of ``cols`` (one list of field texts per column), or ValueError naming the
    column and value. ``text_length``: the total length of the fields, all known to be ASCII
    (the integers are then checked against it once, not column by column)."""
    n = len(cols[0])
    notes = np.zeros(n, NOTE)
    lengths = None if text_length is None else []
    notes["time_ns"] = _int_column("time_ns", cols[0], hi=max_time, lengths=lengths)
    for name in ("attempt", "client_port", "server_port"):
        notes[name] = _int_column(name, cols[COLUMNS.index(name)], lengths=lengths)
    for name in ("syn_to_syn_ack_ns", "syn_ack_to_ack_ns"):
        notes[name] = _int_column(name, cols[COLUMNS.index(name)], missing_ok=True, lengths=lengths)
    try:
        notes["kind"] = [KIND_CODE[k] for k in cols[1]]
    except KeyError as e:
        raise ValueError(f"kind: unknown note kind {_shown(e.args[0])}") from None
    try:
        notes["outcome"] = [OUTCOME_CODE[o] for o in cols[7]]
    except KeyError as e:
        raise ValueError(f"outcome: unknown outcome {_shown(e.args[0])}") from None
    notes["source"] = _int_column("source", cols[10], hi=n_sources, lengths=lengths)
    index: dict[str, int] = {}
    notes["client"] = [index.setdefault(h, len(index)) for h in cols[3]]
    notes["server"] = [index.setdefault(h, len(index)) for h in cols[5]]
    hosts = list(index)
    every = "".join(hosts)
    if n and ("" in index or not every.isprintable() or any(c in every for c in ' ,"')):
        side, bad = next((c, h) for c in (3, 5) for h in cols[c] if not _host_ok(h))
        raise ValueError(f"{COLUMNS[side]}: {_shown(bad)} is not an address or a pseudonym"
                         + (" (no spaces, control characters, commas or quotes)" if bad else ""))
    if lengths is not None:  # what the integers take, written plainly, is what is left of the text
        host_length = np.array([len(h) for h in hosts] or [0], np.int64)
        others = (int(_KIND_LENGTH[notes["kind"]].sum()) + int(_OUTCOME_LENGTH[notes["outcome"]].sum())
                  + int(host_length[notes["client"]].sum()) + int(host_length[notes["server"]].sum()))
        if sum(lengths) + others != text_length:
            raise ValueError("an integer not written plainly")  # found and named line by line
    if n > 1 and np.any(np.diff(notes["time_ns"]) < 0):
        raise ValueError("time order")
    return notes, hosts


# -- the fast reading: a score as hs writes it, a column at a time from the bytes --------------------------
#
# The note lines are read in blocks of about :data:`_BLOCK_BYTES`, each copied into one padded
# buffer (its arrays stay in the CPU's caches, and a large score costs no copy of itself). Every
# field is read 8 bytes at a time (an unaligned uint64 view of the buffer) and checked as strictly
# as the exact reading checks it; anything it does not expect (quotes, CRs, non-ASCII text, a
# value out of range, a second pair of hosts with one hash...) makes it give up, and the exact
# reading then names the first bad line.

_M64 = (1 << 64) - 1
_LOW = np.array([(1 << 8 * c) - 1 for c in range(9)], np.uint64)   # the first c bytes of a word
_HIGH = np.array([0] + [_M64 ^ ((1 << 8 * (8 - c)) - 1) for c in range(1, 9)], np.uint64)  # the last c
_ZEROS = 0x3030303030303030  # "00000000"
_BLOCK_BYTES = 1 << 22  # note lines a block (about 50,000 of them)
_SYN, _FIELDS = KIND_CODE[Kind.SYN], len(COLUMNS)


def _words(buf: np.ndarray) -> np.ndarray:
    """The uint64 (little-endian) starting at each byte of ``buf``."""
    return np.ndarray((len(buf) - 7,), "<u8", buf, 0, (1,))


def _vocabulary(words: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For words of at most 15 ASCII letters, each with its own length and first letter: the index
    of the word by ``length << 8 | first byte``, and each word as two little-endian uint64 (zeros
    after it; the last entry none of them, for any other text)."""
    table = np.full(16 << 8, len(words), np.uint8)
    w1, w2 = np.zeros(len(words) + 1, np.uint64), np.zeros(len(words) + 1, np.uint64)
    w1[-1] = w2[-1] = _M64  # no field's bytes: a field's are masked to its length
    for code, w in enumerate(words):
        b = w.encode().ljust(16, b"\0")
        assert table[len(w) << 8 | b[0]] == len(words)
        table[len(w) << 8 | b[0]] = code
        w1[code], w2[code] = int.from_bytes(b[:8], "little"), int.from_bytes(b[8:], "little")
    return table, w1, w2


_KINDS, _OUTCOMES = _vocabulary(Kind.ALL), _vocabulary(Outcome.ALL)


def _fast_header(src: np.ndarray, lo: int, hi: int, path: str) -> tuple[int, tuple] | None:
    """Where the note lines of the score in ``src[lo:hi]`` start, and its header as :func:`_header`
    gives it; None if the header is not as hs writes it."""
    text = src[lo:hi]
    ends = np.flatnonzero(text[:1 << 20] == 10)  # the header is small: its lines are in the first MB
    column = next((i for i, e in enumerate(ends) if text[0 if i == 0 else ends[i - 1] + 1] != ord("#")), None)
    if column is None or column < 1:
        return None
    try:
        head = text[:ends[column] + 1].tobytes().decode()
    except UnicodeDecodeError:
        return None
    lines = head.split("\n")[:-1]
    if "\r" in head or lines[0] != MAGIC + str(FORMAT):
        return None
    try:
        header = _header(lines, path)
    except ScoreFileError:
        return None  # said by the exact reading, with everything before it checked first
    if lines[header[0] - 1] != ",".join(COLUMNS):
        return None
    return lo + int(ends[column]) + 1, header


def _fast_score(src: np.ndarray, lo: int, hi: int, path: str) -> Score | None:
    """The score in ``src[lo:hi]`` if it is as hs writes it, else None."""
    found = _fast_header(src, lo, hi, path)
    if found is None:
        return None
    body, (_, start_ns, sources, options, orchestra, tool) = found
    notes = _fast_notes(src, body, hi, len(sources), min(INT64_MAX, INT64_MAX - start_ns))
    return None if notes is None else Score(*notes, sources, start_ns, options, orchestra, tool)


def _line_blocks(src: np.ndarray, lo: int, hi: int) -> Iterator[tuple[np.ndarray, np.ndarray] | None]:
    """The note lines of ``src[lo:hi]`` a block at a time, as (buffer, e): the block copied into a
    buffer padded with zeros, and where each field of each line ends in it (lines x 11; a field
    starts after the one before it ends, see :func:`_starts`). None for a block whose lines do
    not have eleven fields each."""
    pad = np.zeros(_BLOCK_BYTES + (1 << 16) + 2 * _PAD, np.uint8)
    at = lo
    while at < hi:
        end = min(at + _BLOCK_BYTES, hi)
        while src[end - 1] != 10:  # to the end of its line (the file ends with one)
            more = np.flatnonzero(src[end:end + (1 << 12)] == 10)
            end = end + int(more[0]) + 1 if len(more) else min(end + (1 << 12), hi)
        n = end - at
        if len(pad) < n + 2 * _PAD:  # a line of more than 64 KB: no score has one, a damaged file may
            pad = np.zeros(n + 2 * _PAD, np.uint8)
        pad[_PAD:_PAD + n] = src[at:end]
        pad[_PAD + n:2 * _PAD + n] = 0
        newline = pad[:_PAD + n] == 10  # with the zeros before: positions in the buffer
        separators = np.flatnonzero(newline | (pad[:_PAD + n] == 44))
        lines = np.count_nonzero(newline)
        e = separators.reshape(-1, _FIELDS) if len(separators) == lines * _FIELDS else None
        if e is None or not newline[e[:, -1]].all():  # so every line has ten commas and its line end
            yield None
            return
        yield pad, e
        at = end


def _starts(e: np.ndarray, i: int) -> np.ndarray:
    """Where field ``i`` of each line starts, from where the fields end (see :func:`_line_blocks`)."""
    if i:
        return e[:, i - 1] + 1
    s = np.empty(len(e), np.int64)
    s[0] = _PAD
    s[1:] = e[:-1, -1] + 1
    return s


def _column(name: str, buf, words, s, e, n_sources: int = 0, max_time: int = INT64_MAX) -> np.ndarray | None:
    """One column of a block's lines (``s``, ``e``: its fields' starts and ends), or None."""
    if name in ("kind", "outcome"):
        return _fast_words(words, s, e, _KINDS if name == "kind" else _OUTCOMES)
    hi = max_time if name == "time_ns" else n_sources if name == "source" else None
    return _fast_int(buf, words, s, e, name, name.endswith("_ns") and name != "time_ns", hi)


def _fast_notes(src: np.ndarray, lo: int, hi: int, n_sources: int, max_time: int):
    """(notes, hosts) of the note lines in ``src[lo:hi]``, or None at anything unexpected.
    ``max_time``: the latest ``time_ns`` the score's start allows."""
    if lo == hi:
        return np.zeros(0, NOTE), []
    if src[hi - 1] != 10:
        return None
    lines = sum(int(np.count_nonzero(src[a:min(a + _BLOCK_BYTES, hi)] == 10)) for a in range(lo, hi, _BLOCK_BYTES))
    notes = np.zeros(lines, NOTE)
    done, clients, servers = 0, [], []
    for block in _line_blocks(src, lo, hi):
        if block is None:
            return None
        buf, e = block
        words = _words(buf)
        at = notes[done:done + len(e)]
        for i, name in enumerate(COLUMNS):
            if name in ("client", "server"):
                host = _fast_host(words, _starts(e, i), e[:, i])
                if host is None:
                    return None
                (clients if name == "client" else servers).append(host)
                continue
            values = _column(name, buf, words, _starts(e, i), e[:, i], n_sources, max_time)
            if values is None:
                return None
            at[name] = values
        if np.any(np.diff(at["time_ns"]) < 0) or (done and at["time_ns"][0] < notes["time_ns"][done - 1]):
            return None
        done += len(e)
    found = _fast_hosts(*_joined(clients + servers))
    if found is None:
        return None
    labels, hosts = found
    notes["client"], notes["server"] = labels[:len(notes)], labels[len(notes):]
    return notes, hosts


def _fast_attempts(src: np.ndarray, lo: int, hi: int, max_time: int) -> Attempts | None:
    """:func:`load_attempts`'s reading of the note lines in ``src[lo:hi]``, or None."""
    if lo == hi:
        none = np.zeros(0, np.int64)
        return Attempts(none.astype(np.uint32), none.astype(np.uint32), none.astype(np.uint16), none,
                        none.astype(np.uint8), none, [], 0)
    if src[hi - 1] != 10:
        return None
    c = {name: [] for name in ("attempt", "time_ns", "server_port", "outcome", "syn_to_syn_ack_ns", "syn_attempt",
                               "syn_time")}
    clients, servers = [], []
    newest, first_time, last_time = 0, None, None  # the highest attempt number so far, the times
    for block in _line_blocks(src, lo, hi):
        if block is None:
            return None
        buf, e = block
        words = _words(buf)
        col = COLUMNS.index
        time = _column("time_ns", buf, words, _starts(e, 0), e[:, 0], max_time=max_time)
        kind = _column("kind", buf, words, _starts(e, 1), e[:, 1])
        attempt = _column("attempt", buf, words, _starts(e, 2), e[:, 2])
        if time is None or kind is None or attempt is None:
            return None
        if np.any(np.diff(time) < 0) or (last_time is not None and time[0] < last_time):
            return None
        first_time = time[0] if first_time is None else first_time
        last_time = time[-1]
        # attempts are numbered in the order of their first notes: a number above all before it is a new one
        before = np.maximum.accumulate(np.concatenate([[newest], attempt[:-1]]))
        first = np.flatnonzero(attempt > before)
        newest = max(newest, int(attempt.max()))
        ef = e[first]
        for name in ("client", "server"):
            host = _fast_host(words, _starts(ef, col(name)), ef[:, col(name)])
            if host is None:
                return None
            (clients if name == "client" else servers).append(host)
        for name in ("server_port", "outcome", "syn_to_syn_ack_ns"):
            values = _column(name, buf, words, _starts(ef, col(name)), ef[:, col(name)]) if len(first) else attempt[:0]
            if values is None:
                return None
            c[name].append(values)
        syn = kind == _SYN
        c["attempt"].append(attempt)
        c["time_ns"].append(time[first])
        c["syn_attempt"].append(attempt[syn])
        c["syn_time"].append(time[syn])
    c = {name: np.concatenate(parts) for name, parts in c.items()}
    n = len(c["time_ns"])
    syn_row = _rows(c["attempt"], c["syn_attempt"], newest, n)
    if syn_row is None:
        return None
    time = c["time_ns"]
    time[syn_row] = c["syn_time"]  # a call is at its SYN
    found = _fast_hosts(*_joined(clients + servers))
    if found is None:
        return None
    labels, hosts = found
    return Attempts(labels[:n], labels[n:], c["server_port"].astype(np.uint16), time,
                    c["outcome"].astype(np.uint8), c["syn_to_syn_ack_ns"], hosts, int(last_time - first_time))


def _rows(attempt: np.ndarray, wanted: np.ndarray, newest: int, n: int) -> np.ndarray | None:
    """The row of each of the ``wanted`` attempt numbers among the ``n`` attempts, whose first notes
    ``attempt`` (every note's number, in the file's order) numbers in increasing order up to
    ``newest``; None if a note's number is no attempt's (numbered out of order: load_score's)."""
    if newest == n:  # numbered 1, 2, ... n: every note's number is an attempt's
        return wanted.astype(np.int64) - 1
    numbers = attempt[np.flatnonzero(attempt > np.maximum.accumulate(np.concatenate([[0], attempt[:-1]])))]
    row = np.minimum(np.searchsorted(numbers, attempt), n - 1)  # gaps (a filter thinned the score)
    if not np.array_equal(numbers[row], attempt):
        return None
    return np.searchsorted(numbers, wanted)


def _fast_int(buf, words, s, e, name: str, missing_ok: bool, hi: int | None) -> np.ndarray | None:
    """A column of integers as :func:`_int_column` takes them, or None."""
    lo, top = _LIMITS[name]
    hi = top if hi is None else min(hi, top)
    neg = None
    if missing_ok:
        neg = buf[s] == 45  # "-" (an empty field's s is its separator)
        s = s + neg
    length = e - s
    if int(length.max()) > 19 or np.any((length == 0) if neg is None else (length == 0) & neg):
        return None  # more digits than an int64 holds, or nothing where a number must be
    if np.any((buf[s] == 48) & (length > 1)):
        return None  # a leading zero
    magnitude = np.zeros(len(s), np.uint64)
    bad = np.zeros(len(s), np.uint64)
    scale, shortest = 1, int(length.min())
    for k in range(0, int(length.max()), 8):  # 8 digits at a time, from the last
        w = words[e - k - 8]
        if shortest < k + 8:  # some have fewer digits: "0"s before them
            keep = _HIGH[np.clip(length - k, 0, 8)]
            w = (w & keep) | (~keep & _ZEROS)
        # each byte "0" to "9": its high nibble 3, and still 3 with 6 added
        bad |= (w & 0xF0F0F0F0F0F0F0F0) ^ _ZEROS
        bad |= ((w + 0x0606060606060606) & 0xF0F0F0F0F0F0F0F0) ^ _ZEROS
        w -= _ZEROS  # the first digit in the lowest byte: pairs, fours, then eight
        w = (w * 10 + (w >> 8)) & 0x00FF00FF00FF00FF
        w = (w * 100 + (w >> 16)) & 0x0000FFFF0000FFFF
        w = (w * 10000 + (w >> 32)) & 0x00000000FFFFFFFF
        if k:
            w *= np.uint64(scale)
        magnitude += w
        scale *= 10 ** 8
    if bad.any():
        return None  # not a digit
    if np.any(magnitude > INT64_MAX):
        return None
    values = magnitude.view(np.int64)
    if neg is not None:
        if np.any(neg & (magnitude == 0)):
            return None  # "-0"
        values = np.where(neg, -values, values)
        values[length == 0] = NO_DELAY
        present = values[length > 0]
    else:
        present = values
    if len(present) and (int(present.min()) < lo or int(present.max()) > hi):
        return None
    return values


def _fast_words(words, s, e, vocabulary) -> np.ndarray | None:
    """The index of each field's text in ``vocabulary`` (see :func:`_vocabulary`), or None."""
    length = e - s
    if int(length.max()) > 15:
        return None
    first = words[s] & _LOW[np.clip(length, 0, 8)]
    second = words[s + 8] & _LOW[np.clip(length - 8, 0, 8)] if int(length.max()) > 8 else np.uint64(0)
    table, w1, w2 = vocabulary
    codes = table[(length << 8) | (first & 0xFF).astype(np.int64)]  # a guess by length and first letter
    if np.any((first != w1[codes]) | (second != w2[codes])):  # checked against the word itself
        return None
    return codes


_HOST_WIDTH = 64  # longer hosts (no address is) go the exact way


def _fast_host(words, s, e) -> tuple[np.ndarray, np.ndarray] | None:
    """Each host field's 64-bit hash and its bytes as uint64 words (rows x words, zeros after
    its end), having checked it is printable ASCII with no space or quote; or None."""
    length = e - s
    if not len(s):
        return np.zeros(0, np.uint64), np.zeros((0, 1), np.uint64)
    if int(length.min()) < 1 or int(length.max()) > _HOST_WIDTH:
        return None
    w = np.empty((len(s), -(-int(length.max()) // 8)), np.uint64)
    for j in range(w.shape[1]):
        w[:, j] = words[s + 8 * j] & _LOW[np.clip(length - 8 * j, 0, 8)]
    b = w.view(np.uint8).reshape(len(s), -1)
    printable = ((b - 0x21) <= 0x7E - 0x21) & (b != 0x22)  # "!" to "~" but '"': the zeros after fail
    if not np.array_equal(np.count_nonzero(printable, axis=1), length):
        return None
    h = length.astype(np.uint64)
    for j in range(w.shape[1]):  # splitmix64's mixing, word by word (only the host's own words)
        x = h ^ w[:, j]
        x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9
        x = (x ^ (x >> 27)) * 0x94D049BB133111EB
        h = np.where(length > 8 * j, x ^ (x >> 31), h)
    return h, w


def _joined(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """The hashes and words of host fields from several blocks, the words widened to the widest."""
    width = max(w.shape[1] for _, w in parts)
    if all(w.shape[1] == width for _, w in parts):
        return np.concatenate([h for h, _ in parts]), np.concatenate([w for _, w in parts])
    words = np.zeros((sum(len(h) for h, _ in parts), width), np.uint64)
    at = 0
    for h, w in parts:
        words[at:at + len(h), :w.shape[1]] = w
        at += len(h)
    return np.concatenate([h for h, _ in parts]), words


def _fast_hosts(hashes: np.ndarray, words: np.ndarray) -> tuple[np.ndarray, list[str]] | None:
    """Each host field's index into the hosts in order of first appearance (clients, then servers,
    as :func:`_columns` numbers them), from their hashes and words (see :func:`_fast_host`);
    None if two different hosts share a hash."""
    if not len(hashes):
        return np.zeros(0, np.uint32), []
    order = np.argsort(hashes)
    ordered = hashes[order]
    new = np.empty(len(ordered), bool)
    new[:1] = True
    new[1:] = ordered[1:] != ordered[:-1]
    del ordered
    starts = np.flatnonzero(new)
    first = np.minimum.reduceat(order, starts)  # each hash's first field
    group = np.empty(len(order), np.int64)
    group[order] = np.cumsum(new) - 1
    del order, new
    appearance = np.argsort(first)
    rank = np.empty(len(first), np.uint32)
    rank[appearance] = np.arange(len(first))
    labels = rank[group]
    del group
    expected = words[first[appearance]]  # each host's bytes, from the field that shows it first
    for a in range(0, len(labels), 1 << 18):  # every field is its host, byte for byte
        if not np.array_equal(words[a:a + (1 << 18)], expected[labels[a:a + (1 << 18)]]):
            return None
    hosts = [h.decode("ascii") for h in np.ascontiguousarray(expected).view(f"S{8 * words.shape[1]}").ravel().tolist()]
    return labels, hosts
