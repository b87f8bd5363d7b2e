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
from handshake_score.segments import SEGMENT
from handshake_score.sources import CaptureReader
from handshake_score.summary import score_files

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
