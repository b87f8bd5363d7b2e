"""Fuzzing the reader: random bytes, random bytes behind valid headers, and
mutated real and crafted captures. Whatever the input, CaptureReader and
score_files either work or raise CaptureError naming the file; nothing else.

The process's address space is capped while fuzzing, so a reader that
believes a corrupt length and allocates gigabytes fails with MemoryError
instead of exhausting the machine.
"""

from __future__ import annotations

import resource
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from craft import (ACK, ETH_ARP, ETH_QINQ, ETH_VLAN, FCS_4, IP_OPTIONS, SYN, Pcapng, arp, eth, ipv4, ipv6, null,
                   pcap, pcap_header, sll, sll2, tcp, tcp_ip, udp_ip, write)
from handshake_score.errors import CaptureError
from handshake_score.segments import SEGMENT, SEGMENT_IN_CONTEXT
from handshake_score.sources import CaptureReader
from handshake_score.sources.decode import decode
from handshake_score.sources.decoding import Decapsulation
from handshake_score.sources.records import Records
from handshake_score.summary import score_files
from test_decapsulation import CASES, OUT4, gre, in4, inner

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
T0 = 1_700_000_000_123_456_000
V4, V6 = ("10.0.0.1", "10.0.0.2"), ("2001:db8::1", "2001:db8::2")


def _crafted() -> dict[str, bytes]:
    """Seeds covering what the corpus lacks: BE files, several sections and
    interfaces, SPB/OPB, VLANs, IPv6 extension headers, fragments, FCS bits."""
    hs4 = [tcp_ip(*V4, 40000, 80, SYN, 1, ip_options=IP_OPTIONS), tcp_ip(V4[1], V4[0], 80, 40000, SYN | ACK, 9, 2),
           tcp_ip(*V4, 40000, 80, ACK, 2, 10, b"data")]
    hs6 = [tcp_ip(*V6, 40001, 443, SYN, 1, ext=(0, 43, 60, 51)), tcp_ip(V6[1], V6[0], 443, 40001, SYN | ACK, 9, 2),
           ipv6(*V6, 6, tcp(*V6, 40001, 443, ACK, 2, 10), ext=(0, (44, 0, 1)))]
    frag = ipv4(*V4, 6, tcp(*V4, 1, 2, SYN, 3), offset=3, df=False)
    seeds = {}
    for order in "<>":
        n = Pcapng().section(order)
        e, r, s = n.interface(1, tsresol=9), n.interface(101, tsresol=0x80 | 20, tsoffset=7), n.interface(113)
        n.nrb()
        for k, p in enumerate(hs4):
            n.epb(e, T0 + k * 1000, eth(p, vlans=[(ETH_QINQ, 1), (ETH_VLAN, 2)]))
        n.unknown()
        n.isb()
        for k, p in enumerate(hs6):
            n.epb(r, T0 // 1953125 * 1953125 + k * 1953125, p)
        n.spb(eth(frag))
        n.opb(s, T0, sll(hs4[0]))
        n.epb(s, T0, sll(arp(), ETH_ARP))
        n.section(order)
        i = n.interface(276, tsresol=6)
        n.spb(sll2(hs6[0]))
        n.epb(i, T0, sll2(udp_ip(*V6)))
        seeds[f"crafted{order}.pcapng"] = n.bytes()
        seeds[f"crafted{order}.pcap"] = pcap([(T0 + k * 1000, null(p, order)) for k, p in enumerate(hs4 + hs6)],
                                             0, nano=order == ">", order=order)
    seeds["mixed.pcapng"] = seeds["crafted<.pcapng"] + seeds["crafted>.pcapng"]  # sections of both orders
    seeds["fcs.pcap"] = pcap([(T0 + k * 1000, eth(p, fcs=True)) for k, p in enumerate(hs4 + [frag])], 1 | FCS_4)
    seeds["tunnels.pcap"] = pcap([(T0 + k * 1000, f) for k, (f, _, _) in enumerate(CASES.values())])
    return seeds


CRAFTED = _crafted()
MAGICS = [pcap_header(1)[:4], pcap_header(1, True)[:4], pcap_header(1, order=">")[:4], b"\x0a\x0d\x0d\x0a"]


def _ng_head(order, linktype=None) -> bytes:
    n = Pcapng().section(order)
    if linktype is not None:
        n.interface(linktype, tsresol=9)
    return n.bytes()


HEADERS = [pcap_header(lt, nano, order) for lt in (1, 0, 113, 229) for nano in (False, True) for order in "<>"]
HEADERS += [_ng_head(order, lt) for order in "<>" for lt in (None, 1, 101)]  # SHB, + an interface


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A scratch directory, and the address space capped at 2 GB more than now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/status") as f:
        vm = int(next(line for line in f if line.startswith("VmSize:")).split()[1]) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (vm + (2 << 30), hard))
    yield tmp_path_factory.mktemp("fuzz")
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def exercise(path, data: bytes, chunk_size: int | None):
    """Read ``data`` every way there is; only CaptureError (naming the file) may escape."""
    write(path, data)
    kw = {"chunk_size": chunk_size} if chunk_size else {}
    for strict in (False, True):
        reader = CaptureReader(str(path), strict=strict, **kw)
        try:
            for seg in reader:
                assert isinstance(seg, np.ndarray) and seg.dtype == SEGMENT
        except CaptureError as e:
            assert str(path) in str(e)
            continue
        assert reader.packets >= 0
        assert reader.truncated_at is None or (0 <= reader.truncated_at <= len(data) and not strict)
    try:
        score_files([str(path)]).as_dict()
    except CaptureError as e:
        assert str(path) in str(e)


def safe(path, data, chunk_size=None):
    """``exercise``, where CaptureReader's constructor may raise CaptureError too."""
    try:
        exercise(path, data, chunk_size)
    except CaptureError as e:
        assert str(path) in str(e)


CHUNK = st.sampled_from([None, 4096])


@FUZZ
@given(data=st.binary(max_size=3000), chunk=CHUNK)
def test_random_bytes(workdir, data, chunk):
    safe(workdir / "random.bin", data, chunk)


@FUZZ
@given(prefix=st.sampled_from(MAGICS + HEADERS), data=st.binary(max_size=3000), chunk=CHUNK)
def test_random_bytes_behind_a_valid_header(workdir, prefix, data, chunk):
    safe(workdir / "magic.bin", prefix + data, chunk)


POS = st.integers(0, 1 << 20)
MUTATION = st.one_of(
    st.tuples(st.just("flip"), POS, st.integers(0, 7)),
    st.tuples(st.just("cut"), POS),
    st.tuples(st.just("insert"), POS, st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("delete"), POS, st.integers(1, 16)),
    st.tuples(st.just("word"), POS, st.sampled_from([0, 1, 8, 11, 12, 13, 28, 0xFFFF, 0x10000, 0x7FFFFFFF,
                                                     0xFFFFFFFF, 0x0A0D0D0A, 0x1A2B3C4D, 0x4D3C2B1A])),
)


def mutate(data: bytes, mutations) -> bytes:
    b = bytearray(data)
    for kind, pos, *arg in mutations:
        pos %= len(b) + 1
        if kind == "flip" and pos < len(b):
            b[pos] ^= 1 << arg[0]
        elif kind == "cut":
            del b[pos:]
        elif kind == "insert":
            b[pos:pos] = arg[0]
        elif kind == "delete":
            del b[pos:pos + arg[0]]
        elif kind == "word":
            pos &= ~3  # pcapng fields are 4-byte aligned
            b[pos:pos + 4] = struct.pack("<I" if pos % 8 else ">I", arg[0])
    return bytes(b)


@FUZZ
@given(data=st.data(), mutations=st.lists(MUTATION, min_size=1, max_size=6), chunk=CHUNK)
def test_mutated_corpus(workdir, corpus, data, mutations, chunk):
    files = sorted(p for p in corpus.iterdir() if p.suffix in (".pcap", ".pcapng"))
    seed = data.draw(st.sampled_from(files), label="seed")
    safe(workdir / ("m" + seed.suffix), mutate(seed.read_bytes(), mutations), chunk)


@FUZZ
@given(seed=st.sampled_from(sorted(CRAFTED)), mutations=st.lists(MUTATION, min_size=1, max_size=6), chunk=CHUNK)
def test_mutated_crafted(workdir, seed, mutations, chunk):
    safe(workdir / "c.bin", mutate(CRAFTED[seed], mutations), chunk)


def records(data: bytes) -> tuple[int, list[tuple[int, bool]]]:
    """Walk a well-formed crafted file: (end of its file header or first SHB,
    [(end offset of each record or block, whether it holds a packet)])."""
    out = []
    if data[:4] != b"\x0a\x0d\x0d\x0a":
        order = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
        off = 24
        while off < len(data):
            off += 16 + struct.unpack_from(order + "I", data, off + 8)[0]
            out.append((off, True))
        return 24, out
    off, order = 0, "<"
    while off < len(data):
        if data[off:off + 4] == b"\x0a\x0d\x0d\x0a":
            order = "<" if data[off + 8:off + 12] == b"\x4d\x3c\x2b\x1a" else ">"
        btype, length = struct.unpack_from(order + "II", data, off)
        off += length
        out.append((off, btype in (2, 3, 6)))
    return out[0][0], out[1:]


@pytest.mark.parametrize("seed", sorted(CRAFTED))
def test_every_cut_of_crafted(workdir, seed):
    """A crafted file cut at every byte after its header: the records before the
    cut are read, exactly as in the whole file; ``truncated_at`` is where the
    cut record starts (None on a record boundary)."""
    data = CRAFTED[seed]
    head, recs = records(data)
    assert recs[-1][0] == len(data)
    whole = CaptureReader(str(write(workdir / "w.bin", data)))
    full = np.concatenate(list(whole))
    assert whole.packets == sum(p for _, p in recs) and whole.truncated_at is None
    for n in range(len(data) + 1):
        path = write(workdir / "t.bin", data[:n])
        if n < head:
            safe(path, data[:n])
            continue
        reader = CaptureReader(str(path))
        got = [c.copy() for c in reader]
        got = np.concatenate(got) if got else np.zeros(0, SEGMENT)
        ends = [e for e, _ in recs if e <= n]
        last = max(ends, default=head)
        assert reader.truncated_at == (None if n == last else last), n
        assert reader.packets == sum(p for e, p in recs if e <= n), n
        assert got.tobytes() == full[:len(got)].tobytes(), n


def _time_options_crash(workdir, tsresol, tsoffset) -> str | None:
    n = Pcapng().section("<")
    i = n.interface(1, tsresol=tsresol, tsoffset=tsoffset)
    for ticks in (0, 2**64 - 1):  # the smallest and largest 64-bit timestamps
        n.epb(i, 0, eth(tcp_ip(*V4, 1, 2, SYN, 3)), ticks=ticks)
    try:
        safe(workdir / "times.pcapng", n.bytes())
    except Exception as e:  # noqa: BLE001 - collected, reported below
        return f"{type(e).__name__}: {e}"


def test_any_tsresol(workdir):
    """Every if_tsresol byte (10^-v or 2^-v, v up to 127)."""
    crashes = {v: c for v in range(256) if (c := _time_options_crash(workdir, v, None))}
    assert not crashes, f"{len(crashes)} values crash, e.g. if_tsresol={min(crashes)}: {crashes[min(crashes)]}"


def test_any_tsoffset(workdir):
    """if_tsoffset is a signed 64-bit count of seconds: its extremes too."""
    offsets = [-(2**63), -(10**10), -1, 0, 1, 9_223_372_036, 10**10, 2**63 - 1]
    crashes = {v: c for v in offsets if (c := _time_options_crash(workdir, 6, v))}
    assert not crashes, f"crashing if_tsoffset values: {crashes}"


@pytest.mark.parametrize("case", ["ticks", "tsoffset"])
def test_times_beyond_int64(workdir, case):
    """A handshake at times int64 nanoseconds cannot hold (past 2262): 64-bit
    tick counts straddling 2^63 ns, or an if_tsoffset of 10^10 s. Read and
    scored, or refused as CaptureError; never wrapped round to negative times."""
    n = Pcapng().section("<")
    i = n.interface(1, tsresol=9, tsoffset=10**10 if case == "tsoffset" else None)
    ticks = [2**63, 2**63 - 1, 2**63 - 1] if case == "ticks" else [0, 1000, 2000]
    for tk, (a, b, sp, dp, flags, seq, ack) in zip(ticks, [(*V4, 1000, 80, SYN, 100, 0),
                                                          (V4[1], V4[0], 80, 1000, SYN | ACK, 500, 101),
                                                          (*V4, 1000, 80, ACK, 101, 501)]):
        n.epb(i, 0, eth(tcp_ip(a, b, sp, dp, flags, seq, ack)), ticks=tk)
    path = workdir / f"edge-{case}.pcapng"
    safe(path, n.bytes())
    try:
        times = np.concatenate(list(CaptureReader(str(path))))["time_ns"]
    except CaptureError:
        return
    assert len(times) == 3 and (times >= 0).all(), times.tolist()


# --- what hs score writes, hs loads -------------------------------------------------------------

INT64 = st.integers(-(2**63), 2**63 - 1)
TSOFFSET = st.one_of(INT64, st.sampled_from([0, -1, -(10**10), -9_223_372_036, 9_223_372_036, -1_700_000_000]))
TICKS = st.one_of(st.integers(0, 2**64 - 1), st.sampled_from([0, 1, 2**63 - 1, 2**63, 1_700_000_000 * 10**9]))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(offsets=st.lists(TSOFFSET, min_size=1, max_size=3), ticks=st.lists(TICKS, min_size=1, max_size=4),
       tsresol=st.sampled_from([None, 9, 0x80 | 30]))
def test_whatever_hs_scores_it_loads(workdir, offsets, ticks, tsresol):
    """Interfaces with any if_tsoffset (signed 64-bit seconds) and packets at any 64-bit tick count:
    the capture is refused with CaptureError, or its score is written and loads again, same bytes.
    (An if_tsoffset of -9e9 s made times before 1970 whose differences wrapped round int64: a score
    with negative, unordered times that hs export then refused.)"""
    from handshake_score.score import compose
    from handshake_score.scorefile import dumps, loads

    n = Pcapng().section("<")
    ifaces = [n.interface(1, tsresol=tsresol, tsoffset=o) for o in offsets]
    for k, tk in enumerate(ticks):
        n.epb(ifaces[k % len(ifaces)], 0, eth(tcp_ip(*V4, 40000 + k, 80, SYN, k)), ticks=tk)
    path = write(workdir / "offsets.pcapng", n.bytes())
    try:
        score = compose([str(path)]).score
    except CaptureError as e:
        assert str(path) in str(e) and "\n" not in str(e)
        return
    times = score.notes["time_ns"]
    assert len(times) == len(ticks) and (times >= 0).all() and (np.diff(times) >= 0).all()
    assert 0 <= score.start_ns and score.start_ns + int(times.max()) <= 2**63 - 1
    text = dumps(score)
    assert dumps(loads(text)) == text


SCORE_TEXT = None


def _score_text() -> str:
    global SCORE_TEXT
    if SCORE_TEXT is None:
        from handshake_score.score import compose
        from handshake_score.scorefile import dumps

        path = write("crafted.pcapng", CRAFTED["crafted<.pcapng"])
        SCORE_TEXT = dumps(compose([str(path)]).score)
    return SCORE_TEXT


CHARS = st.sampled_from(list("\r\n\t \x00\x1b,\"'#:-+_0123456789{}[]e.") + ["\u0661", "\ufeff", "\u2028", "é"])
SCORE_MUTATION = st.one_of(
    st.tuples(st.just("insert"), POS, st.text(CHARS, min_size=1, max_size=4)),
    st.tuples(st.just("delete"), POS, st.integers(1, 8)),
    st.tuples(st.just("digits"), POS, st.sampled_from(["9223372036854775807", "9223372036854775808", "-1", "00",
                                                      "65536", "4294967296", "18446744073709551616", "-0"])),
)


@FUZZ
@given(mutations=st.lists(SCORE_MUTATION, min_size=1, max_size=4))
def test_a_mutated_score_loads_or_names_its_line(mutations):
    """A score with characters, digits and line ends put in or taken out anywhere: loads() raises
    ScoreFileError (one line, naming a line of the file), or gives a score that is written and loads
    again the same, whose times and sources' starts every performer can add up in 64 bits."""
    from handshake_score.scorefile import ScoreFileError, dumps, loads

    text = list(_score_text())
    for kind, pos, arg in mutations:
        pos %= len(text) + 1
        if kind == "delete":
            del text[pos:pos + arg]
        else:
            text[pos:pos] = list(arg)
    text = "".join(text)
    try:
        score = loads(text, "fuzzed.score")
    except ScoreFileError as e:
        assert str(e).startswith("fuzzed.score:") and "\n" not in str(e) and "\r" not in str(e)
        assert 0 <= e.line <= text.count("\n") + 1
        return
    again = dumps(score)
    assert dumps(loads(again)) == again
    times = score.notes["time_ns"]
    assert (times >= 0).all() and (not len(times) or score.start_ns + int(times.max()) <= 2**63 - 1)
    np.array([score.start_ns - s.start_ns for s in score.sources if s.start_ns is not None], np.int64)  # no overflow
    assert all(h and h.isprintable() and not set(h) & set(' ,"') for h in score.hosts)


# --- tunnels: lengths that lie, headers cut anywhere, loops ---------------------------------------

def _decode_one(data: bytes, caplen: int, **kw) -> np.ndarray:
    """decode() of one Ethernet record of ``caplen`` bytes whose buffer holds all of ``data``
    (and 8 bytes more): a reader that trusted bytes past the captured length would see them."""
    buf = memoryview(bytearray(data + b"\0" * 8))
    rec = Records(buf, np.zeros(1, np.int64), np.array([caplen], np.int64), 1,
                  lambda i: np.full(len(i), T0, np.int64), lambda i: np.full(len(i), len(data), np.int64))
    return decode(rec, Decapsulation(**kw)).select()


def _tcp_at(case: str) -> int:
    """Where the inner TCP header of a tunnel case starts in its frame."""
    data, k, v6 = CASES[case]
    seg = inner(k, v6)[40 if v6 else 20:]
    return data.rindex(seg)


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_cut_of_every_tunnel_header(case):
    """A frame cut at every byte: its segment is there exactly when the captured bytes hold the
    inner TCP header through its flags and window, and the bytes after the cut change nothing."""
    data = CASES[case][0]
    whole = _decode_one(data, len(data))
    assert len(whole) == 1
    for cut in range(len(data) + 1):
        for context in (False, True):
            got = _decode_one(data, cut, context=context)
            assert len(got) == (cut >= _tcp_at(case) + 16), cut
            if len(got):  # with its context too (a SEGMENT_IN_CONTEXT row), the same segment
                assert all(got[f].tobytes() == whole[f].tobytes() for f in SEGMENT.names)
            hidden = _decode_one(data[:cut] + b"\xff" * (len(data) - cut), cut, context=context)
            assert hidden.tobytes() == got.tobytes(), cut


HEADER_BYTE = st.tuples(st.integers(0, 1 << 16), st.integers(0, 255))


@FUZZ
@given(case=st.sampled_from(sorted(CASES)), changes=st.lists(HEADER_BYTE, min_size=1, max_size=8),
       cut=st.integers(0, 1 << 16), tail=st.binary(min_size=0, max_size=64), context=st.booleans())
def test_tunnel_headers_that_lie(case, changes, cut, tail, context):
    """Any byte of the encapsulation headers changed (lengths, flags, label stacks, IHLs, protocol
    types), any cut: no exception, and what is read never depends on bytes past the cut."""
    data = bytearray(CASES[case][0])
    head = _tcp_at(case)
    for pos, value in changes:
        data[pos % head] = value
    data = bytes(data) + tail
    cut %= len(data) + 1
    got = _decode_one(data, cut, context=context)
    assert got.dtype == (SEGMENT_IN_CONTEXT if context else SEGMENT) and len(got) <= 1
    hidden = _decode_one(data[:cut] + bytes(255 - c for c in data[cut:]), cut, context=context)
    assert hidden.tobytes() == got.tobytes()


def test_loops_of_nested_tunnels(workdir):
    """GRE in GRE 50 deep, IP-in-IP 50 deep, an MPLS stack with no bottom: read without error,
    given up at ``max_depth``; found when the depth allows it."""
    gre50, ipip50 = inner(1), inner(2)
    for _ in range(50):
        gre50, ipip50 = in4(47, gre(0x0800, gre50)), in4(4, ipip50, OUT4)
    frames = [eth(gre50), eth(ipip50), eth(b"\x00\x01\xf0\x40" * 200 + inner(3), 0x8847)]
    path = write(workdir / "loops.pcap", pcap([(T0 + k * 1000, f) for k, f in enumerate(frames)]))
    assert len(np.concatenate(list(CaptureReader(str(path))))) == 0
    deep = np.concatenate(list(CaptureReader(str(path), decapsulation=Decapsulation(max_depth=101))))
    assert sorted(int(p) for p in deep["sport"]) == [40001, 40002]  # the stack without a bottom stays unread


# --- memory: never more than the file holds -------------------------------------------------------

# lengths a record or block may claim and be believed: up to the formats' limits (64 MiB; 256 KiB for pcap)
CLAIMS = st.sampled_from([0x03FFFFFC, 0x03FFFF00, 0x02000000, 0x0003FFFC, 0x00100000])


def claiming(data: bytes, k: int, claim: int) -> bytes:
    """``data`` with its ``k``-th record or block (after the file header) claiming ``claim`` bytes."""
    head, recs = records(data)
    starts = [head] + [e for e, _ in recs[:-1]]
    at = starts[k % len(starts)]
    end = recs[k % len(starts)][0]
    if data[:4] == b"\x0a\x0d\x0d\x0a":  # pcapng: the block's total length, in its section's byte order
        order = "<" if struct.unpack_from("<I", data, at + 4)[0] == end - at else ">"
        return data[:at + 4] + struct.pack(order + "I", claim) + data[at + 8:]
    order = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    return data[:at + 8] + struct.pack(order + "I", claim) + data[at + 12:]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.sampled_from(sorted(CRAFTED)), k=st.integers(0, 30), claim=CLAIMS,
       mutations=st.lists(MUTATION, max_size=2))
def test_reading_allocates_no_more_than_the_file_holds(workdir, seed, k, claim, mutations):
    """Whatever lengths a damaged file's records claim (up to the formats' 64 MiB), reading it
    allocates its chunk buffer and what its records hold, never what they only claim. (A 152-byte
    pcapng file whose one packet block claimed 64 MiB made the reader allocate 80 MiB.)"""
    import tracemalloc

    data = mutate(claiming(CRAFTED[seed], k, claim), mutations)
    path = write(workdir / "claims.bin", data)
    tracemalloc.start()
    try:
        for _ in CaptureReader(str(path)):
            pass
    except CaptureError:
        pass
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < (4 << 20) + 20 * len(data), f"{peak:,} bytes allocated reading {len(data):,}"
