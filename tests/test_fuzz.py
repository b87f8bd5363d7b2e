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

FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
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
        n.unknown(), n.isb()
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
    seeds["fcs.pcap"] = pcap([(T0 + k * 1000, eth(p, fcs=True)) for k, p in enumerate(hs4 + [frag])], 1 | FCS_4)
    return seeds


CRAFTED = _crafted()
MAGICS = [pcap_header(1)[:4], pcap_header(1, True)[:4], pcap_header(1, order=">")[:4], b"\x0a\x0d\x0d\x0a"]
HEADERS = [pcap_header(lt, nano, order) for lt in (1, 0, 113, 229) for nano in (False, True) for order in "<>"] + [
    Pcapng().section(order).bytes() for order in "<>"]
HEADERS += [h + struct.pack(h[8:12] == b"\x4d\x3c\x2b\x1a" and "<IIHHI" or ">IIHHI", 1, 20, lt, 0, 0)
            for h in HEADERS[-2:] for lt in (1, 101)]  # SHB + an interface (LE and BE)


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


@pytest.mark.parametrize("seed", sorted(CRAFTED))
def test_every_truncation_of_crafted(workdir, seed):
    """Each prefix of each crafted file (a cut at every byte)."""
    data = CRAFTED[seed]
    for n in range(len(data) + 1):
        safe(workdir / "t.bin", data[:n])
