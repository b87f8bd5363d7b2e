"""Write a synthetic, seeded Ethernet capture of TCP connections, and its ground truth.

    python benchmarks/make_capture.py OUT [--packets N] [--format pcap|pcapng] [--snaplen 128]
                                          [--shape mixed|upload|download|flood] [--tunnel vxlan|erspan]

About 45,000 connections per 1,000,000 packets, ~20% of them over IPv6, interleaved in
time at a fixed packet rate (so a bigger file is longer, not busier). Each connection is one
of: complete (SYN, SYN-ACK, ACK, data both ways, FIN or RST close), refused (SYN -> RST/ACK),
unanswered (SYN and its retries), incomplete (SYN-ACK answered by the client's RST as a port
scanner does, or SYN-ACK retried into silence) or mid-stream (open before the capture began:
data and FIN only). Retries keep their ISN. The figures expected from ``hs score`` are written
to ``OUT.expected.json`` and printed. Everything is built as numpy columns, then serialised
in chunks, so 1M packets take a few seconds.

``--shape upload`` and ``--shape download`` keep the connections but send their data one
way: the client's full-sized segments, each acknowledging the server's ISN + 1 like a
handshake's last ACK (backups, uploads, a camera streaming), or the server's, answered by
the client's pure ACKs. ``--snaplen 0`` keeps whole frames (an upload of 1M packets is
about 0.9 GB then), ``--format pcapng`` writes Enhanced Packet Blocks.

``--tunnel vxlan`` carries every frame of those shapes as a switch's mirror does: in VXLAN
(UDP 4789) between two VTEPs over IPv4, with an 802.1Q tag inside (54 bytes more a frame);
``--tunnel erspan`` in GRE with a sequence number and an ERSPAN type II header (50 bytes
more). The connections, and so the ground truth, are the same; the snap length cuts the
whole frame, so a 128-byte one still holds the inner TCP header.

``--shape loopback`` records real traffic instead: dumpcap on ``lo`` while this script
uploads and downloads a few MB at a time, makes hundreds of short connections a second
and connects to a closed port and to a listener that never answers (see
:func:`record_loopback`; it needs capture rights, and tests/loopback.py).

``--shape flood`` writes a SYN flood instead: every packet a SYN that is never answered
(a new attempt each: its own client port and ISN), from ``--clients`` addresses in
10.0.0.0/8 to a few servers, at ``--rate`` SYNs per second, headers only (54-byte frames).
It is written chunk by chunk, so 10,000,000 SYNs take well under a minute and little memory.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
RATE = 20_000  # packets per second of capture time: keeps concurrency the same at any size
CONNS_PER_PACKET = 0.045
EPOCH_US = 1_700_000_000_000_000  # 2023-11-14T22:13:20Z, fixed so the output is reproducible
SECOND = 1_000_000
# Connection kinds and their shares.
COMPLETE, REFUSED, UNANSWERED, SCANNED, HALF_OPEN, MIDSTREAM = range(6)
KIND_P = [0.90, 0.04, 0.02, 0.01, 0.01, 0.02]
V6_SHARE = 0.2
SERVER_PORTS, SERVER_PORT_P = [443, 80, 8080, 993, 8443], [0.6, 0.2, 0.08, 0.07, 0.05]
GATEWAY_MAC = 0x001B213A4F10
TUNNEL_BYTES = {"none": 0, "vxlan": 54, "erspan": 50}  # outer headers (and VXLAN's inner VLAN tag)
VTEPS = (0xAC100001, 0xAC100002)  # 172.16.0.1, 172.16.0.2: the mirror's outer endpoints
# TCP option layouts: (bytes, offset of TSval within them or -1).
OPT_NONE, OPT_SYN_TS, OPT_SYN, OPT_TS = range(4)
OPTIONS = {
    OPT_NONE: (b"", -1),
    OPT_SYN_TS: (bytes.fromhex("020405b4" "0402" "080a0000000000000000" "01" "030307"), 8),  # Linux
    OPT_SYN: (bytes.fromhex("020405b4" "01" "030308" "0101" "0402"), -1),  # Windows
    OPT_TS: (bytes.fromhex("0101080a0000000000000000"), 4),
}


def group_cumsum(x: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Exclusive cumulative sum of ``x`` restarting at each group of ``counts`` rows."""
    cs = np.cumsum(x) - x
    firsts = np.cumsum(counts) - counts
    return cs - np.repeat(cs[firsts[counts > 0]], counts[counts > 0])


def rank_in_group(counts: np.ndarray) -> np.ndarray:
    """0, 1, ... within each group of ``counts`` rows."""
    return group_cumsum(np.ones(int(counts.sum()), np.int64), counts)


class Packets:
    """Packet columns gathered phase by phase, then sorted by time."""

    FIELDS = ("conn", "t", "client", "flags", "seq", "ack", "payload", "step")

    def __init__(self):
        self.parts = {f: [] for f in self.FIELDS}

    def add(self, conn, t, client, flags, seq, ack, payload=0, step=0):
        n = len(conn)
        for f, v in zip(self.FIELDS, (conn, t, client, flags, seq, ack, payload, step)):
            self.parts[f].append(np.broadcast_to(np.asarray(v), n).astype(np.int64))

    def sorted(self) -> dict[str, np.ndarray]:
        cols = {f: np.concatenate(v) for f, v in self.parts.items()}
        order = np.lexsort((cols["step"], cols["conn"], cols["t"]))
        cols = {f: v[order] for f, v in cols.items()}
        by_conn = np.argsort(cols["conn"], kind="stable")  # each connection's packets, in time order
        cols["nth"] = np.empty_like(by_conn)
        cols["nth"][by_conn] = rank_in_group(np.bincount(cols["conn"]))
        return cols


def connections(rng: np.random.Generator, n_packets: int) -> dict[str, np.ndarray]:
    """Per-connection attributes: kind, family, endpoints, ISNs, RTT, retries."""
    n = max(1, round(n_packets * CONNS_PER_PACKET))
    c = {"kind": rng.choice(len(KIND_P), n, p=KIND_P), "v6": rng.random(n) < V6_SHARE}
    duration = n_packets / RATE * SECOND
    c["t0"] = rng.integers(0, max(1, int(duration)), n)
    mid = c["kind"] == MIDSTREAM
    c["t0"][mid] = rng.integers(0, SECOND, mid.sum())  # already open when the capture starts
    c["rtt"] = np.clip(rng.lognormal(np.log(20_000), 1.0, n), 100, 500_000).astype(np.int64)
    c["isn_c"], c["isn_s"] = rng.integers(0, 2**32, (2, n))
    # Unique (client, port): host = i mod H, port an injective walk over the ephemeral range.
    i = np.arange(n)
    c["host"] = i % 4096
    c["sport"] = 32768 + ((i // 4096) * 7919 + c["host"] * 31) % 28232
    c["server"] = rng.integers(0, 768, n)
    c["dport"] = rng.choice(SERVER_PORTS, n, p=SERVER_PORT_P)
    c["ts"] = rng.random(n) < 0.8  # speaks TCP timestamps (Linux-like) or not (Windows-like)
    c["ts_c"], c["ts_s"] = rng.integers(0, 2**31, (2, n))
    c["ttl_s"] = 64 - rng.integers(4, 20, n)
    k = c["kind"]
    c["syn_retries"] = np.select(
        [k == UNANSWERED, k == COMPLETE, k == REFUSED],
        [rng.integers(0, 4, n), rng.random(n) < 0.02, rng.random(n) < 0.05], 0)
    c["synack_retries"] = np.select(
        [k == HALF_OPEN, k == COMPLETE], [rng.integers(1, 4, n), rng.random(n) < 0.01], 0)
    c["rst_close"] = (k == COMPLETE) & (rng.random(n) < 0.03)
    return c


def fixed_packets(c) -> np.ndarray:
    """Packets per connection outside the data phase."""
    k = c["kind"]
    syns = np.where(k == MIDSTREAM, 0, 1 + c["syn_retries"])
    answers = np.where(np.isin(k, [COMPLETE, SCANNED, HALF_OPEN]), 1 + c["synack_retries"],
                       (k == REFUSED).astype(int))
    third = np.isin(k, [COMPLETE, SCANNED]).astype(int)  # ACK, or the scanner's RST
    close = np.where(np.isin(k, [COMPLETE, MIDSTREAM]), np.where(c["rst_close"], 1, 3), 0)
    return syns + answers + third + close


def build(rng: np.random.Generator, n_packets: int, shape: str = "mixed"):
    """All packets, time-sorted, plus the connection table; ``shape`` sets the data phase
    (see :func:`data_phase`)."""
    c = connections(rng, n_packets)
    k, n = c["kind"], len(c["kind"])
    spare = n_packets - int(fixed_packets(c).sum())
    if spare < 0:
        sys.exit(f"--packets {n_packets} is too small for {n} connections")
    talks = np.isin(k, [COMPLETE, MIDSTREAM])
    weights = np.where(talks, rng.lognormal(0, 1.2, n), 0)
    c["data"] = rng.multinomial(spare, weights / weights.sum())
    p, ids = Packets(), np.arange(n)
    isn_c, isn_s, rtt = c["isn_c"], c["isn_s"], c["rtt"]

    # SYN and retries (same ISN) after 1, 3, 7 s of backoff.
    nsyn = np.where(k == MIDSTREAM, 0, 1 + c["syn_retries"])
    conn, r = np.repeat(ids, nsyn), rank_in_group(nsyn)
    p.add(conn, c["t0"][conn] + (2**r - 1) * SECOND, 1, SYN, isn_c[conn], 0, step=r)
    now = c["t0"] + (2 ** np.maximum(nsyn - 1, 0) - 1) * SECOND + rtt  # answer arrives 1 RTT later

    sel = ids[k == REFUSED]
    p.add(sel, now[sel], 0, RST | ACK, 0, isn_c[sel] + 1, step=10)
    # SYN-ACK and its retries (1, 3, 7 s on the server's timer).
    nsa = np.where(np.isin(k, [COMPLETE, SCANNED, HALF_OPEN]), 1 + c["synack_retries"], 0)
    conn, r = np.repeat(ids, nsa), rank_in_group(nsa)
    p.add(conn, now[conn] + (2**r - 1) * SECOND, 0, SYN | ACK, isn_s[conn], isn_c[conn] + 1, step=10 + r)
    now = now + (2 ** np.maximum(nsa - 1, 0) - 1) * SECOND + rng.integers(20, 200, n)

    sel = ids[k == COMPLETE]
    p.add(sel, now[sel], 1, ACK, isn_c[sel] + 1, isn_s[sel] + 1, step=20)
    sel = ids[k == SCANNED]
    p.add(sel, now[sel], 1, RST, isn_c[sel] + 1, 0, step=20)

    sent_c, sent_s, now = data_phase(rng, p, c, now, shape)
    # Close: FIN/ACK both ways and the last ACK, or an abortive RST/ACK from the client.
    fin = ids[talks & ~c["rst_close"]]
    sc, ss = isn_c[fin] + 1 + sent_c[fin], isn_s[fin] + 1 + sent_s[fin]
    t, gap = now[fin], rtt[fin]
    last = 1 << 40  # after any data step
    p.add(fin, t, 1, FIN | ACK, sc, ss, step=last)
    p.add(fin, t + gap, 0, FIN | ACK, ss, sc + 1, step=last + 1)
    p.add(fin, t + gap + 50, 1, ACK, sc + 1, ss + 1, step=last + 2)
    sel = ids[c["rst_close"]]
    p.add(sel, now[sel], 1, RST | ACK, isn_c[sel] + 1 + sent_c[sel], isn_s[sel] + 1 + sent_s[sel], step=last)
    return p.sorted(), c


def data_phase(rng, p: Packets, c, now, shape: str = "mixed"):
    """Data segments and pure ACKs in both directions, with consistent seq/ack numbers.

    ``mixed``: 40% of the data segments from the client, small ones, and most of the
    server's full-sized. ``upload``: every data segment from the client, full-sized (a
    backup, a camera streaming to a server), each of the client's packets acknowledging
    the server's ISN + 1, as the handshake's ACK does; the server sends pure ACKs.
    ``download``: a small request from the client, then full-sized segments from the
    server, and the client's pure ACKs, their ACK numbers climbing."""
    counts = c["data"]
    conn = np.repeat(np.arange(len(counts)), counts)
    m = len(conn)
    first = rank_in_group(counts) == 0
    mss = np.where(c["v6"][conn], 1440, 1460) - np.where(c["ts"][conn], 12, 0)
    if shape == "upload":
        client = np.ones(m, bool)
        size = np.where(rng.random(m) < 0.9, mss, rng.integers(1, mss))
    elif shape == "download":
        client = first.copy()
        size = np.where(first, rng.lognormal(np.log(300), 1.0, m), np.where(rng.random(m) < 0.9, mss, rng.integers(1, mss)))
    else:
        client = rng.random(m) < 0.4
        size = np.where(client, rng.lognormal(np.log(300), 1.0, m), np.where(rng.random(m) < 0.7, mss, rng.integers(1, mss)))
    payload = np.clip(size.astype(np.int64), 1, mss)
    # A pure ACK answers the data segment just before it (never two in a row: no duplicate ACKs).
    cand = rng.random(m) < 0.45
    pure = cand & ~np.roll(cand, 1) & ~first
    client[pure] = ~client[np.flatnonzero(pure) - 1]
    payload[pure] = 0
    by_c, by_s = payload * client, payload * ~client
    before_c, before_s = group_cumsum(by_c, counts), group_cumsum(by_s, counts)
    gaps = (rng.exponential(c["rtt"][conn] / 2) + 10).astype(np.int64)
    t = now[conn] + group_cumsum(gaps, counts) + gaps
    seq = np.where(client, c["isn_c"][conn] + 1 + before_c, c["isn_s"][conn] + 1 + before_s)
    ack = np.where(client, c["isn_s"][conn] + 1 + before_s, c["isn_c"][conn] + 1 + before_c)
    flags = ACK | np.where(payload > 0, PSH, 0)
    p.add(conn, t, client, flags, seq, ack, payload, step=30 + rank_in_group(counts))
    n = len(counts)
    sent_c = np.bincount(conn, by_c, n).astype(np.int64)
    sent_s = np.bincount(conn, by_s, n).astype(np.int64)
    end, last = now.copy(), np.cumsum(counts) - 1
    end[counts > 0] = t[last[counts > 0]]
    return sent_c, sent_s, end + c["rtt"] // 2 + 10


def addresses(c, conn, client, v6):
    """(src, dst) as 16-byte rows: IPv4 in the last 4 bytes, IPv6 in full."""
    host, server = c["host"][conn], c["server"][conn]
    cli4 = (10 << 24) | (1 << 16) | (host + 1)
    nets = np.array([0xC0000200, 0xC6336400, 0xCB007100])  # 192.0.2/24, 198.51.100/24, 203.0.113/24
    srv4 = nets[server // 256] | (server % 256)
    out = []
    for a4, a6net, low in ((cli4, 0x20010DB8_00010000, host + 1), (srv4, 0x20010DB8_00FF0000, server + 1)):
        a = np.zeros((len(conn), 16), np.uint8)
        a[:, 12:] = be_bytes(a4, 4)
        a[v6, :8] = be_bytes(np.full(v6.sum(), a6net), 8)
        a[v6, 8:] = be_bytes(low[v6], 8)
        out.append(a)
    cl, sv = out
    return np.where(client[:, None], cl, sv), np.where(client[:, None], sv, cl)


def be_bytes(v, nbytes: int) -> np.ndarray:
    """Big-endian bytes of integers, one row each."""
    v = np.asarray(v, np.uint64)
    shifts = np.arange(nbytes - 1, -1, -1, dtype=np.uint64) * np.uint64(8)
    return ((v[:, None] >> shifts) & np.uint64(0xFF)).astype(np.uint8)


def put(buf, cols, value, nbytes, rows=None, little=False):
    """Write integers at a per-row column offset (big-endian unless ``little``)."""
    rows = np.arange(len(buf)) if rows is None else rows
    b = be_bytes(np.broadcast_to(value, len(rows)), nbytes)
    if little:
        b = b[:, ::-1]
    buf[rows[:, None], np.asarray(cols)[:, None] + np.arange(nbytes)] = b


def frames(pk, c, snaplen: int, tunnel: str = "none"):
    """Header fields of every packet: lengths, option layout and so on, as columns."""
    conn, client = pk["conn"], pk["client"].astype(bool)
    v6, ts = c["v6"][conn], c["ts"][conn]
    syn, rst = (pk["flags"] & SYN) > 0, (pk["flags"] & RST) > 0
    opt = np.select([syn & ts, syn, rst, ts], [OPT_SYN_TS, OPT_SYN, OPT_NONE, OPT_TS], OPT_NONE)
    optlen = np.array([len(OPTIONS[o][0]) for o in range(4)])[opt]
    iplen = np.where(v6, 40, 20)
    frame_len = TUNNEL_BYTES[tunnel] + 14 + iplen + 20 + optlen + pk["payload"]
    caplen = np.minimum(frame_len, snaplen) if snaplen else frame_len
    return dict(v6=v6, opt=opt, optlen=optlen, iplen=iplen, frame_len=frame_len, caplen=caplen, client=client)


def outer_headers(buf, at, fr, sl, tunnel: str) -> int:
    """The mirror's headers at ``at``: Ethernet, IPv4 between the VTEPs (checksum left zero),
    then UDP and VXLAN (VNI 100) or GRE (with a sequence number) and ERSPAN type II
    (session 1). Returns where the inner Ethernet frame starts, after them."""
    n, client = len(at), fr["client"]
    put(buf, at, 0x02000000AAAA, 6)
    put(buf, at + 6, 0x02000000BBBB, 6)
    put(buf, at + 12, 0x0800, 2)
    ip, total = at + 14, fr["frame_len"] - 14
    proto = 17 if tunnel == "vxlan" else 47
    for off, v, nb in ((0, 0x4500, 2), (2, total, 2), (6, 0x4000, 2), (8, 64 << 8 | proto, 2),
                       (12, np.where(client, VTEPS[0], VTEPS[1]), 4), (16, np.where(client, VTEPS[1], VTEPS[0]), 4)):
        put(buf, ip + off, np.broadcast_to(v, n), nb)
    l4 = ip + 20
    if tunnel == "vxlan":  # the source port from a hash of the inner flow, as Linux picks it
        for off, v, nb in ((0, 49152 + (sl["conn"] * 2654435761) % 16384, 2), (2, 4789, 2), (4, total - 20, 2),
                           (8, 0x08000000, 4), (12, 100 << 8, 4)):
            put(buf, l4 + off, np.broadcast_to(v, n), nb)
    else:
        for off, v, nb in ((0, 0x1000, 2), (2, 0x88BE, 2), (4, sl["nth"] & 0xFFFFFFFF, 4),
                           (8, 0x1000, 2), (10, 0x0001, 2), (12, 0, 4)):
            put(buf, l4 + off, np.broadcast_to(v, n), nb)
    return 16


def serialise(pk, c, f, lo, hi, fmt: str, snaplen: int, tunnel: str = "none"):
    """Append packets lo:hi to ``f`` as pcap records or pcapng Enhanced Packet Blocks."""
    sl = {k: v[lo:hi] for k, v in pk.items()}
    fr = frames(sl, c, snaplen, tunnel)
    n, conn, client, v6 = hi - lo, sl["conn"], fr["client"], fr["v6"]
    head = 16 if fmt == "pcap" else 28
    padded = (fr["caplen"] + 3) & ~3
    rec_len = head + (fr["caplen"] if fmt == "pcap" else padded + 4)
    width = int(rec_len.max())
    buf = np.zeros((n, width + 64), np.uint8)  # slack: headers are written before truncation
    t = EPOCH_US + sl["t"]
    if fmt == "pcap":
        put(buf, np.zeros(n, int), t // SECOND, 4, little=True)
        put(buf, np.full(n, 4), t % SECOND, 4, little=True)
        put(buf, np.full(n, 8), fr["caplen"], 4, little=True)
        put(buf, np.full(n, 12), fr["frame_len"], 4, little=True)
    else:
        for col, v in ((0, 6), (4, rec_len), (8, 0), (12, t >> 32), (16, t & 0xFFFFFFFF),
                       (20, fr["caplen"]), (24, fr["frame_len"])):
            put(buf, np.full(n, col), v, 4, little=True)
        put(buf, head + padded, rec_len, 4, little=True)
    e = np.full(n, head)
    if tunnel != "none":
        e = e + 14 + 20 + outer_headers(buf, e, fr, sl, tunnel)
    cmac = 0x020000000000 | c["host"][conn]
    put(buf, e, np.where(client, GATEWAY_MAC, cmac), 6)
    put(buf, e + 6, np.where(client, cmac, GATEWAY_MAC), 6)
    if tunnel == "vxlan":  # the inner frame tagged: VLAN 10 to 17 by client
        put(buf, e + 12, 0x8100, 2)
        put(buf, e + 14, 10 + c["host"][conn] % 8, 2)
        e = e + 4
    put(buf, e + 12, np.where(v6, 0x86DD, 0x0800), 2)
    ip, tcp = e + 14, e + 14 + fr["iplen"]
    tcp_len = 20 + fr["optlen"] + sl["payload"]
    ttl = np.where(client, 64, c["ttl_s"][conn])
    src, dst = addresses(c, conn, client, v6)
    r4, r6 = np.flatnonzero(~v6), np.flatnonzero(v6)
    # IPv4: DF set, ID counting up per connection, real header checksum.
    ipid = (c["isn_c"][conn] + sl["nth"]) & 0xFFFF
    words = (0x4500 + 20 + tcp_len + ipid + 0x4000 + (ttl << 8 | 6)
             + src[:, 12:].view(">u2").sum(1, dtype=np.int64) + dst[:, 12:].view(">u2").sum(1, dtype=np.int64))
    words = (words & 0xFFFF) + (words >> 16)
    csum = ~((words & 0xFFFF) + (words >> 16)) & 0xFFFF
    for off, v, nb in ((0, 0x4500, 2), (2, 20 + tcp_len, 2), (4, ipid, 2), (6, 0x4000, 2),
                       (8, ttl << 8 | 6, 2), (10, csum, 2)):
        put(buf, ip[r4] + off, np.broadcast_to(v, n)[r4], nb, rows=r4)
    for k in range(4):
        buf[r4, ip[r4] + 12 + k] = src[r4, 12 + k]
        buf[r4, ip[r4] + 16 + k] = dst[r4, 12 + k]
    # IPv6: flow label per connection, no extension headers.
    put(buf, ip[r6], 0x60000000 | (c["isn_s"][conn[r6]] & 0xFFFFF), 4, rows=r6)
    put(buf, ip[r6] + 4, tcp_len[r6], 2, rows=r6)
    put(buf, ip[r6] + 6, 0x0600 | ttl[r6], 2, rows=r6)
    cols16 = np.arange(16)
    buf[r6[:, None], (ip[r6] + 8)[:, None] + cols16] = src[r6]
    buf[r6[:, None], (ip[r6] + 24)[:, None] + cols16] = dst[r6]
    write_tcp(buf, sl, c, fr, tcp, tcp_len)
    keep = np.arange(buf.shape[1]) < rec_len[:, None]
    f.write(buf[keep].tobytes())


def write_tcp(buf, sl, c, fr, tcp, tcp_len):
    """TCP header and options (checksum left zero)."""
    conn, client = sl["conn"], fr["client"]
    ports = (np.where(client, c["sport"][conn], c["dport"][conn]), np.where(client, c["dport"][conn], c["sport"][conn]))
    syn = (sl["flags"] & SYN) > 0
    window = np.select([syn & client, syn, (sl["flags"] & RST) > 0], [64240, 65160, 0], 501 + conn % 1500)
    doff = (20 + fr["optlen"]) // 4
    for off, v, nb in ((0, ports[0], 2), (2, ports[1], 2), (4, sl["seq"] & 0xFFFFFFFF, 4),
                       (8, sl["ack"] & 0xFFFFFFFF, 4), (12, doff << 12 | sl["flags"], 2), (14, window, 2)):
        put(buf, tcp + off, v, nb)
    # Timestamps: each side's clock ticks in ms; TSecr echoes the peer's clock half an RTT ago.
    ms = sl["t"] // 1000
    own, peer = np.where(client, c["ts_c"][conn], c["ts_s"][conn]), np.where(client, c["ts_s"][conn], c["ts_c"][conn])
    tsval = (ms + own) & 0xFFFFFFFF
    tsecr = np.where(syn & client, 0, (ms - c["rtt"][conn] // 2000 + peer) & 0xFFFFFFFF)
    for o, (raw, ts_at) in OPTIONS.items():
        rows = np.flatnonzero(fr["opt"] == o)
        if len(rows) == 0 or not raw:
            continue
        at = tcp[rows] + 20
        buf[rows[:, None], at[:, None] + np.arange(len(raw))] = np.frombuffer(raw, np.uint8)
        if raw[0] == 2:  # MSS option: 20 bytes less over IPv6
            put(buf, at + 2, np.where(fr["v6"][rows], 1440, 1460), 2, rows=rows)
        if ts_at >= 0:
            put(buf, at + ts_at, tsval[rows], 4, rows=rows)
            put(buf, at + ts_at + 4, tsecr[rows], 4, rows=rows)


def file_header(fmt: str, snaplen: int) -> bytes:
    """pcap global header (microseconds) or pcapng SHB + IDB (default if_tsresol = 10^-6)."""
    snap = snaplen or 65535
    if fmt == "pcap":
        return np.array([0xA1B2C3D4], "<u4").tobytes() + np.array([2, 4], "<u2").tobytes() + \
            np.array([0, 0, snap, 1], "<u4").tobytes()
    shb = np.array([0x0A0D0D0A, 28, 0x1A2B3C4D], "<u4").tobytes() + np.array([1, 0], "<u2").tobytes() + \
        np.array([-1], "<i8").tobytes() + np.array([28], "<u4").tobytes()
    idb = np.array([1, 20], "<u4").tobytes() + np.array([1, 0], "<u2").tobytes() + np.array([snap, 20], "<u4").tobytes()
    return shb + idb


def truth(pk, c, n_packets: int) -> dict:
    """What a correct scorer reports for this capture (rules of ../shared/corpus/README.md)."""
    k, flags = c["kind"], pk["flags"]
    count = lambda *kinds: int(np.isin(k, kinds).sum())
    syn, rst = (flags & SYN) > 0, (flags & RST) > 0
    return {
        "packets": n_packets,
        "duration_s": round(float(pk["t"].max() - pk["t"].min()) / SECOND, 6),
        "connections": len(k),
        "ipv6_packets": int(c["v6"][pk["conn"]].sum()),
        "syn_packets": int((syn & ((flags & ACK) == 0)).sum()),
        "syn_ack_packets": int((syn & ((flags & ACK) > 0)).sum()),
        "rst_packets": int(rst.sum()),
        "syn_or_rst_packets": int((syn | rst).sum()),
        "notes": {
            "syn": len(k) - count(MIDSTREAM),
            "syn-retry": int(c["syn_retries"].sum()),
            "syn-ack": count(COMPLETE, SCANNED, HALF_OPEN),
            "syn-ack-retry": int(c["synack_retries"].sum()),
            "ack": count(COMPLETE),
            "rst": count(REFUSED, SCANNED),
        },
        "handshakes": {
            "complete": count(COMPLETE),
            "refused": count(REFUSED),
            "unanswered": count(UNANSWERED),
            "incomplete": count(SCANNED, HALF_OPEN),
        },
        "midstream_connections": count(MIDSTREAM),
        "rst_closed_connections": int(c["rst_close"].sum()),
    }


def make(out: Path, n_packets: int, fmt: str = "pcap", snaplen: int = 128, seed: int = 1, shape: str = "mixed",
         tunnel: str = "none") -> dict:
    """Write the capture and ``OUT.expected.json``; return the ground truth. ``shape``:
    ``mixed``, ``upload`` or ``download`` (see :func:`data_phase`); ``tunnel``: ``none``,
    ``vxlan`` or ``erspan`` (see :func:`outer_headers`)."""
    rng = np.random.default_rng(seed)
    pk, c = build(rng, n_packets, shape)
    assert len(pk["t"]) == n_packets
    chunk = 65_536 if snaplen and snaplen <= 256 else 8_192
    with open(out, "wb") as f:
        f.write(file_header(fmt, snaplen))
        for lo in range(0, n_packets, chunk):
            serialise(pk, c, f, lo, min(lo + chunk, n_packets), fmt, snaplen, tunnel)
    expected = {"file": out.name, "format": fmt, "snaplen": snaplen, "seed": seed, "shape": shape,
                **({"tunnel": tunnel} if tunnel != "none" else {}), **truth(pk, c, n_packets)}
    Path(f"{out}.expected.json").write_text(json.dumps(expected, indent=2) + "\n")
    return expected


FLOOD_SERVERS = np.array([0xC000020A, 0xC0000214, 0xC633640A, 0xCB00710A], np.uint32)  # 192.0.2.10 ... (documentation)
FLOOD_PORTS = np.array([80, 443, 443, 8080], np.uint16)


def make_flood(out: Path, n_packets: int, fmt: str = "pcap", seed: int = 1, clients: int = 1_000_000,
               rate: int = 100_000, chunk: int = 1 << 20) -> dict:
    """A SYN flood: ``n_packets`` SYNs, none answered, each a new attempt, from ``clients``
    addresses (10.0.0.0/8) at ``rate`` per second; Ethernet + IPv4 + TCP without options
    (54 bytes, headers only). Written chunk by chunk; returns and writes the ground truth."""
    if not 1 <= clients <= 1 << 24:
        sys.exit("--clients must be 1 to 16,777,216 (addresses in 10.0.0.0/8)")
    rng = np.random.default_rng(seed)
    # the client pool: distinct addresses, a random sample of 10.0.0.0/8
    pool = (np.uint32(10 << 24) | rng.permutation(1 << 24)[:clients].astype(np.uint32))
    head = 16 if fmt == "pcap" else 28
    frame = 54
    rec_len = head + (frame if fmt == "pcap" else ((frame + 3) & ~3) + 4)
    step_us = SECOND / rate
    # ISNs: an odd multiplier is a bijection of 32-bit numbers, so no two SYNs of the run share
    # an ISN, and no SYN is a retry of another (each opens an attempt of its own)
    mult, offset = np.uint64(2654435761), np.uint64(rng.integers(0, 2**32))
    with open(out, "wb") as f:
        f.write(file_header(fmt, 128))
        for lo in range(0, n_packets, chunk):
            n = min(chunk, n_packets - lo)
            i = np.arange(lo, lo + n, dtype=np.uint64)
            t = EPOCH_US + (i.astype(np.float64) * step_us).astype(np.int64)
            src = pool[rng.integers(0, clients, n)]
            server = rng.integers(0, len(FLOOD_SERVERS), n)
            dst, dport = FLOOD_SERVERS[server], FLOOD_PORTS[server]
            sport = rng.integers(1024, 65536, n)
            isn = ((i * mult + offset) & np.uint64(0xFFFFFFFF)).astype(np.int64)
            ipid = rng.integers(0, 1 << 16, n)
            buf = np.zeros((n, rec_len), np.uint8)
            rows = np.arange(n)
            if fmt == "pcap":
                for col, v in ((0, t // SECOND), (4, t % SECOND), (8, frame), (12, frame)):
                    put(buf, np.full(n, col), v, 4, little=True)
            else:
                for col, v in ((0, 6), (4, rec_len), (8, 0), (12, t >> 32), (16, t & 0xFFFFFFFF),
                               (20, frame), (24, frame), (rec_len - 4, rec_len)):
                    put(buf, np.full(n, col), v, 4, little=True)
            e = np.full(n, head)
            cmac = 0x020000000000 | (src.astype(np.int64) & 0xFFFFFF)
            put(buf, e, GATEWAY_MAC, 6)
            put(buf, e + 6, cmac, 6)
            put(buf, e + 12, 0x0800, 2)
            ip = e + 14
            src_words = (src >> 16).astype(np.int64) + (src & 0xFFFF)
            dst_words = (dst >> 16).astype(np.int64) + (dst & 0xFFFF)
            words = 0x4500 + 40 + ipid + (64 << 8 | 6) + src_words + dst_words
            words = (words & 0xFFFF) + (words >> 16)
            csum = ~((words & 0xFFFF) + (words >> 16)) & 0xFFFF
            for off, v, nb in ((0, 0x4500, 2), (2, 40, 2), (4, ipid, 2), (6, 0, 2), (8, 64 << 8 | 6, 2),
                               (10, csum, 2), (12, src, 4), (16, dst, 4)):
                put(buf, ip + off, v, nb, rows=rows)
            tcp = ip + 20
            for off, v, nb in ((0, sport, 2), (2, dport, 2), (4, isn, 4), (8, 0, 4), (12, 5 << 12 | SYN, 2),
                               (14, 64240, 2)):
                put(buf, tcp + off, v, nb, rows=rows)
            f.write(buf.tobytes())
    expected = {
        "file": out.name, "format": fmt, "snaplen": 128, "seed": seed, "shape": "flood", "clients": clients,
        "rate": rate, "packets": n_packets,
        "duration_s": round(int((n_packets - 1) * step_us) / SECOND, 6) if n_packets else 0.0,
        "connections": n_packets, "ipv6_packets": 0, "syn_packets": n_packets, "syn_ack_packets": 0,
        "rst_packets": 0, "syn_or_rst_packets": n_packets,
        "notes": {"syn": n_packets, "syn-retry": 0, "syn-ack": 0, "syn-ack-retry": 0, "ack": 0, "rst": 0},
        "handshakes": {"complete": 0, "refused": 0, "unanswered": n_packets, "incomplete": 0},
    }
    Path(f"{out}.expected.json").write_text(json.dumps(expected, indent=2) + "\n")
    return expected


LOOPBACK_MSS = 1400  # the clients' MSS: loopback's own (65,483) would carry a few MB in a few dozen packets


def _loopback_tools():
    """tests/loopback.py's recorder, servers and clients (one place for both tests and benchmarks)."""
    tests = str(Path(__file__).resolve().parent.parent / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    import loopback  # noqa: E402 - tests/loopback.py

    return loopback


def record_loopback(out: Path, n_packets: int, snaplen: int = 128, transfer_mb: float = 3.0,
                    threads: int = 3) -> dict:
    """Record real traffic on loopback with dumpcap into the pcapng ``out`` until it holds
    about ``n_packets`` packets: uploads and downloads of ``transfer_mb`` MB (``threads`` of
    each at once, the clients' MSS clamped to 1,400 bytes so a transfer is thousands of
    packets, as on a real link), short request-reply connections one after another
    (hundreds a second), connects refused by a closed port, and connects to a listener
    whose queue is full, unanswered (the SYN and one retry). Headers only (``snaplen``).
    Writes ``OUT.expected.json`` with the attempts made by outcome; returns it."""
    import socket
    import socketserver
    import threading
    import time

    lb = _loopback_tools()
    size = int(transfer_mb * 2**20)
    block = b"u" * 65536

    class Sink(socketserver.BaseRequestHandler):
        def handle(self):  # an upload: read to the end, then one short reply
            while self.request.recv(1 << 16):
                pass

    class Source(socketserver.BaseRequestHandler):
        def handle(self):  # a download: a one-line request, then size bytes
            self.request.recv(64)
            left = size
            while left > 0:
                left -= self.request.send(block[: min(left, len(block))])

    def server(handler):
        cls = type("S", (socketserver.ThreadingTCPServer,), {"request_queue_size": 1024, "daemon_threads": True,
                                                            "allow_reuse_address": True})
        srv = cls((lb.V4, 0), handler)
        threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return srv

    made = {"complete": 0, "refused": 0, "unanswered": 0, "incomplete": 0}
    lock, stop = threading.Lock(), threading.Event()

    def count(outcome, n=1):
        with lock:
            made[outcome] += n

    def transfer(port, upload):
        while not stop.is_set():
            with socket.socket() as s:
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, LOOPBACK_MSS)
                s.connect((lb.V4, port))
                count("complete")
                if upload:
                    left = size
                    while left > 0:
                        left -= s.send(block[: min(left, len(block))])
                    s.shutdown(socket.SHUT_WR)
                    s.recv(16)
                else:
                    s.sendall(b"GET\n")
                    while s.recv(1 << 16):
                        pass

    def shorts(port):
        while not stop.is_set():
            count("complete", len(lb.complete(lb.V4, port, 20)))

    def failures(closed, full):
        while not stop.is_set():
            count("refused", len(lb.refused(lb.V4, closed, 10)))
            count("unanswered", len(lb.unanswered(lb.V4, full, 4, wait=1.2)))

    bytes_per_packet = 24 + 28 + 4 + min(snaplen, 96)  # an EPB of a TCP/IPv4 header, near enough
    sink, source = server(Sink), server(Source)
    try:
        with lb.Server(lb.V4) as echo, lb.ClosedPort(lb.V4) as closed, lb.FullListener(lb.V4) as full:
            ports = [sink.server_address[1], source.server_address[1], echo.port, closed.port, full.port]
            with lb.record(shutil.which("dumpcap") or "dumpcap", out, ports, snaplen):
                workers = [threading.Thread(target=transfer, args=(p, up)) for p, up in
                           [(ports[0], True), (ports[1], False)] * threads]
                workers += [threading.Thread(target=shorts, args=(echo.port,)) for _ in range(2)]
                workers.append(threading.Thread(target=failures, args=(closed.port, full.port)))
                for w in workers:
                    w.start()
                try:
                    while out.stat().st_size < n_packets * bytes_per_packet:
                        time.sleep(0.05)
                finally:
                    stop.set()
                    for w in workers:
                        w.join()
    finally:
        for srv in (sink, source):
            srv.shutdown()
            srv.server_close()
    expected = {"file": out.name, "format": "pcapng", "snaplen": snaplen, "shape": "loopback",
                "handshakes": made, "transfer_mb": transfer_mb}
    Path(f"{out}.expected.json").write_text(json.dumps(expected, indent=2) + "\n")
    return expected


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--format", choices=["pcap", "pcapng"], default="pcap")
    ap.add_argument("--snaplen", type=int, default=128, help="bytes kept per frame; 0 keeps whole frames")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--shape", choices=["mixed", "upload", "download", "flood", "loopback"], default="mixed",
                    help="mixed: the connections above; upload, download: the same connections, their data "
                         "one way; flood: unanswered SYNs only (headers only); loopback: real traffic "
                         "recorded by dumpcap on lo (needs capture rights; pcapng)")
    ap.add_argument("--tunnel", choices=list(TUNNEL_BYTES), default="none",
                    help="mixed, upload, download: every frame inside VXLAN (with a VLAN tag inside) or GRE/ERSPAN II")
    ap.add_argument("--clients", type=int, default=1_000_000, help="--shape flood: client addresses")
    ap.add_argument("--rate", type=int, default=100_000, help="--shape flood: SYNs per second")
    a = ap.parse_args(argv)
    if a.shape == "flood":
        print(json.dumps(make_flood(a.out, a.packets, a.format, a.seed, a.clients, a.rate), indent=2))
        return
    if a.shape == "loopback":
        print(json.dumps(record_loopback(a.out, a.packets, a.snaplen or 128), indent=2))
        return
    if a.snaplen and a.snaplen < 94 + TUNNEL_BYTES[a.tunnel]:
        ap.error(f"--snaplen must be 0 or at least {94 + TUNNEL_BYTES[a.tunnel]} (the longest headers through TCP's)")
    print(json.dumps(make(a.out, a.packets, a.format, a.snaplen, a.seed, a.shape, a.tunnel), indent=2))


if __name__ == "__main__":
    main()
