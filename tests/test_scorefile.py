"""The score file: exact round trips, pandas, and one clear line for a damaged or foreign file."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import CORPUS, ROOT, corpus_expectations
from synthetic import synthetic_score

from handshake_score.score import KIND_CODE, NO_DELAY, compose
from handshake_score.scorefile import ScoreFileError, dumps, load_score, loads, save_score, utc

HS = [sys.executable, "-m", "handshake_score"]
CAPTURES = sorted(p.name for p in CORPUS.glob("*.pcap*"))
EXAMPLE = ROOT / "captures" / "example-loopback.pcapng"


def hs(*args, **kw):
    r = subprocess.run([*HS, *map(str, args)], capture_output=True, text=True, timeout=120, **kw)
    assert "Traceback" not in r.stderr
    return r


@pytest.mark.parametrize("name", CAPTURES)
def test_round_trip_of_every_corpus_capture(name, tmp_path):
    """hs score writes the file; loading it and writing it again gives the same bytes,
    and what was loaded is what was scored, field by field."""
    out = tmp_path / "a.score"
    assert hs("score", CORPUS / name, "-o", out).returncode == 0
    text = out.read_bytes()
    loaded = load_score(out)
    save_score(loaded, tmp_path / "again.score")
    assert (tmp_path / "again.score").read_bytes() == text
    scored = compose([CORPUS / name]).score
    assert np.array_equal(loaded.notes[["time_ns", "kind", "attempt", "client_port", "server_port", "outcome",
                                        "syn_to_syn_ack_ns", "syn_ack_to_ack_ns", "source"]],
                          scored.notes[["time_ns", "kind", "attempt", "client_port", "server_port", "outcome",
                                        "syn_to_syn_ack_ns", "syn_ack_to_ack_ns", "source"]])
    for side in ("client", "server"):
        assert [loaded.hosts[i] for i in loaded.notes[side]] == [scored.hosts[i] for i in scored.notes[side]]
    expected = corpus_expectations()[name]["notes"]
    assert dict(zip(*np.unique(loaded.kinds(), return_counts=True))) == {k: v for k, v in expected.items() if v}
    assert loaded.sources[0].name == name
    assert loaded.sources[0].sha256 == hashlib.sha256((CORPUS / name).read_bytes()).hexdigest()
    assert loaded.sources[0].size == (CORPUS / name).stat().st_size


def test_times_are_exact_to_the_nanosecond(tmp_path):
    """tcp-handshake-nano.pcap: SYN->SYN-ACK exactly 0.127521774 s, SYN-ACK->ACK exactly 0.000087895 s."""
    out = tmp_path / "nano.score"
    assert hs("score", CORPUS / "tcp-handshake-nano.pcap", "-o", out).returncode == 0
    lines = out.read_text().splitlines()
    assert "# start_ns: 1418145369924505488" in lines
    assert '# start_utc: "2014-12-09T17:16:09.924505488Z"' in lines
    notes = [line.split(",") for line in lines if line[:1].isdigit()]
    assert [(n[0], n[1], n[8], n[9]) for n in notes] == [
        ("0", "syn", "127521774", "87895"),
        ("127521774", "syn-ack", "127521774", "87895"),
        ("127609669", "ack", "127521774", "87895"),
    ]
    score = load_score(out)
    assert score.start_ns + int(score.notes["time_ns"][-1]) == 1418145369924505488 + 127609669
    assert dumps(score) == out.read_text()


def test_round_trip_of_a_large_synthetic_score():
    score = synthetic_score(100_000, seed=3)
    text = dumps(score)
    again = loads(text)
    assert dumps(again) == text
    assert np.array_equal(again.notes["time_ns"], score.notes["time_ns"])
    assert (again.notes["syn_to_syn_ack_ns"] == NO_DELAY).any()  # missing delays survive as missing


def test_loads_into_pandas_with_no_code_of_ours(tmp_path):
    out = tmp_path / "a.score"
    assert hs("score", CORPUS / "http_ip4and6.pcapng", CORPUS / "tcp_refuseconnection.pcapng", "-o", out).returncode == 0
    frame = pd.read_csv(out, comment="#")
    score = load_score(out)
    assert list(frame.columns) == ["time_ns", "kind", "attempt", "client", "client_port", "server", "server_port",
                                   "outcome", "syn_to_syn_ack_ns", "syn_ack_to_ack_ns", "source"]
    assert frame["time_ns"].dtype == np.int64
    assert frame["time_ns"].tolist() == score.notes["time_ns"].tolist()
    assert frame["kind"].tolist() == list(score.kinds())
    assert set(frame["client"]) >= {"172.16.16.140", "2001:db8:1:2::1002"}
    assert set(frame["server"]) >= {"172.16.16.139", "2001:db8:1:2::1000"}
    refused = frame[frame["outcome"] == "refused"]
    assert refused["kind"].tolist() == ["syn", "rst"] and refused["syn_to_syn_ack_ns"].isna().all()
    assert sorted(set(frame["source"])) == [1, 2]


def test_composing_merges_in_time_order_and_tags_each_source(tmp_path):
    """Captures made years apart, given in any order, merge in time order; each note keeps its source."""
    names = ["latency2.pcapng", "tcp-handshake-nano.pcap", "http_ip4and6.pcapng"]
    out = tmp_path / "three.score"
    assert hs("score", *[CORPUS / n for n in names], "-o", out).returncode == 0
    score = load_score(out)
    assert [s.name for s in score.sources] == names
    times = score.notes["time_ns"]
    assert np.all(np.diff(times) >= 0)
    singles = {i + 1: compose([CORPUS / n]).score for i, n in enumerate(names)}
    assert score.start_ns == min(s.start_ns for s in singles.values())
    for source, single in singles.items():
        mine = score.notes[score.notes["source"] == source]
        assert np.array_equal(mine["time_ns"] + score.start_ns, single.notes["time_ns"] + single.start_ns)
        assert np.array_equal(mine["kind"], single.notes["kind"])
    assert len(np.unique(score.notes["attempt"])) == sum(s.attempts() for s in singles.values())
    assert sorted(np.unique(score.notes["attempt"]).tolist()) == list(range(1, score.attempts() + 1))


def test_an_overlapping_capture_is_its_own_and_the_notes_interleave(tmp_path):
    """The same capture twice: two sources at the same times, each attempt twice under its own id."""
    path = CORPUS / "resp_1_benchmark.pcap"
    score = compose([path, path]).score
    one = compose([path]).score
    assert len(score) == 2 * len(one) and score.attempts() == 2 * one.attempts()
    assert np.array_equal(score.notes["time_ns"], np.repeat(one.notes["time_ns"], 2))
    assert score.notes["source"].tolist() == [1, 2] * len(one)


def test_a_score_of_a_split_capture_equals_the_whole(tmp_path, tshark):
    """editcap cuts a capture in three; the score of the pieces has the notes of the whole, tagged by piece."""
    whole = CORPUS / "resp_1_benchmark.pcap"
    subprocess.run(["editcap", "-c", "60", whole, tmp_path / "part.pcap"], check=True, capture_output=True)
    parts = sorted(tmp_path.glob("part*.pcap"))
    assert len(parts) >= 3
    split, one = compose(parts).score, compose([whole]).score
    assert np.array_equal(split.notes[["time_ns", "kind", "attempt", "outcome"]], one.notes[["time_ns", "kind", "attempt", "outcome"]])
    assert split.notes["source"].max() == len(parts) and split.notes["source"].min() == 1


# -- damaged and foreign files ---------------------------------------------------------------------------

GOOD = None
CAPTURE_START = 1632663950158839000  # bgp-bgpsec.pcap's first packet, the start of good_text()


def good_text() -> str:
    global GOOD
    if GOOD is None:
        GOOD = dumps(compose([CORPUS / "bgp-bgpsec.pcap"]).score)
    return GOOD


def header_lines() -> int:
    return next(i for i, line in enumerate(good_text().splitlines(), 1) if line.startswith("time_ns,"))


def edit_line(n: int, change) -> str:
    lines = good_text().splitlines(keepends=True)
    lines[n - 1] = change(lines[n - 1])
    return "".join(lines)


DAMAGED = [
    ("foreign: a capture", lambda: (CORPUS / "tcp_handshake.pcapng").read_bytes(), 1, "not a handshake-score score"),
    ("foreign: a CSV", lambda: "a,b,c\n1,2,3\n", 1, "not a handshake-score score"),
    ("empty", lambda: "", 1, "not a handshake-score score"),
    ("newer format", lambda: good_text().replace("format 1", "format 7", 1), 1, "newer than this hs reads"),
    ("bad header JSON", lambda: edit_line(2, lambda s: '# tool: "hs\n'), 2, "tool: not valid JSON"),
    ("unknown header", lambda: edit_line(2, lambda s: "# colour: 1\n"), 2, "unknown header line"),
    ("start_ns not a number", lambda: edit_line(3, lambda s: '# start_ns: "soon"\n'), 3, "start_ns: not an integer"),
    ("a bad orchestra", lambda: edit_line(header_lines() - 1, lambda s: s.replace('"note":76', '"note":760')), "H-1",
     r"orchestra: \[syn\] note: 760 is outside 0-127"),
    ("no column line", lambda: "".join(good_text().splitlines(keepends=True)[: header_lines() - 1]), None, "ends inside its header"),
    ("wrong columns", lambda: edit_line(header_lines(), lambda s: s.replace("kind", "type")), "H", "column line should be"),
    ("a field missing", lambda: edit_line(header_lines() + 3, lambda s: s.rsplit(",", 1)[0] + "\n"), "H+3", "10 fields, expected 11"),
    ("a bad kind", lambda: edit_line(header_lines() + 1, lambda s: s.replace(",syn,", ",fin,", 1)), "H+1", "kind: unknown note kind 'fin'"),
    ("a bad time", lambda: edit_line(header_lines() + 1, lambda s: "soon" + s[s.index(","):]), "H+1", "time_ns: 'soon' is not an integer"),
    ("a port too big", lambda: edit_line(header_lines() + 4, lambda s: _field(s, 4, "70000")), "H+4", "client_port: 70000 is out of range"),
    ("an unknown source", lambda: edit_line(header_lines() + 1, lambda s: _field(s, 10, "9")), "H+1", "source: 9 is not a source"),
    ("out of time order", lambda: _swap_last_two(), "L", "out of time order"),
    ("cut inside a line", lambda: good_text()[: good_text().rindex(",", 0, -30)], "L", "fields, expected 11"),
    # a lone carriage return is no line end: csv's "new-line character seen in unquoted field" once escaped as
    # an internal error
    ("a lone CR in a note", lambda: edit_line(header_lines() + 1, lambda s: s.replace(",syn,", ",s\ryn,")), "H+1",
     r"carriage return"),
    ("a CR before a CRLF", lambda: edit_line(header_lines() + 2, lambda s: s.replace("\n", "\r\r\n")), "H+2",
     r"carriage return"),
    ("a lone CR in a quoted line", lambda: edit_line(header_lines() + 2, lambda s: '"' + s.replace(",", '\r",', 1)),
     "H+2", r"carriage return"),
    ("no line ends but CRs", lambda: good_text().replace("\n", "\r"), 1, r"score format '1\\r# tool.{,30}' is unknown"),
    ("a NUL byte", lambda: edit_line(header_lines() + 2, lambda s: s.replace("rst", "r\0st")), "H+2",
     r"kind: unknown note kind 'r\\x00st'"),
    ("an unclosed quote", lambda: edit_line(header_lines() + 2, lambda s: '"' + s), "H+2", r"not a CSV line"),
    # integers as a score writes them, and nothing int() would also take
    ("a tab before a time", lambda: edit_line(header_lines() + 2, lambda s: "\t" + s), "H+2",
     r"time_ns: '\\t35000' is not an integer \(no spaces"),
    ("a space after a port", lambda: edit_line(header_lines() + 2, lambda s: _field(s, 4, "44538 ")), "H+2",
     r"client_port: '44538 ' is not an integer"),
    ("leading zeros", lambda: edit_line(header_lines() + 2, lambda s: "007" + s), "H+2",
     r"time_ns: '00735000' is not an integer"),
    ("a plus sign", lambda: edit_line(header_lines() + 3, lambda s: _field(s, 2, "+2")), "H+3",
     r"attempt: '\+2' is not an integer"),
    ("an underscore", lambda: edit_line(header_lines() + 3, lambda s: _field(s, 8, "170_000")), "H+3",
     r"syn_to_syn_ack_ns: '170_000' is not an integer"),
    ("minus zero", lambda: edit_line(header_lines() + 3, lambda s: _field(s, 9, "-0")), "H+3",
     r"syn_ack_to_ack_ns: '-0' is not an integer"),
    ("other digits", lambda: edit_line(header_lines() + 2, lambda s: _field(s, 6, "\u0661\u0667\u0669")), "H+2",
     r"server_port: '\S+' is not an integer"),
    # ranges: what 64-bit times and the columns' numpy types hold
    ("start_ns beyond 64 bits", lambda: edit_line(3, lambda s: "# start_ns: 9223372036854775808\n"), 3,
     r"start_ns: 9223372036854775808 is out of range \(64-bit nanoseconds"),
    ("a note after 2262", lambda: edit_line(3, lambda s: "# start_ns: 9223372036854775000\n"), "H+2",
     r"time_ns: 35000 is out of range \(0 to 807: start_ns \+ time_ns"),
    ("a time beyond 64 bits", lambda: edit_line(header_lines() + 2, lambda s: "9223372036854775808" + s[s.index(","):]),
     "H+2", r"time_ns: 9223372036854775808 is out of range"),
    ("a huge number", lambda: edit_line(header_lines() + 2, lambda s: "9" * 5000 + s[s.index(","):]), "H+2",
     r"time_ns: 9{25}\.\.\. is out of range"),
    ("the delay that means none", lambda: edit_line(header_lines() + 3, lambda s: _field(s, 8, str(-2**63))), "H+3",
     r"syn_to_syn_ack_ns: -9223372036854775808 is out of range"),
    ("an attempt beyond 32 bits", lambda: edit_line(header_lines() + 3, lambda s: _field(s, 2, str(2**32))), "H+3",
     r"attempt: 4294967296 is out of range"),
    ("a source's start beyond 64 bits",
     lambda: edit_line(5, lambda s: s.replace('"start_ns":', '"start_ns":99999', 1)), 5, r"source: start_ns 99999\d+ is out of range"),
    ("a source's start too far from the score's",
     lambda: edit_line(5, lambda s: s.replace('"start_ns":', '"start_ns":-9', 1)), 5, r"source: start_ns -9\d+ is out of range"),
    ("a source's size not an integer", lambda: edit_line(5, lambda s: s.replace('"size":', '"size":true,"x":', 1)), 5,
     r"source: size and start_ns must be integers"),
    ("a tool not a string", lambda: edit_line(2, lambda s: "# tool: [1]\n"), 2, r"tool: not a string"),
    # addresses: nothing a terminal would act on, nothing that would break the line written again
    ("a control character in an address", lambda: edit_line(header_lines() + 2, lambda s: _field(s, 3, "\x1b[2J")),
     "H+2", r"client: '\\x1b\[2J' is not an address or a pseudonym"),
    ("a comma in a quoted address",
     lambda: edit_line(header_lines() + 2, lambda s: _field(s, 5, '"172.18.0.3,1"')), "H+2",
     r"server: '172.18.0.3,1' is not an address"),
    ("an empty address", lambda: edit_line(header_lines() + 2, lambda s: _field(s, 5, "")), "H+2",
     r"server: '' is not an address"),
]


def _field(line: str, i: int, value: str) -> str:
    fields = line.rstrip("\n").split(",")
    fields[i] = value
    return ",".join(fields) + "\n"


def _swap_last_two() -> str:
    lines = good_text().splitlines(keepends=True)
    lines[-1], lines[-2] = lines[-2], lines[-1]
    return "".join(lines)


@pytest.mark.parametrize("what, make, line, pattern", DAMAGED, ids=[d[0] for d in DAMAGED])
def test_a_damaged_or_foreign_score_is_one_line_naming_file_and_line(what, make, line, pattern, tmp_path):
    content = make()
    path = tmp_path / "bad.score"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    n_lines = len(path.read_bytes().splitlines())
    expected = {None: n_lines, "L": n_lines, "H": header_lines()}.get(line, line)
    if isinstance(line, str) and line[:2] in ("H+", "H-"):
        expected = header_lines() + int(line[1:])
    with pytest.raises(ScoreFileError) as caught:
        load_score(path)
    assert caught.value.line == expected, str(caught.value)
    # and through the command: exit 2, one line, naming file and line
    r = hs("export", path, tmp_path / "out.mid")
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and r.stderr.startswith(f"hs: error: {path}:{expected}: "), r.stderr
    import re

    assert re.search(pattern, r.stderr), r.stderr
    assert not (tmp_path / "out.mid").exists()


def test_a_missing_score_is_one_line(tmp_path):
    r = hs("export", tmp_path / "nope.score", tmp_path / "out.mid")
    assert (r.returncode, r.stderr) == (2, f"hs: error: {tmp_path / 'nope.score'}:0: no such file\n")


def test_a_score_saved_by_a_spreadsheet_still_loads(tmp_path):
    """Quoted fields and CRLF line ends, as spreadsheets write CSV, read the same notes."""
    text = good_text()
    head, _, body = text.partition("time_ns,")
    body = "time_ns," + body
    quoted = "\r\n".join(",".join(f'"{f}"' for f in line.split(",")) if line[:1].isdigit() else line
                         for line in body.splitlines())
    path = tmp_path / "sheet.score"
    path.write_text("\ufeff" + head.replace("\n", "\r\n") + quoted + "\r\n", newline="")  # with a BOM
    assert dumps(load_score(path)) == text


def test_the_bundled_sample_is_what_hs_score_makes_of_the_bundled_capture():
    r = hs("score", EXAMPLE, "-o", "again.score", "--midi", "again.mid", "--stretch", "10")
    assert r.returncode == 0, r.stderr
    assert Path("again.score").read_bytes() == (ROOT / "scores" / "sample-loopback.score").read_bytes()
    assert Path("again.mid").read_bytes() == (ROOT / "scores" / "sample-loopback.mid").read_bytes()


def test_a_capture_whose_first_record_is_not_its_earliest(tmp_path):
    """Records out of time order (as merged or multi-interface captures have them): time 0 is
    the earliest note, not the first record, so no note comes before the score's start."""
    from craft import ACK, SYN, eth, pcap, tcp_ip, udp_ip, write

    t0 = 1_700_000_000_000_000_000
    c, s = "10.0.0.1", "10.0.0.2"
    path = write(tmp_path / "unordered.pcap", pcap([
        (t0 + 5_000_000, eth(udp_ip(c, s))),                       # the first record, 5 ms after the SYN
        (t0, eth(tcp_ip(c, s, 40000, 80, SYN, 100))),
        (t0 + 7_000_000, eth(tcp_ip(s, c, 80, 40000, SYN | ACK, 900, 101))),
        (t0 + 9_000_000, eth(tcp_ip(c, s, 40000, 80, ACK, 101, 901))),
    ]))
    out = tmp_path / "u.score"
    assert hs("score", path, "-o", out).returncode == 0
    score = load_score(out)
    assert score.start_ns == t0 and score.sources[0].start_ns == t0 + 5_000_000
    assert score.notes["time_ns"].tolist() == [0, 7_000_000, 9_000_000]
    assert hs("export", out, tmp_path / "u.mid").returncode == 0


@pytest.mark.parametrize("command", ["export", "render", "plot", "play"])
@pytest.mark.parametrize("damage", ["a lone CR in a note", "start_ns beyond 64 bits", "leading zeros"])
def test_every_command_says_which_line_of_a_damaged_score(command, damage, tmp_path):
    """export, render, plot and play: one line naming the file and the line, exit 2 (a lone CR was
    csv's error and a start_ns past 64 bits play's OverflowError: both "internal error", exit 1)."""
    _, make, line, pattern = next(d for d in DAMAGED if d[0] == damage)
    path = tmp_path / "bad.score"
    path.write_bytes(make().encode())
    expected = {"H+1": header_lines() + 1, "H+2": header_lines() + 2}.get(line, line)
    out = {"export": [tmp_path / "out.mid"], "render": ["-o", tmp_path / "out.wav"], "plot": ["-o", tmp_path / "out.png"],
           "play": ["--stretch", "0.001"]}[command]
    r = hs(command, path, *out)
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and r.stderr.startswith(f"hs: error: {path}:{expected}: "), r.stderr
    import re

    assert re.search(pattern, r.stderr) and "internal error" not in r.stderr, r.stderr
    assert not any(p.name.startswith("out") for p in tmp_path.iterdir())


def test_every_score_the_project_ships_loads_and_round_trips():
    """The strict reading of integers and addresses takes every score hs has written."""
    shipped = sorted(ROOT.glob("scores/*.score")) + sorted(ROOT.glob("docs/**/*.score"))
    assert shipped
    for path in shipped:
        assert dumps(load_score(path)) == path.read_text(), path


def test_the_extremes_of_every_range_load_and_write_back(tmp_path):
    """What the checks allow, at its edges, is written and read back the same: the largest time,
    delays, attempt and port numbers, a start before 1970."""
    lines = good_text().splitlines(keepends=True)
    h = header_lines()
    lines[2] = "# start_ns: -1000\n"
    lines[3] = f'# start_utc: "{utc(-1000)}"\n'
    lines[4] = lines[4].replace(f'"start_ns":{CAPTURE_START}', '"start_ns":-1000').replace(
        utc(CAPTURE_START), utc(-1000))
    last = lines[h + 2]
    lines[h + 2] = _field(_field(_field(_field(last, 2, str(2**32 - 1)), 4, "65535"), 8, str(-(2**63) + 1)), 9, str(2**63 - 1))
    lines[h + 2] = _field(lines[h + 2], 0, str(2**63 - 1))  # the largest time_ns, 2262 less 1000 ns
    lines = lines[:h + 3]  # that note the last, so in time order
    text = "".join(lines)
    score = loads(text)
    assert score.start_ns + int(score.notes["time_ns"][-1]) == 2**63 - 1 - 1000
    assert dumps(score) == text
    save_score(score, tmp_path / "edge.score")
    assert (tmp_path / "edge.score").read_text() == text


# -- the fast reading (issue 13) and the exact one agree -----------------------------------------------------

from handshake_score import scorefile  # noqa: E402


def _both_readings(text: str):
    """The notes and hosts as the fast reading (numpy, from the bytes) and the exact one (line by line) give them."""
    fast = scorefile._fast_score(*scorefile._padded(text.encode()), "x")
    assert fast is not None, "a score as hs writes it is read the fast way"
    exact = scorefile._loads(text, "x")
    return fast, exact


def _assert_same(fast, exact):
    assert fast.notes.dtype == exact.notes.dtype
    assert np.array_equal(fast.notes, exact.notes)
    assert fast.hosts == exact.hosts  # the same order: clients by first appearance, then servers
    assert (fast.start_ns, fast.sources, fast.options, fast.tool) == (exact.start_ns, exact.sources, exact.options,
                                                                        exact.tool)
    assert fast.orchestra.as_dict() == exact.orchestra.as_dict()


@pytest.mark.parametrize("name", CAPTURES)
def test_the_fast_and_exact_readings_agree_on_every_corpus_score(name):
    _assert_same(*_both_readings(dumps(compose([CORPUS / name]).score)))


def test_the_fast_and_exact_readings_agree_on_a_large_synthetic_score(tmp_path):
    """300,000 notes: more than one of the fast reading's blocks of lines; IPv4 and IPv6 hosts, missing delays."""
    score = synthetic_score(300_000, seed=5)
    text = dumps(score)
    fast, exact = _both_readings(text)
    _assert_same(fast, exact)
    assert (fast.notes["syn_to_syn_ack_ns"] == NO_DELAY).any() and len(fast.hosts) == len(score.hosts)
    path = tmp_path / "big.score"
    path.write_text(text)
    assert np.array_equal(load_score(path).notes, exact.notes)


def test_a_score_hs_did_not_write_byte_for_byte_still_reads_the_same():
    """An address no ASCII holds (a pseudonym in another script) is the exact reading's: the same score."""
    text = good_text().replace("172.18.0.3", "h\u00f4te-3")
    assert "h\u00f4te-3" in text
    assert scorefile._fast_score(*scorefile._padded(text.encode()), "x") is None
    assert "h\u00f4te-3" in loads(text).hosts


def test_two_hosts_with_one_hash_are_never_taken_for_one():
    """The fast reading numbers hosts by a hash, then checks every field against its host byte for byte."""
    buf, lo, hi = scorefile._padded(b"10.0.0.1,10.0.0.20,10.0.0.1,")
    _, words = scorefile._fast_host(scorefile._words(buf), np.array([lo, lo + 9, lo + 19]),
                                    np.array([lo + 8, lo + 18, lo + 27]))
    labels, hosts = scorefile._fast_hosts(np.array([7, 9, 7], np.uint64), words)
    assert labels.tolist() == [0, 1, 0] and hosts == ["10.0.0.1", "10.0.0.20"]
    assert scorefile._fast_hosts(np.array([7, 7, 7], np.uint64), words) is None  # collision


BIG_DAMAGES = [  # each as the exact reading says it
    ("a field missing", lambda s: s.rsplit(",", 1)[0] + "\n", "10 fields, expected 11"),
    ("a field too many", lambda s: s.replace("\n", ",1\n"), "12 fields, expected 11"),
    ("a lone CR", lambda s: s.replace(",", ",\r", 1), "carriage return"),
    ("CRLF", lambda s: s.replace("\n", "\r\n"), None),  # a spreadsheet's line end: read, not refused
    ("leading zeros", lambda s: "0" + s, "is not an integer"),
    ("a plus sign", lambda s: _field(s, 2, "+" + s.split(",")[2]), "is not an integer"),
    ("minus zero", lambda s: _field(s, 9, "-0"), "is not an integer"),
    ("a minus alone", lambda s: _field(s, 8, "-"), "is not an integer"),
    ("a port too big", lambda s: _field(s, 6, "65536"), "out of range"),
    ("attempt 0", lambda s: _field(s, 2, "0"), "out of range"),
    ("a negative time", lambda s: _field(s, 0, "-1"), "out of range"),
    ("an unknown source", lambda s: _field(s, 10, "3"), "not a source of the header"),
    ("a bad kind", lambda s: _field(s, 1, "synack"), "unknown note kind"),
    ("a kind's prefix", lambda s: _field(s, 1, "sy"), "unknown note kind"),
    ("a bad outcome", lambda s: _field(s, 7, "completed"), "unknown outcome"),
    ("a NUL in an outcome", lambda s: _field(s, 7, "complete\0"), "unknown outcome"),
    ("a space in an address", lambda s: _field(s, 3, "10.0.0 .1"), "not an address"),
    ("a quote in an address", lambda s: _field(s, 5, "10.0.0.1\"x"), None),  # csv: damaged, says where
    ("a tab in an address", lambda s: _field(s, 5, "::1\t"), "not an address"),
    ("an empty address", lambda s: _field(s, 3, ""), "not an address"),
    ("an empty line", lambda s: "\n" + s, "1 fields, expected 11"),
]


@pytest.mark.parametrize("where", ["first", "middle", "last"])
@pytest.mark.parametrize("what, damage, pattern", BIG_DAMAGES, ids=[d[0] for d in BIG_DAMAGES])
def test_a_damage_anywhere_is_the_exact_readings_one_line(what, damage, pattern, where, tmp_path):
    """load_score's fast reading gives up and the exact one names the line: the same one-line error as the
    exact reading alone, whether the damage is in the first note, one in the middle or the last."""
    lines = good_text().splitlines(keepends=True)
    column = header_lines() - 1
    i = {"first": column + 1, "middle": (column + len(lines)) // 2, "last": len(lines) - 1}[where]
    lines[i] = damage(lines[i])
    text = "".join(lines)
    path = tmp_path / "bad.score"
    path.write_bytes(text.encode())
    try:
        scorefile._loads(text, str(path))
        expected = None
    except ScoreFileError as e:
        expected = str(e)
    if pattern is None and expected is None:  # read alike, not refused
        assert np.array_equal(load_score(path).notes, scorefile._loads(text, "x").notes)
        return
    assert expected is not None and f"{path}:{i + 1}: " in expected
    if pattern:
        assert pattern in expected, expected
    with pytest.raises(ScoreFileError) as caught:
        load_score(path)
    assert (str(caught.value), caught.value.line) == (expected, i + 1)


@pytest.mark.parametrize("what, where, pattern", [("leading zeros", 2**18 + 1, "time_ns: '0"),
                                                  ("a field missing", -1, "10 fields, expected 11")])
def test_a_damage_deep_in_a_large_score_is_named_by_its_line(what, where, pattern, tmp_path):
    """270,000 notes (about 23 MB: several of the fast reading's blocks of lines), damaged deep inside or in the last."""
    text = dumps(synthetic_score(270_000, seed=2))
    lines = text.splitlines(keepends=True)
    column = next(i for i, line in enumerate(lines) if line.startswith("time_ns,"))
    i = column + where if where > 0 else len(lines) - 1
    damage = next(d for name, d, _ in BIG_DAMAGES if name == what)
    lines[i] = damage(lines[i])
    path = tmp_path / "bad.score"
    path.write_text("".join(lines))
    with pytest.raises(ScoreFileError) as caught:
        load_score(path)
    assert caught.value.line == i + 1 and str(caught.value).startswith(f"{path}:{i + 1}: {pattern}"), str(caught.value)


# -- load_attempts: what hs rhythm reads of a score -----------------------------------------------------------

from handshake_score.rhythm import calls_of  # noqa: E402
from handshake_score.rhythm.words import read_rhythm_input  # noqa: E402
from handshake_score.scorefile import load_attempts  # noqa: E402


def _assert_attempts_are_the_calls(attempts, score, by_name=False):
    """load_attempts gives what rhythm's calls_of makes of the whole score, column for column (``by_name``:
    the same host names, numbered as load_attempts meets them, which is the same numbering unless an
    attempt's later line names a host no first line does)."""
    calls = calls_of(score)
    assert attempts is not None
    assert attempts._fields == calls._fields
    if by_name:
        for side in ("client", "server"):
            assert [attempts.hosts[i] for i in getattr(attempts, side).tolist()] == \
                [calls.hosts[i] for i in getattr(calls, side).tolist()]
        attempts = attempts._replace(client=calls.client, server=calls.server, hosts=calls.hosts)
    for name, mine, theirs in zip(calls._fields, attempts, calls):
        if isinstance(theirs, np.ndarray):
            assert mine.dtype == theirs.dtype and np.array_equal(mine, theirs), name
        else:
            assert mine == theirs, name


@pytest.mark.parametrize("name", CAPTURES)
def test_load_attempts_gives_the_calls_of_every_corpus_score(name, tmp_path):
    save_score(compose([CORPUS / name]).score, tmp_path / "a.score")
    _assert_attempts_are_the_calls(load_attempts(tmp_path / "a.score"), load_score(tmp_path / "a.score"))


def test_load_attempts_on_a_large_score_and_a_thinned_one(tmp_path):
    """300,000 notes (several blocks of lines; IPv4 and IPv6, missing delays), then the same with every
    third attempt left out (attempt numbers with gaps) and the SYN-ACKs of every other one."""
    score = synthetic_score(300_000, seed=7)
    save_score(score, tmp_path / "a.score")
    _assert_attempts_are_the_calls(load_attempts(tmp_path / "a.score"), load_score(tmp_path / "a.score"))
    notes = score.notes
    kept = score.with_notes((notes["attempt"] % 3 != 0) & ((notes["kind"] != KIND_CODE["syn-ack"])
                                                           | (notes["attempt"] % 2 == 0)))
    assert np.diff(np.unique(kept.notes["attempt"])).max() > 1
    save_score(kept, tmp_path / "thin.score")
    _assert_attempts_are_the_calls(load_attempts(tmp_path / "thin.score"), load_score(tmp_path / "thin.score"))


def test_load_attempts_of_an_empty_score(tmp_path):
    score = compose([CORPUS / "bgp-bgpsec.pcap"]).score
    save_score(score.with_notes(np.zeros(len(score.notes), bool)), tmp_path / "empty.score")
    a = load_attempts(tmp_path / "empty.score")
    assert a is not None and len(a.time_ns) == 0 and a.hosts == [] and a.span_ns == 0


def test_attempt_numbers_out_of_order_are_load_scores_to_read(tmp_path):
    """Attempts numbered otherwise than in the order of their first notes: load_attempts gives up, and hs
    rhythm's reading falls back to the whole score, whose calls are still right."""
    lines = good_text().splitlines(keepends=True)
    body = header_lines()
    first = {}
    for i in range(body, len(lines)):
        first.setdefault(lines[i].split(",")[2], i)
    a, b = list(first)[:2]  # the first two attempts' numbers, swapped on every line
    swap = {a: b, b: a}
    lines[body:] = [_field(line, 2, swap.get(line.split(",")[2], line.split(",")[2])) for line in lines[body:]]
    path = tmp_path / "swapped.score"
    path.write_text("".join(lines))
    assert load_attempts(path) is None
    read = read_rhythm_input([path])
    assert read.notes is not None and np.array_equal(calls_of(read).time_ns, calls_of(load_score(path)).time_ns)


# the column each of BIG_DAMAGES damages (None: a line's shape)
_DAMAGED_COLUMN = {"a field missing": None, "a field too many": None, "a lone CR": 1, "CRLF": 10,
                   "leading zeros": 0, "a plus sign": 2, "minus zero": 9, "a minus alone": 8, "a port too big": 6,
                   "attempt 0": 2, "a negative time": 0, "an unknown source": 10, "a bad kind": 1,
                   "a kind's prefix": 1, "a bad outcome": 7, "a NUL in an outcome": 7, "a space in an address": 3,
                   "a quote in an address": 5, "a tab in an address": 5, "an empty address": 3, "an empty line": None}


@pytest.mark.parametrize("where", ["first", "middle", "last"])
@pytest.mark.parametrize("what, damage", [d[:2] for d in BIG_DAMAGES], ids=[d[0] for d in BIG_DAMAGES])
def test_load_attempts_checks_every_field_it_reads(what, damage, where, tmp_path):
    """A damage in a field load_attempts reads (time, kind and attempt on every line; the attempt's own
    columns on its first line) makes it give up, and hs rhythm names the line as load_score does; a
    damage in a field it does not read changes nothing it gives."""
    lines = good_text().splitlines(keepends=True)
    column_line = header_lines() - 1
    i = {"first": column_line + 1, "middle": (column_line + len(lines)) // 2, "last": len(lines) - 1}[where]
    number = lines[i].split(",")[2]
    attempts_first = all(line.split(",")[2] != number for line in lines[column_line + 1:i])
    lines[i] = damage(lines[i])
    path = tmp_path / "bad.score"
    path.write_bytes("".join(lines).encode())
    column = _DAMAGED_COLUMN[what]
    if column is None or column in (0, 1, 2) or (attempts_first and column in (3, 5, 6, 7, 8)):
        assert load_attempts(path) is None
        try:
            expected = load_score(path)
        except ScoreFileError as e:
            with pytest.raises(ScoreFileError) as caught:
                read_rhythm_input([path])
            assert str(caught.value) == str(e) and caught.value.line == i + 1
        else:  # not a fault (a lone CR ends a field as CRLF does): read whole, the same calls
            _assert_attempts_are_the_calls(calls_of(read_rhythm_input([path])), expected)
    else:
        good = tmp_path / "good.score"
        good.write_text(good_text())
        _assert_attempts_are_the_calls(load_attempts(path), load_score(good))


def test_load_attempts_never_disagrees_with_load_score_on_a_damaged_score(tmp_path):
    """500 scores, each with one character put in, taken out or changed anywhere among its notes: whenever
    load_attempts reads one that load_score reads too, it gives the calls of load_score's notes; when it
    gives up, hs rhythm's reading gives load_score's score or its one-line error."""
    import random

    rng = random.Random(13)
    text = good_text()
    body = len(text) - len(text.split("\ntime_ns,", 1)[1].split("\n", 1)[1])  # where the notes start
    path = tmp_path / "fuzzed.score"
    gave_up = read_alike = 0
    for _ in range(500):
        at = rng.randrange(body, len(text))
        char = rng.choice("0123456789,-\n\r.:ax\"")
        fuzzed = rng.choice([text[:at] + char + text[at:], text[:at] + text[at + 1:],
                             text[:at] + char + text[at + 1:]])
        path.write_text(fuzzed)
        attempts = load_attempts(path)
        try:
            score, error = load_score(path), None
        except ScoreFileError as e:
            score, error = None, str(e)
        if attempts is None:
            gave_up += 1
            try:
                read = read_rhythm_input([path])
                assert score is not None and np.array_equal(read.notes, score.notes)
            except ScoreFileError as e:
                assert str(e) == error and "\n" not in str(e)
        elif score is not None:
            read_alike += 1
            _assert_attempts_are_the_calls(attempts, score, by_name=True)
    assert gave_up > 100 and read_alike > 50  # both ways taken
