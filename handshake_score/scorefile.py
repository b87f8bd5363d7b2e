"""The score file: CSV with a commented header (spec: ``docs/score-format.md``).

>>> save_score(score, "scores/a.score")
>>> score = load_score("scores/a.score")      # pandas: pd.read_csv(path, comment="#")

Header lines are ``# key: value`` with JSON values, written canonically
(sorted keys, no spaces), so loading a score and writing it again gives the
same bytes. A file that is not a score, or is damaged, raises
:class:`ScoreFileError` naming the file and the line.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from itertools import chain
from typing import BinaryIO, Iterator

import numpy as np

from .errors import HandshakeScoreError
from .files import atomic_write
from .orchestra import Orchestra
from .score import KIND_CODE, NO_DELAY, NOTE, OUTCOME_CODE, Score, Source
from .tracker import Kind, Outcome

FORMAT = 1
MAGIC = "# handshake-score score, format "
COLUMNS = ("time_ns", "kind", "attempt", "client", "client_port", "server", "server_port",
           "outcome", "syn_to_syn_ack_ns", "syn_ack_to_ack_ns", "source")
_ROW = "%d,%s,%d,%s,%d,%s,%d,%s,%s,%s,%d\n"  # COLUMNS; a delay is "" when there is none
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


def _blocks(score: Score, rows_per_block: int = 65536) -> Iterator[str]:
    """The text of a score file, in blocks of lines (a long score is never all in memory as text)."""
    head = [f"{MAGIC}{FORMAT}", f"# tool: {_json(score.tool)}", f"# start_ns: {score.start_ns}",
            f"# start_utc: {_json(utc(score.start_ns))}"]
    for n, s in enumerate(score.sources, 1):
        head.append("# source: " + _json({"n": n, "name": s.name, "size": s.size, "sha256": s.sha256,
                                          "start_ns": s.start_ns,
                                          "start_utc": None if s.start_ns is None else utc(s.start_ns)}))
    head += [f"# options: {_json(score.options)}", f"# orchestra: {_json(score.orchestra.as_dict())}",
             ",".join(COLUMNS)]
    yield "\n".join(head) + "\n"
    host, kind, outcome = score.hosts.__getitem__, Kind.ALL.__getitem__, Outcome.ALL.__getitem__
    for at in range(0, len(score.notes), rows_per_block):
        notes = score.notes[at:at + rows_per_block]

        def delays(column: str) -> list:
            return ["" if d == NO_DELAY else d for d in notes[column].tolist()]

        columns = [
            notes["time_ns"].tolist(),
            map(kind, notes["kind"].tolist()),
            notes["attempt"].tolist(),
            map(host, notes["client"].tolist()),
            notes["client_port"].tolist(),
            map(host, notes["server"].tolist()),
            notes["server_port"].tolist(),
            map(outcome, notes["outcome"].tolist()),
            delays("syn_to_syn_ack_ns"),
            delays("syn_ack_to_ack_ns"),
            notes["source"].tolist(),
        ]
        # one % over the whole block: the formatting loop runs in C, not once a row in Python
        yield (_ROW * len(notes)) % tuple(chain.from_iterable(zip(*columns)))


def dumps(score: Score) -> str:
    """The text of a score file."""
    return "".join(_blocks(score))


def write_score(score: Score, f: BinaryIO) -> None:
    for block in _blocks(score):
        f.write(block.encode())


def save_score(score: Score, path: str | os.PathLike, force: bool = False) -> None:
    """Write ``score`` to ``path`` safely (see :func:`~.files.atomic_write`)."""
    with atomic_write(path, force) as f:
        write_score(score, f)


def load_score(path: str | os.PathLike) -> Score:
    """Read a score file. Raises :class:`ScoreFileError`."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        problem = "no such file" if isinstance(e, FileNotFoundError) else (e.strerror or str(e))
        raise ScoreFileError(path, 0, problem) from None
    data = data.removeprefix(b"\xef\xbb\xbf")  # the byte order mark a spreadsheet may add
    if not data.startswith(MAGIC.encode()):  # a capture, an image...: say so before trying to decode it
        return loads(data[:200].decode(errors="replace"), path)
    try:
        text = data.decode()
    except UnicodeDecodeError as e:
        raise ScoreFileError(path, data.count(b"\n", 0, e.start) + 1, "not UTF-8 text: not a score file") from None
    return loads(text, path)


def loads(text: str, path: str = "<score>") -> Score:
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the final newline
    first = lines[0].rstrip("\r") if lines else ""
    if not first.startswith(MAGIC):
        raise ScoreFileError(path, 1, f"not a handshake-score score (its first line should begin {MAGIC.strip()!r})")
    version = first[len(MAGIC):]
    if version != str(FORMAT):
        newer = version.isdigit() and int(version) > FORMAT
        raise ScoreFileError(path, 1, f"score format {version!r} " + (
            f"is newer than this hs reads ({FORMAT}): upgrade handshake-score" if newer else "is unknown"))
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
    sources = [_source(path, n, i, v) for i, (n, v) in enumerate(header["source"], 1)]
    start_ns = header["start_ns"]
    if not isinstance(start_ns, int) or isinstance(start_ns, bool):
        raise ScoreFileError(path, at["start_ns"], "start_ns: not an integer")
    if not isinstance(header["options"], dict):
        raise ScoreFileError(path, at["options"], "options: not a JSON object")
    try:
        orchestra = Orchestra.from_dict(header["orchestra"])
    except HandshakeScoreError as e:
        raise ScoreFileError(path, at["orchestra"], f"orchestra: {e}") from None
    notes, hosts = _notes(path, number, lines[number:], len(sources))
    return Score(notes, hosts, sources, start_ns, header["options"], orchestra, str(header["tool"]))


def _source(path: str, line: int, n: int, v) -> Source:
    try:
        if v["n"] != n:
            raise ValueError(f"numbered {v['n']}, expected {n}")
        start = v["start_ns"]
        if not all(isinstance(x, int) for x in (v["size"], start if start is not None else 0)):
            raise ValueError("size and start_ns must be integers")
        return Source(str(v["name"]), v["size"], str(v["sha256"]), start)
    except (KeyError, TypeError, ValueError) as e:
        raise ScoreFileError(path, line, f"source: {e}") from None


_LIMITS = {"attempt": (1, 0xFFFFFFFF), "client_port": (0, 0xFFFF), "server_port": (0, 0xFFFF), "time_ns": (0, None)}


def _notes(path: str, header_lines: int, lines: list[str], n_sources: int) -> tuple[np.ndarray, list[str]]:
    """Parse the note lines a column at a time; on any problem find the first bad line and name it."""
    body = "\n".join(lines)
    try:
        if '"' in body or "\r" in body:  # saved by a spreadsheet: quoted fields, CRLF
            rows = list(csv.reader(io.StringIO(body)))
            cols = list(zip(*rows)) if rows else [()] * len(COLUMNS)
            if any(len(r) != len(COLUMNS) for r in rows):
                raise ValueError("field count")
        else:  # as we write it: no quoting, so one split gives every field
            fields = body.replace("\n", ",").split(",") if lines else []
            if len(fields) != len(lines) * len(COLUMNS):
                raise ValueError("field count")
            cols = [fields[i::len(COLUMNS)] for i in range(len(COLUMNS))]
        return _columns(cols, n_sources)
    except (ValueError, KeyError, IndexError, OverflowError):
        pass
    rows = list(csv.reader(io.StringIO(body)))
    for i, row in enumerate(rows):  # the slow way, to say where
        try:
            if len(row) != len(COLUMNS):
                raise ValueError(f"{len(row)} fields, expected {len(COLUMNS)}")
            _columns([[v] for v in row], n_sources)
        except (ValueError, KeyError, IndexError, OverflowError) as e:
            raise ScoreFileError(path, header_lines + 1 + i, str(e)) from None
    for i in range(1, len(rows)):
        if int(rows[i][0]) < int(rows[i - 1][0]):
            raise ScoreFileError(path, header_lines + 1 + i, "notes out of time order")
    raise ScoreFileError(path, header_lines + 1, "damaged notes")  # unreachable unless a check above is missing


def _int_column(name: str, values, missing_ok: bool = False) -> np.ndarray:
    try:
        if missing_ok:
            out = np.array([int(v) if v else NO_DELAY for v in values], np.int64)
        else:
            out = np.array(list(map(int, values)), np.int64)
    except ValueError:
        bad = next(v for v in values if not _is_int(v) and not (missing_ok and v == ""))
        raise ValueError(f"{name}: {bad!r} is not an integer") from None
    except OverflowError:
        raise ValueError(f"{name}: a value is out of range") from None
    lo, hi = _LIMITS.get(name, (None, None))
    if len(out) and lo is not None and (out.min() < lo or (hi is not None and out.max() > hi)):
        bad = out[(out < lo) | ((out > hi) if hi is not None else False)][0]
        raise ValueError(f"{name}: {bad} is out of range")
    return out


def _is_int(v: str) -> bool:
    try:
        int(v)
        return True
    except ValueError:
        return False


def _columns(cols: list, n_sources: int) -> tuple[np.ndarray, list[str]]:
    n = len(cols[0])
    notes = np.zeros(n, NOTE)
    for name in ("time_ns", "attempt", "client_port", "server_port"):
        notes[name] = _int_column(name, cols[COLUMNS.index(name)])
    for name in ("syn_to_syn_ack_ns", "syn_ack_to_ack_ns"):
        notes[name] = _int_column(name, cols[COLUMNS.index(name)], missing_ok=True)
    try:
        notes["kind"] = [KIND_CODE[k] for k in cols[1]]
    except KeyError as e:
        raise ValueError(f"kind: unknown note kind {e.args[0]!r}") from None
    try:
        notes["outcome"] = [OUTCOME_CODE[o] for o in cols[7]]
    except KeyError as e:
        raise ValueError(f"outcome: unknown outcome {e.args[0]!r}") from None
    source = _int_column("source", cols[10])
    if len(source) and (source.min() < 1 or source.max() > n_sources):
        raise ValueError(f"source: {source[(source < 1) | (source > n_sources)][0]} is not a source of the header")
    notes["source"] = source
    index: dict[str, int] = {}
    notes["client"] = [index.setdefault(h, len(index)) for h in cols[3]]
    notes["server"] = [index.setdefault(h, len(index)) for h in cols[5]]
    if "" in index:
        raise ValueError("client or server: empty")
    if n > 1 and np.any(np.diff(notes["time_ns"]) < 0):
        raise ValueError("time order")
    return notes, list(index)
