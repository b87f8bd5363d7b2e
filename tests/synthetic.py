"""A plausible score of any size, built directly (no capture), for tests and benchmarks.

Attempts open at random with realistic gaps (dense bursts, equal times,
pauses of seconds), on a few IPv4 and IPv6 hosts, each following one of the
shapes a capture shows: complete, complete after a SYN or SYN-ACK retry,
refused, unanswered with 0-3 SYN retries, reset after the SYN-ACK, half-open.
Some attempts have microsecond times (a pcap), the others nanoseconds. The
score is cut at exactly ``n`` notes, as a capture ends; each attempt's
outcome and delays are worked out from the notes it kept, so the score is
consistent in itself. Same ``n`` and ``seed``, same score.
"""

from __future__ import annotations

import numpy as np

from handshake_score.score import NO_DELAY, NOTE, Score, Source
from handshake_score.tracker import Kind, Outcome

SYN, SYN_RETRY, SYN_ACK, SYN_ACK_RETRY, ACK, RST = range(6)
assert Kind.ALL[SYN_ACK_RETRY] == "syn-ack-retry" and Kind.ALL[RST] == "rst"
CLIENTS = [["10.0.0.1", "10.0.0.2", "192.168.1.20"], ["2001:db8::1", "fe80::1"]]
SERVERS = [["93.184.216.34", "127.0.0.1"], ["2606:2800:220:1::248", "::1"]]
SERVER_PORTS = np.array([443, 80, 8080, 22, 6379], np.uint16)
START_NS = 1_700_000_000 * 10**9
S = 10**9

# shape: (share of attempts, kinds, which offsets: "0" the SYN, "d1" its answer, "d2" the ACK after it,
# "1s"/"3s"/"7s" retry timers)
SHAPES = [
    (0.80, [SYN, SYN_ACK, ACK], ["0", "d1", "d1+d2"]),
    (0.03, [SYN, SYN_RETRY, SYN_ACK, ACK], ["0", "1s", "1s+d1", "1s+d1+d2"]),
    (0.02, [SYN, SYN_ACK, SYN_ACK_RETRY, ACK], ["0", "d1", "d1+1s", "d1+1s+d2"]),
    (0.06, [SYN, RST], ["0", "d1"]),
    (0.01, [SYN], ["0"]),
    (0.01, [SYN, SYN_RETRY], ["0", "1s"]),
    (0.01, [SYN, SYN_RETRY, SYN_RETRY], ["0", "1s", "3s"]),
    (0.01, [SYN, SYN_RETRY, SYN_RETRY, SYN_RETRY], ["0", "1s", "3s", "7s"]),
    (0.03, [SYN, SYN_ACK, RST], ["0", "d1", "d1+d2"]),
    (0.02, [SYN, SYN_ACK, SYN_ACK_RETRY, SYN_ACK_RETRY], ["0", "d1", "d1+1s", "d1+3s"]),
]


def synthetic_score(n: int, seed: int = 0) -> Score:
    """A score of exactly ``n`` notes (see the module's docstring)."""
    rng = np.random.default_rng(seed)
    m = max(1, int(n / 2.9) + 50)  # attempts: ~3 notes each, with room to cut at n
    start = np.cumsum(_gaps(rng, m))
    shape = rng.choice(len(SHAPES), m, p=[s[0] for s in SHAPES])
    # answer delays: lognormal round-trips around 20 ms, 10% on loopback (~80 us); ACKs ~0.1 ms after
    d1 = np.where(rng.random(m) < 0.1, rng.lognormal(np.log(80e3), 0.5, m), rng.lognormal(np.log(20e6), 0.8, m))
    d2 = rng.lognormal(np.log(100e3), 1.5, m)
    jitter = rng.integers(0, 2_000_000, m)  # retry timers are not exact
    terms = {"0": 0, "d1": d1.astype(np.int64), "d2": d2.astype(np.int64),
             "1s": S + jitter, "3s": 3 * S + jitter, "7s": 7 * S + jitter}

    attempt, kind, time, order = [], [], [], []
    for i, (_, kinds, offsets) in enumerate(SHAPES):
        (which,) = np.nonzero(shape == i)
        for j, (k, offset) in enumerate(zip(kinds, offsets)):
            delay = sum(np.broadcast_to(terms[t], (m,))[which] for t in offset.split("+"))
            attempt.append(which)
            kind.append(np.full(len(which), k, np.uint8))
            time.append(start[which] + delay)
            order.append(np.full(len(which), j))
    attempt, kind, time, order = map(np.concatenate, (attempt, kind, time, order))
    pcap = rng.random(m) < 0.5  # half the attempts from a pcap with microsecond times
    time = np.where(pcap[attempt], time // 1000 * 1000, time)
    keep = np.lexsort((order, attempt, time))[:n]  # in time order; ties in attempt order; cut at n
    attempt, kind, time = attempt[keep], kind[keep], time[keep]

    notes = np.zeros(len(keep), NOTE)
    notes["time_ns"] = time
    notes["kind"] = kind
    _, first, index = np.unique(attempt, return_index=True, return_inverse=True)
    rank = np.empty(len(first), np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(1, len(first) + 1)
    notes["attempt"] = rank[index]
    notes["source"] = np.where(pcap[attempt], 1, 2)
    v6 = rng.random(m) < 0.2
    hosts, client, server = _hosts(rng, v6)
    notes["client"], notes["server"] = client[attempt], server[attempt]
    notes["client_port"] = rng.integers(32768, 61000, m)[attempt]
    notes["server_port"] = rng.choice(SERVER_PORTS, m)[attempt]
    _outcomes(notes, index)
    sources = [Source("synthetic-us.pcap", 0, "0" * 64, START_NS), Source("synthetic-ns.pcapng", 0, "0" * 64, START_NS)]
    return Score(notes, hosts, sources, START_NS, {"synthetic": {"n": n, "seed": seed}})


def _gaps(rng: np.random.Generator, m: int) -> np.ndarray:
    """Time from one attempt's SYN to the next (ns): mostly ~20 ms apart, with bursts
    (~50 us apart), equal times, and pauses of 2-30 s."""
    gap = rng.exponential(20e6, m)
    what = rng.random(m)
    gap = np.where(what < 0.25, rng.exponential(50e3, m), gap)
    gap = np.where(what < 0.05, 0, gap)
    gap = np.where(what > 0.995, rng.uniform(2e9, 30e9, m), gap)
    gap[0] = rng.uniform(0, 1e9)
    return gap.astype(np.int64)


def _hosts(rng: np.random.Generator, v6: np.ndarray) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The hosts table and each attempt's client and server index (same address family)."""
    hosts = [h for family in CLIENTS + SERVERS for h in family]
    at = {h: i for i, h in enumerate(hosts)}
    client = np.empty(len(v6), np.uint32)
    server = np.empty(len(v6), np.uint32)
    for family, mask in ((0, ~v6), (1, v6)):
        client[mask] = [at[h] for h in rng.choice(CLIENTS[family], mask.sum())]
        server[mask] = [at[h] for h in rng.choice(SERVERS[family], mask.sum())]
    return hosts, client, server


def _outcomes(notes: np.ndarray, index: np.ndarray) -> None:
    """Each note's attempt outcome and delays, from the notes of that attempt in the score."""
    a = len(np.unique(index))
    time, kind = notes["time_ns"], notes["kind"]

    def first(k: int) -> np.ndarray:  # each attempt's first note of kind k, or NO_DELAY
        t = np.full(a, np.iinfo(np.int64).max)
        mask = kind == k
        np.minimum.at(t, index[mask], time[mask])
        return np.where(t == np.iinfo(np.int64).max, NO_DELAY, t)

    syn, syn_ack, ack, rst = first(SYN), first(SYN_ACK), first(ACK), first(RST)
    has = lambda t: t != NO_DELAY
    outcome = np.select([has(ack), has(rst) & ~has(syn_ack), ~has(syn_ack)],
                        [Outcome.ALL.index(o) for o in (Outcome.COMPLETE, Outcome.REFUSED, Outcome.UNANSWERED)],
                        Outcome.ALL.index(Outcome.INCOMPLETE))
    notes["outcome"] = outcome[index]
    notes["syn_to_syn_ack_ns"] = np.where(has(syn_ack) & has(syn), syn_ack - syn, NO_DELAY)[index]
    notes["syn_ack_to_ack_ns"] = np.where(has(ack) & has(syn_ack), ack - syn_ack, NO_DELAY)[index]
