"""Bad input on the command line: one line on stderr naming the file and the
problem, exit code 2, never a traceback; a capture cut short at its tail is
scored up to the cut with a warning (exit 0), or refused with ``--strict``."""

from __future__ import annotations

import json
import re
import resource
import struct
import subprocess
import sys

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
    path = write(tmp_path / "wifi.pcap", pcap([(T0, b"\x08\x00" + b"\0" * 30)], 105, nano=True))
    fails(path, r"link type", r"\b105\b")


def test_unsupported_link_type_pcapng(tmp_path):
    n = Pcapng().section("<")
    i = n.interface(1)
    j = n.interface(127)  # radiotap
    n.epb(i, T0 // 1000 * 1000, eth(tcp_ip(C, S, 1, 2, SYN, 3)))
    n.epb(j, T0 // 1000 * 1000, b"\0\0\x08\0" + b"\0" * 40)
    fails(write(tmp_path / "radiotap.pcapng", n.bytes()), r"link type", r"\b127\b")


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
