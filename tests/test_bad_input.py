"""Bad input on the command line: one line on stderr naming the file and the
problem, exit code 2, never a traceback; a capture cut short at its tail is
scored up to the cut with a warning (exit 0), or refused with ``--strict``."""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from craft import ACK, SYN, Pcapng, block, eth, pcap, pcap_header, tcp_ip, udp_ip, write
from handshake_score.errors import CaptureError
from handshake_score.sources import CaptureReader

T0 = 1_700_000_000_123_456_789
C, S = "10.0.0.1", "10.0.0.2"


def handshake(t0=T0, cport=40000):
    """SYN, SYN-ACK, ACK (Ethernet frames) of one complete handshake."""
    return [(t0, eth(tcp_ip(C, S, cport, 80, SYN, 100))),
            (t0 + 1_000_000, eth(tcp_ip(S, C, 80, cport, SYN | ACK, 900, 101))),
            (t0 + 2_000_000, eth(tcp_ip(C, S, cport, 80, ACK, 101, 901)))]


def hs(*args, limit_memory=False):
    cmd = [sys.executable, "-m", "handshake_score", "score", "--no-write", *map(str, args)]
    pre = (lambda: resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))) if limit_memory else None
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, preexec_fn=pre)
    assert "Traceback" not in r.stdout + r.stderr
    return r


def fails(path, *patterns, args=()):
    """``hs score path`` exits 2 with one stderr line naming ``path`` and matching ``patterns``."""
    r = hs(path, *args)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].strip(), r.stderr
    assert str(path) in lines[0]
    problem = lines[0].split(str(path), 1)[1]  # what follows the file's name
    for p in patterns:
        assert re.search(p, problem, re.I), lines[0]
    assert "internal error" not in lines[0]
    return lines[0]


# --- not a capture, nothing to read --------------------------------------------

def test_text_file(tmp_path):
    fails(write(tmp_path / "notes.pcap", b"just some text, not a capture\n" * 20), r"not a capture")


def test_other_binary(tmp_path):
    fails(write(tmp_path / "image.pcapng", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4), r"not a capture")


def test_empty_file(tmp_path):
    fails(write(tmp_path / "empty.pcap", b""), r"\bempty\b")


def test_missing_file(tmp_path):
    fails(tmp_path / "nowhere.pcap", r"no such file")


def test_dangling_symlink(tmp_path):
    (tmp_path / "link.pcap").symlink_to(tmp_path / "gone.pcap")
    fails(tmp_path / "link.pcap", r"no such file")


def test_directory(tmp_path):
    fails(tmp_path, r"directory")


def test_error_names_the_bad_file_among_good_ones(tmp_path):
    good = write(tmp_path / "good.pcap", pcap(handshake(), 1, nano=True))
    bad = tmp_path / "missing.pcap"
    line = fails(bad, r"no such file", args=[good])
    assert str(good) not in line


# --- cut short --------------------------------------------------------------------

@pytest.mark.parametrize("fmt,size", [("pcap", 10), ("pcap", 23), ("pcapng", 10), ("pcapng", 20)])
def test_cut_inside_the_file_header(tmp_path, fmt, size):
    """Nothing intact to score: an error even without --strict."""
    n = Pcapng().section("<")
    n.interface(1)
    data = pcap(handshake(), 1, nano=True) if fmt == "pcap" else n.bytes()
    fails(write(tmp_path / f"cut.{fmt}", data[:size]), r"cut|truncat")


def _pcap_cut(cut_in):
    """Two handshakes then one more record cut in its header or data:
    (bytes, offset where the cut record starts, intact records)."""
    recs = handshake() + handshake(T0 + 10**9, 40001)
    whole = pcap(recs, 1, nano=True)
    extra = pcap([(T0 + 2 * 10**9, eth(udp_ip(C, S)))], 1, nano=True)[24:]
    return whole + extra[:8 if cut_in == "header" else 30], len(whole), len(recs)


def _pcapng_cut(cut_in):
    n = Pcapng().section("<")
    i = n.interface(1, tsresol=9)
    for t, f in handshake() + handshake(T0 + 10**9, 40001):
        n.epb(i, t, f)
    n.unknown()
    whole = n.bytes()
    n.epb(i, T0 + 2 * 10**9, eth(udp_ip(C, S)))
    extra = n.blocks[-1]
    keep = {"header": 6, "body": 40, "trailer": len(extra) - 4}[cut_in]
    return whole + extra[:keep], len(whole), 6


CUTS = [("pcap", "header"), ("pcap", "data"), ("pcapng", "header"), ("pcapng", "body"), ("pcapng", "trailer")]


@pytest.mark.parametrize("fmt,cut_in", CUTS)
def test_truncated_tail_is_scored_with_a_warning(tmp_path, fmt, cut_in):
    data, at, intact = (_pcap_cut if fmt == "pcap" else _pcapng_cut)(cut_in)
    path = write(tmp_path / f"cut.{fmt}", data)

    reader = CaptureReader(str(path))
    segments = sum(len(c) for c in reader)
    assert (reader.packets, segments, reader.truncated_at) == (intact, 6, at)

    r = hs(path, "--json")
    assert r.returncode == 0
    summary = json.loads(r.stdout)
    assert summary["packets"] == intact
    assert summary["handshakes"]["complete"] == 2
    assert summary["notes"]["syn"] == summary["notes"]["syn-ack"] == summary["notes"]["ack"] == 2
    warning = r.stderr.splitlines()
    assert len(warning) == 1 and str(path) in warning[0] and re.search(r"warning", warning[0], re.I)
    assert re.search(rf"\bbyte {at}\b", warning[0]), warning[0]  # where the intact part ends

    line = fails(path, r"cut|truncat", rf"\b{at}\b", args=["--strict"])
    assert "warning" not in line.lower()
    with pytest.raises(CaptureError) as e:
        list(CaptureReader(str(path), strict=True))
    assert str(path) in str(e.value) and str(at) in str(e.value)


def test_cut_record_claiming_gigabytes(tmp_path):
    """A record header claiming 4 GB in a 9 MB file (longer than a default chunk)
    is a cut or corrupt record: reported in one line, not allocated (the command
    runs with 3 GB of address space)."""
    rec = struct.pack("<IIII", 1, 0, 0xFFFFFF00, 0xFFFFFF00)
    path = write(tmp_path / "huge.pcap", pcap_header(1, snaplen=0xFFFFFFFF) + rec + b"\0" * (9 << 20))
    r = hs(path, limit_memory=True)
    lines = r.stderr.splitlines()
    assert r.returncode in (0, 2) and len(lines) == 1 and str(path) in lines[0], r.stderr
    assert re.search(r"corrupt|cut|truncat", lines[0]) and "internal error" not in lines[0]


# --- unsupported link types, corrupt pcapng ---------------------------------------

def test_unsupported_link_type_pcap(tmp_path):
    path = write(tmp_path / "bluetooth.pcap", pcap([(T0, b"\x02\x00" + b"\0" * 30)], 187, nano=True))
    line = fails(path, r"link type", r"\b187\b", r"Bluetooth", r"--reader tshark", args=("--reader", "fast"))
    assert "IEEE 802.11" not in line  # a link type hs reads itself is never named as one it does not


def test_unsupported_link_type_pcapng(tmp_path):
    n = Pcapng().section("<")
    i = n.interface(1)
    j = n.interface(189)  # USB Linux
    n.epb(i, T0 // 1000 * 1000, eth(tcp_ip(C, S, 1, 2, SYN, 3)))
    n.epb(j, T0 // 1000 * 1000, b"\0" * 48)
    fails(write(tmp_path / "usb.pcapng", n.bytes()), r"link type", r"\b189\b", args=("--reader", "fast"))


def _ng_with(bad: bytes) -> tuple[bytes, int]:
    """A handshake, then ``bad``, then more intact blocks; and where ``bad`` starts."""
    n = Pcapng().section("<")
    i = n.interface(1, tsresol=9)
    for t, f in handshake():
        n.epb(i, t, f)
    at = len(n.bytes())
    n.raw(bad)
    n.epb(i, T0 + 10**9, eth(udp_ip(C, S)))
    return n.bytes(), at


def _retail(blk: bytes, trailer: int) -> bytes:
    return blk[:-4] + struct.pack("<I", trailer)


EPB = block("<", 6, struct.pack("<IIIII", 0, 0, 0, 4, 4) + b"abcd")  # a valid 36-byte EPB
CORRUPT = {
    "trailer-differs": (_retail(EPB, 40), r"trailing"),
    "trailer-zero": (_retail(EPB, 0), r"trailing"),
    "length-not-multiple-of-4": (struct.pack("<II", 6, 30) + b"\0" * 22, r"length 30\b"),
    "length-below-12": (struct.pack("<III", 6, 8, 8), r"length 8\b"),
    "length-zero": (struct.pack("<III", 6, 0, 0), r"length 0\b"),
    "undefined-interface": (block("<", 6, struct.pack("<IIIII", 7, 0, 0, 4, 4) + b"abcd"), r"interface 7\b"),
    "caplen-beyond-block": (block("<", 6, struct.pack("<IIIII", 0, 0, 0, 400, 400) + b"abcd"),
                            r"captured length 400\b"),
}


@pytest.mark.parametrize("case", list(CORRUPT))
def test_corrupt_pcapng_block(tmp_path, case):
    bad, pattern = CORRUPT[case]
    data, at = _ng_with(bad)
    path = write(tmp_path / f"{case}.pcapng", data)
    fails(path, r"corrupt", pattern, rf"at byte {at}\b")
    fails(path, r"corrupt", pattern, args=["--strict"])


def test_corrupt_section_header(tmp_path):
    """A section header whose byte-order magic is neither order, or whose length
    is not a multiple of 4."""
    good = _ng_with(b"")[0]
    bom = good[:8] + b"\x01\x02\x03\x04" + good[12:]
    fails(write(tmp_path / "bom.pcapng", bom), r"corrupt|not a capture")
    odd = good[:4] + struct.pack("<I", 30) + good[8:]
    fails(write(tmp_path / "odd.pcapng", odd), r"corrupt", r"\b30\b")


# --- impossible times: what hs score writes, hs loads ---------------------------------------------

def _two_interfaces(tsoffset: int) -> bytes:
    """A handshake on an interface with no offset, and a SYN on one whose ``if_tsoffset`` is ``tsoffset`` s."""
    n = Pcapng().section("<")
    plain, shifted = n.interface(1, tsresol=9), n.interface(1, tsresol=9, tsoffset=tsoffset)
    for t, f in handshake():
        n.epb(plain, t, f)
    n.epb(shifted, 0, eth(tcp_ip(C, S, 40001, 80, SYN, 500)), ticks=T0)  # 2023 less the offset
    return n.bytes()


@pytest.mark.parametrize("tsoffset", [-9_000_000_000, -1_800_000_000, -(2**63)])
def test_a_time_before_1970_is_refused(tmp_path, tsoffset):
    """A large negative if_tsoffset put a packet in 1684 beside others in 2023: hs score exited 0 with
    note times wrapped round int64 (negative, out of order) and hs export then refused the score.
    No capture holds a time before 1970: one line naming the file, the problem and the offset."""
    path = write(tmp_path / "offset.pcapng", _two_interfaces(tsoffset))
    line = fails(path, r"before 1970", r"if_tsoffset", r"1970-2262")
    assert str(tsoffset) in line or tsoffset == -(2**63)


@pytest.mark.parametrize("tsoffset", [-1_000_000_000, -1, 0, 10**9, 5_000_000_000, 7_500_000_000])
def test_whatever_hs_score_writes_hs_loads(tmp_path, tsoffset):
    """Any if_tsoffset that keeps the times within 1970-2262 is scored, and the score exports; a pcap's
    32-bit seconds (to 2106) cannot leave that range."""
    captures = [write(tmp_path / "offset.pcapng", _two_interfaces(tsoffset)),
                write(tmp_path / "late.pcap", pcap(handshake((2**32 - 1) * 10**9), 1, nano=True))]
    out = tmp_path / "s.score"
    r = subprocess.run([sys.executable, "-m", "handshake_score", "score", *map(str, captures), "-o", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "-m", "handshake_score", "export", str(out), str(tmp_path / "s.mid"),
                        "--stretch", "1e-9"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    from handshake_score.scorefile import load_score

    score = load_score(out)
    assert (score.notes["time_ns"] >= 0).all() and len(score) == 7  # two handshakes and the SYN


# --- claimed lengths: allocate what the file holds, not what a record claims ------------------------

def _peak(path) -> tuple[CaptureReader, int]:
    import tracemalloc

    tracemalloc.start()
    try:
        reader = CaptureReader(str(path))
        for _ in reader:
            pass
        return reader, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("fmt", ["pcapng", "pcap"])
def test_a_small_file_claiming_64_mib_allocates_nothing_for_it(tmp_path, fmt):
    """152 bytes whose one packet record claims almost 64 MiB (within the format's limit, so not
    corrupt but cut short): the reader allocated 80 MiB for it. Now its chunk buffer (2 MiB) only."""
    claim = (1 << 26) - 4
    if fmt == "pcapng":
        n = Pcapng().section("<")
        n.interface(1, tsresol=9)
        data = n.bytes() + struct.pack("<IIIIIII", 6, claim, 0, 0, 0, 60, 60)
    else:  # a whole first record, so the claim comes after bytes already read
        data = pcap(handshake()[:1], 1, nano=True, snaplen=1 << 26) + struct.pack("<IIII", 1, 0, claim, claim)
    data += b"\0" * (152 - len(data))
    path = write(tmp_path / f"claim.{fmt}", data)
    reader, peak = _peak(path)
    assert reader.truncated_at is not None and reader.truncated_at < 152
    assert peak < 3 << 20, f"{peak:,} bytes allocated for a {len(data)}-byte file"
    r = hs(path)
    assert r.returncode == 0 and "cut short" in r.stderr and str(path) in r.stderr


@pytest.mark.parametrize("fmt", ["pcapng", "pcap"])
def test_a_record_at_the_formats_limit_still_reads(tmp_path, fmt):
    """A real record as long as the format allows (a 64 MiB pcapng block; a pcap record of its
    snap length, 64 MiB) is read, with the handshake around it, in about that much memory."""
    big = eth(tcp_ip(C, S, 40000, 80, SYN, 100))
    if fmt == "pcapng":
        n = Pcapng().section("<")
        i = n.interface(1, tsresol=9)
        n.epb(i, T0, big + b"\0" * ((1 << 26) - 44 - len(big)))  # 28 + data + 12 (epb_flags) + 4 = 64 MiB
        assert len(n.blocks[-1]) == 1 << 26
        for t, f in handshake()[1:]:
            n.epb(i, t, f)
        data = n.bytes()
    else:
        first = (T0, big + b"\0" * ((1 << 26) - len(big)))
        data = pcap([first, *handshake()[1:]], 1, nano=True, snaplen=1 << 26)
    path = write(tmp_path / f"big.{fmt}", data)
    reader, peak = _peak(path)
    assert (reader.packets, reader.truncated_at) == (3, None)
    assert peak < (1 << 26) + (8 << 20), f"{peak:,} bytes allocated"
    r = hs(path, "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["handshakes"]["complete"] == 1, r.stderr


# --- a run killed while writing ------------------------------------------------------------------

def _parts(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".part"))


def test_a_part_file_left_by_a_killed_run_is_removed_by_the_next(tmp_path):
    """hs export killed (SIGKILL: no clean-up runs) while it writes leaves its .part file; the next
    write to the same file removes it, as its process is gone and its lock free."""
    from synthetic import synthetic_score

    from handshake_score.scorefile import save_score

    save_score(synthetic_score(300_000), tmp_path / "big.score")
    export = [sys.executable, "-m", "handshake_score", "export", str(tmp_path / "big.score"), str(tmp_path / "out.mid")]
    proc = subprocess.Popen(export, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not _parts(tmp_path):  # it is writing now
        assert proc.poll() is None and time.monotonic() < deadline, "the export never started writing"
        time.sleep(0.001)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    left = _parts(tmp_path)
    assert left == [f".out.mid.{proc.pid}.{left[0].split('.')[-2]}.part"] and not (tmp_path / "out.mid").exists()
    r = subprocess.run(export, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.score", "out.mid"]


WRITER = """
import sys, time
from handshake_score.files import atomic_write
with atomic_write(sys.argv[1], force=True) as f:
    f.write(b"half")
    f.flush()
    print("writing", flush=True)
    time.sleep(120)
"""


def test_a_write_under_way_is_never_taken_for_a_stale_one(tmp_path):
    """Two runs write the same file: one alive (its .part is kept), one killed and not yet waited for
    by its parent, a zombie (its .part is removed). When the live one is gone too, the next write
    removes its .part as well."""
    from handshake_score.files import atomic_write

    target = tmp_path / "log.csv"
    alive, killed = (subprocess.Popen([sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE, text=True)
                     for _ in range(2))
    try:
        for p in (alive, killed):
            assert p.stdout.readline() == "writing\n"
        parts = {p.pid: f for f in _parts(tmp_path) for p in (alive, killed) if f".{p.pid}." in f}
        assert len(parts) == 2
        os.kill(killed.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{killed.pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0] != b"Z":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        with atomic_write(target, force=True) as f:
            f.write(b"whole")
        assert _parts(tmp_path) == [parts[alive.pid]] and target.read_bytes() == b"whole"
        assert (tmp_path / parts[alive.pid]).read_bytes() == b"half"
    finally:
        for p in (alive, killed):
            p.kill()
            p.wait()
    with atomic_write(target, force=True) as f:
        f.write(b"again")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.csv"]


# --- a score that falls silent for months ------------------------------------------------------

def _far_score(tmp_path) -> Path:
    """A handshake, then a SYN 90 days later."""
    path = write(tmp_path / "far.pcap", pcap(handshake() + [(T0 + 90 * 86400 * 10**9, eth(tcp_ip(C, S, 40001, 80, SYN, 5)))],
                                             1, nano=True))
    out = tmp_path / "far.score"
    r = subprocess.run([sys.executable, "-m", "handshake_score", "score", str(path), "-o", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return out


def test_play_says_so_before_a_silence_of_months(tmp_path):
    """hs play of a score whose next note is 90 days away waited without a word. Now a line before
    playing names the silence and --max-gap; Ctrl-C stops it as ever. With --max-gap, no such line."""
    score = _far_score(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "handshake_score", "play", str(score)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    struck = [proc.stdout.readline() for _ in range(3)]  # the handshake, then the silence
    assert all(" -> " in line for line in struck), struck
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "Traceback" not in err
    first = err.splitlines()[0]
    assert re.fullmatch(r"hs: nothing sounds for 90 days 0 h before note 4; --max-gap S shortens every silence "
                        r"to S seconds", first), err
    r = subprocess.run([sys.executable, "-m", "handshake_score", "play", str(score), "--max-gap", "0.5"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "nothing sounds" not in r.stderr and r.stdout.count(" -> ") == 4, r.stderr


def test_the_progress_line_counts_down_to_the_next_note(tmp_path):
    """On a terminal the progress line says how long until the next note."""
    import pty
    import select

    score = _far_score(tmp_path)
    main, side = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "handshake_score", "play", str(score)], stdout=subprocess.DEVNULL,
                            stderr=side)
    os.close(side)
    shown, deadline = b"", time.monotonic() + 20
    while b"next note in" not in shown and time.monotonic() < deadline:
        if select.select([main], [], [], 0.1)[0]:
            shown += os.read(main, 65536)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)
    os.close(main)
    text = shown.decode()
    assert re.search(r"next note in 89 days 23 h|next note in 90 days 0 h", text), text
    assert re.search(r"\(90 days 0 h left\)", text), text


def test_times_far_past_either_end_of_the_score_select_all_or_nothing():
    score = str(Path(__file__).resolve().parent.parent / "scores" / "sample-loopback.score")
    for given, strikes in (("--from=-9999999999", 14), ("--from=99999999999999", 0), ("--until=1e30", 14)):
        r = subprocess.run([sys.executable, "-m", "handshake_score", "play", score, "--max-gap", "0.01", given],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and f"console    {strikes} strikes" in r.stderr, (given, r.stderr)
