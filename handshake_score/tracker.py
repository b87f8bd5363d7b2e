"""The handshake tracker: one state machine for recorded and live captures.

Fed TCP segments in capture order, it follows each connection attempt through
named states, as Zeek's TCP analyzer names a connection's, and emits a
:class:`Note` the moment a packet of the handshake is seen:

    SYN_SENT --SYN-ACK--> SYN_ACK_SEEN --ACK--> ESTABLISHED
        \\--RST (server)--> REFUSED     \\--RST--> RESET

An attempt is (client address and port, server address and port, client ISN).
Its record leaves the table when an RST ends it, when the same ports open a
new attempt, ``linger_s`` after its completing ACK (time for a server's SYN-ACK
retransmissions to be heard), when it is ``timeout_s`` old (long enough for a
client's SYN retries: Linux gives up after 127 s), or, past ``max_attempts``
open records, oldest first (counted as evicted). So memory follows the
handshakes in flight, not the length of the capture. Each record is reported
once, through ``on_close``, when it leaves (and through ``on_closes`` with the
others of the same step, as columns).

Most segments of a capture are data and ACKs that cannot touch a handshake.
:class:`Prefilter` picks, with numpy, the few that can; feeding all segments
gives exactly the same notes, only slower.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass
from enum import IntEnum
from typing import Callable, NamedTuple

import numpy as np

from .segments import ACK, INT64_MAX, INT64_MIN, RST, SYN, ZERO_HIGH, TcpBatch, flow_endpoints

_MOD = 0xFFFFFFFF
_BUCKETS = 1 << 20
_ARM, _PASS = 0, 1  # prefilter events: a key armed (by a SYN-ACK, or a SYN that may adopt one), an ACK that may spend it
_U64 = np.uint64
_M1, _M2 = _U64(0xBF58476D1CE4E5B9), _U64(0x94D049BB133111EB)
_K = tuple(_U64(k) for k in (0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93,
                             0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53))
_LOW32 = _U64(0xFFFFFFFF)
_PORT_BUCKETS = 1 << 18
_NO_ROW = np.iinfo(np.int64).max
_FLOW_MASK = _U64(_PORT_BUCKETS - 1)
_ZERO = ZERO_HIGH  # TcpBatch.addresses's high halves when every address is IPv4


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijection of 64-bit numbers in which every input bit moves
    about half the output bits."""
    x = x ^ (x >> _U64(30))
    x *= _M1
    x ^= x >> _U64(27)
    x *= _M2
    return x ^ (x >> _U64(31))


def _key(ack: np.ndarray, client_port: np.ndarray, server_port: np.ndarray) -> np.ndarray:
    """What a completing ACK carries: the server's ISN + 1 and the two ports, exactly."""
    return (ack.astype(np.uint64) << _U64(32)) | (client_port.astype(np.uint64) << _U64(16)) | server_port.astype(np.uint64)


def _bucket(key: np.ndarray) -> np.ndarray:
    """A bitmap slot from a key: the low bits of its ISN + 1, which are random, so they spread
    evenly (a crafted flood only makes more ACKs take the exact test)."""
    return ((key >> _U64(32)) & _U64(_BUCKETS - 1)).astype(np.intp)


def _port_bucket(ports: np.ndarray) -> np.ndarray:
    """A slot of a small bitmap from client port << 16 | server port (Fibonacci hashing)."""
    return ((ports.astype(np.uint64) * _K[0]) >> _U64(64 - 18)).astype(np.intp)


def _hash_flow(client: tuple, server: tuple, ports: np.ndarray, context: np.ndarray | None = None) -> np.ndarray:
    """A 64-bit hash of a four-tuple: client and server addresses (each as two ``uint64``
    halves, the high ones 0 for IPv4) and ``ports`` = client port << 16 | server port,
    and its ``context`` (VLANs and tunnels, when attempts are keyed by them).
    Each part has its own multiplier, so a four-tuple and its mirror image differ."""
    h = (client[1] * _K[1]) ^ (server[1] * _K[3]) ^ ((ports & _LOW32) * _K[4])
    if client[0] is not _ZERO or server[0] is not _ZERO:  # an IPv6 address among them
        h ^= (client[0] * _K[0]) ^ (server[0] * _K[2])
    if context is not None:
        h ^= context * _K[5]
    return _mix(h)


def _flow(batch: TcpBatch, rows: np.ndarray, ports: np.ndarray) -> np.ndarray:
    """The four-tuple hash of segments ``rows`` sent by the client (SYNs, ACKs)."""
    sh, sl, dh, dl = batch.addresses(rows)
    return _hash_flow((sh, sl), (dh, dl), ports, batch.context(rows))


def _slot(flow: np.ndarray, key: np.ndarray) -> np.ndarray:
    """A 64-bit hash of (four-tuple, server ISN + 1): one attempt's completing ACK (the
    four-tuple's hash is mixed already)."""
    return flow ^ ((key >> _U64(32)) * _K[0])


def _pairs(values: np.ndarray, sorted_values: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every (i, j) with ``values[i] == sorted_values[k]`` and ``j = order[k]``: the matches of
    ``values`` in an array whose sorted values and sorting order are given."""
    lo = np.searchsorted(sorted_values, values, "left")
    count = np.searchsorted(sorted_values, values, "right") - lo
    if not count.any():
        return lo[:0], lo[:0]
    i = np.repeat(np.arange(len(values)), count)
    k = np.repeat(lo - np.cumsum(count) + count, count) + np.arange(len(i))
    return i, order[k]


class _Armed:
    """Armed keys sorted by slot hash: the slot, its key and when it was armed
    (nanoseconds); ``oldest`` is at most the least time."""

    __slots__ = ("slot", "key", "time", "oldest")

    def __init__(self, slot=None, key=None, time=None):
        self.slot = np.zeros(0, np.uint64) if slot is None else slot
        self.key = np.zeros(0, np.uint64) if key is None else key
        self.time = np.zeros(0, np.int64) if time is None else time
        self.oldest = int(self.time.min()) if len(self.time) else 1 << 62

    def __len__(self) -> int:
        return len(self.slot)

    def fields(self) -> tuple:
        return self.slot, self.key, self.time

    def find(self, slot: np.ndarray, key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each (slot, key): whether it is here, and where (valid where it is)."""
        if not len(self.slot):
            return np.zeros(len(slot), bool), np.zeros(len(slot), np.intp)
        at = np.minimum(np.searchsorted(self.slot, slot), len(self.slot) - 1)
        return (self.slot[at] == slot) & (self.key[at] == key), at

    def keep(self, mask: np.ndarray) -> None:
        self.slot, self.key, self.time = self.slot[mask], self.key[mask], self.time[mask]

    def add(self, slot, key, time: int) -> None:
        order = np.argsort(slot)
        at = np.searchsorted(self.slot, slot[order])
        self.slot, self.key = np.insert(self.slot, at, slot[order]), np.insert(self.key, at, key[order])
        self.time = np.insert(self.time, at, time)
        self.oldest = min(self.oldest, time)

    def drop_older(self, limit: int) -> np.ndarray:
        """Forget the entries armed at ``limit`` or before; their keys."""
        if self.oldest > limit:
            return self.key[:0]
        old = self.time <= limit
        gone = self.key[old]
        self.keep(~old)
        self.oldest = int(self.time.min()) if len(self.time) else 1 << 62
        return gone


class _Spent:
    """Keys spent lately, kept ``orphan_ns`` for a SYN that may arm them again: chunks of
    (time, slot, key, four-tuple hash) in the order spent. Bitmaps of their ports and of
    their four-tuples, this ``orphan_ns`` epoch's and the last's, rule out nearly every
    SYN cheaply (a bit set too long only sends a SYN to the exact test)."""

    def __init__(self, orphan_ns: int):
        self.orphan_ns, self.span = orphan_ns, max(orphan_ns, 1)
        self.chunks: deque = deque()
        self.count = 0
        self.epoch = None
        self.ports, self.last_ports = np.zeros(_PORT_BUCKETS, bool), np.zeros(_PORT_BUCKETS, bool)
        self.flows, self.last_flows = np.zeros(_PORT_BUCKETS, bool), np.zeros(_PORT_BUCKETS, bool)
        self._all = None

    def __len__(self) -> int:
        return self.count

    def add(self, slot, key, flow, time: int) -> None:
        epoch = time // self.span
        if self.epoch is None or epoch > self.epoch:
            self.last_ports, self.ports = self.ports, self.last_ports
            self.last_flows, self.flows = self.flows, self.last_flows
            self.ports[:] = False
            self.flows[:] = False
            if self.epoch is None or epoch > self.epoch + 1:
                self.last_ports[:] = False
                self.last_flows[:] = False
            self.epoch = epoch
        self.ports[_port_bucket(key & _LOW32)] = True
        self.flows[(flow & _FLOW_MASK).astype(np.intp)] = True
        last = self.chunks[-1] if self.chunks else None
        if last is not None and len(last[1]) < 4096:  # tiny batches (live): few chunks, each kept as long as its newest
            self.chunks[-1] = (time, *(np.concatenate([a, b]) for a, b in zip(last[1:], (slot, key, flow))))
        else:
            self.chunks.append((time, slot, key, flow))
        self.count += len(slot)
        self._all = None

    def maybe(self, buckets: np.ndarray) -> np.ndarray:
        """Whether a key with ports in ``buckets`` (see _port_bucket) may be here."""
        return self.ports[buckets] | self.last_ports[buckets]

    def maybe_flow(self, flow: np.ndarray) -> np.ndarray:
        """Whether a key of four-tuple hash ``flow`` may be here."""
        at = (flow & _FLOW_MASK).astype(np.intp)
        return self.flows[at] | self.last_flows[at]

    def drop_older(self, limit: int) -> None:
        chunks = self.chunks
        while chunks and chunks[0][0] <= limit:
            self.count -= len(chunks.popleft()[1])
            self._all = None

    def fields(self) -> tuple:
        """(slot, key, flow, time) of every key here."""
        if self._all is None:
            c = self.chunks
            self._all = (np.concatenate([x[1] for x in c] or [np.zeros(0, np.uint64)]),
                         np.concatenate([x[2] for x in c] or [np.zeros(0, np.uint64)]),
                         np.concatenate([x[3] for x in c] or [np.zeros(0, np.uint64)]),
                         np.concatenate([np.full(len(x[1]), x[0], np.int64) for x in c] or [np.zeros(0, np.int64)]))
        return self._all


class Prefilter:
    """Picks, with numpy, the segments that can change a handshake: every SYN and
    RST, and of the plain ACKs only those that can complete an attempt.

    A SYN-ACK *arms* the key of the ACK that completes its attempt: its
    four-tuple and its sequence number + 1 (an upload's ACKs all carry that number
    too, so the number alone would let the whole upload through). The first ACK of
    that four-tuple carrying it passes and *spends* the key: the tracker completes the
    attempt on exactly that ACK (its first ACK with that number after the SYN-ACK), so
    the ACKs after it, a whole upload, never reach it. A SYN-ACK repeated later arms
    the key again (its ``syn-ack-retry`` note is heard, and the next ACK passes). A
    SYN-ACK seen before its SYN waits, in the tracker, for the SYN: so a SYN re-arms
    the keys of its four-tuple spent within ``orphan_ns``. Events are ordered by
    packet, not by batch: a batch of any size gives the tracker the same segments.

    It watches only the packet stream, never the tracker, so it can run ahead of it
    in another process; it passes a superset of what the tracker can use (arming a
    key too often only passes an ACK too many). An attempt lives at most ``timeout``
    after its first SYN, which comes at most ``orphan`` after its SYN-ACK, so a key is
    kept ``horizon = timeout + orphan`` unspent. Past ``max_keys`` armed keys (a flood
    of SYN-ACKs) the oldest are dropped and counted in ``dropped``. Four-tuples are
    compared by a 64-bit hash of their addresses and ports: two distinct ones with the
    same ports and ISN would also need the same hash for one to spend the other's key.

    Most batches hold no SYN-ACK repeated, no SYN after its SYN-ACK and no second ACK
    of a key: the work that only those need is done only for the few segments that
    may be one (bitmaps of ACK numbers and of ports pick them).
    """

    def __init__(self, horizon_ns: int, max_keys: int = 1 << 21, orphan_ns: int | None = None):
        self.horizon_ns, self.max_keys = horizon_ns, max_keys
        self.orphan_ns = horizon_ns if orphan_ns is None else orphan_ns
        self.dropped = 0
        self._armed = _Armed()  # keys an ACK may still spend
        self._spent = _Spent(self.orphan_ns)  # keys spent, kept orphan_ns for a SYN that may arm them again
        self._count = np.zeros(_BUCKETS, np.int32)  # armed keys by _bucket
        self._bitmap = np.zeros(_BUCKETS, bool)     # _count > 0: a cheap first test before the exact one
        self._first = np.full(_PORT_BUCKETS, _NO_ROW, np.int64)  # scratch: a batch's first event by ports
        self._now = -(1 << 62)  # the latest SYN-ACK's time

    def wanted(self, batch: TcpBatch) -> np.ndarray:
        """A boolean mask over ``batch``: the segments to feed the tracker."""
        flags = batch.flags
        syn = (flags & SYN) != 0
        keep = syn | ((flags & RST) != 0)
        is_synack = syn & ((flags & ACK) != 0)
        synack = np.flatnonzero(is_synack)
        armed, spent, bitmap = self._armed, self._spent, self._bitmap
        if not (len(synack) or len(armed) or len(spent)):
            return keep  # nothing armed: no ACK can matter (a SYN flood, a capture of data only)
        events = []  # (slot, key, flow, row, kind), each in packet order
        syns = np.flatnonzero(syn & ~is_synack)
        syn_ports = _ports(batch, syns)
        syn_buckets = _port_bucket(syn_ports)
        if len(syns) and len(spent):  # a SYN arms again the keys its four-tuple spent (an orphan's)
            hit = spent.maybe(syn_buckets)
            if hit.any():
                rows = syns[hit]
                flows = _flow(batch, rows, syn_ports[hit])
                again = spent.maybe_flow(flows)
                e = None if not again.any() else self._rearm(flows[again], rows[again], spent.fields()[:3],
                                                             np.full(len(spent), -1, np.int64))
                if e is not None:
                    events.append(e)
                    bitmap[_bucket(e[1])] = True  # for this batch; set right again in _settle
        if len(synack):
            self._now = max(self._now, int(batch.times(synack[-1:])[0]))
            bitmap[((batch.seq[synack] + np.uint32(1)) & np.uint32(_BUCKETS - 1)).astype(np.intp)] = True
        # SYN-ACKs and the ACKs that may spend a key, in packet order
        maybe = bitmap[(batch.ack & np.uint32(_BUCKETS - 1)).astype(np.intp)] & ((flags & (SYN | RST | ACK)) == ACK)
        rows = np.flatnonzero(maybe | is_synack) if len(synack) else np.flatnonzero(maybe)
        if len(rows):
            arm = is_synack[rows] if len(synack) else np.zeros(len(rows), bool)
            sport, dport = batch.sport[rows], batch.dport[rows]
            if len(synack):  # a SYN-ACK travels server -> client
                number = np.where(arm, batch.seq[rows] + np.uint32(1), batch.ack[rows])
                sport, dport = np.where(arm, dport, sport), np.where(arm, sport, dport)
            else:
                number = batch.ack[rows]
            key = _key(number, sport, dport)
            sh, sl, dh, dl = batch.addresses(rows)
            if len(synack):
                sl, dl = np.where(arm, dl, sl), np.where(arm, sl, dl)
                if sh is not _ZERO:
                    sh, dh = np.where(arm, dh, sh), np.where(arm, sh, dh)
            flow = _hash_flow((sh, sl), (dh, dl), key, batch.context(rows))  # the context: the same both ways
            kind = (~arm).view(np.int8)
            slot = _slot(flow, key)
            if not events and not len(synack):  # ACKs only: the bitmap's false hits (no armed key) go no further
                known, _ = armed.find(slot, key)
                slot, rows, key, flow, kind = slot[known], rows[known], key[known], flow[known], kind[known]
            if len(rows):
                events.append((slot, key, flow, rows, kind))
                if len(syns):  # a SYN after an event of its four-tuple in this batch may adopt its SYN-ACK
                    e = self._in_batch(batch, syns, syn_ports, syn_buckets, events[-1])
                    if e is not None:
                        events.append(e)
        if events:
            self._settle(events, keep)
        elif len(synack):
            b = ((batch.seq[synack] + np.uint32(1)) & np.uint32(_BUCKETS - 1)).astype(np.intp)
            bitmap[b] = self._count[b] > 0
        self._prune()
        return keep

    @staticmethod
    def _rearm(flows: np.ndarray, rows: np.ndarray, pool: tuple, pool_rows: np.ndarray):
        """ARM events at SYNs ``rows`` (four-tuple hashes ``flows``) for each key of ``pool``
        (slot, key, flow) of the same four-tuple seen before (``pool_rows``: -1 for an earlier batch)."""
        few = np.sort(flows)  # a few SYNs against a pool of thousands: no sort of the pool
        at = np.minimum(np.searchsorted(few, pool[2]), len(few) - 1)
        near = np.flatnonzero(few[at] == pool[2])
        if not len(near):
            return None
        order = near[np.argsort(pool[2][near])]
        i, j = _pairs(flows, pool[2][order], order)
        later = pool_rows[j] < rows[i]
        if not later.any():
            return None
        i, j = i[later], j[later]
        return pool[0][j], pool[1][j], pool[2][j], rows[i], np.zeros(len(i), np.int8)

    def _in_batch(self, batch: TcpBatch, syns: np.ndarray, syn_ports: np.ndarray, syn_buckets: np.ndarray,
                  event: tuple):
        """ARM events for the SYNs of this batch that follow an event of their four-tuple
        (those after the first event of their ports, then by their four-tuple)."""
        _, key, _, rows, _ = event
        first, buckets = self._first, _port_bucket(key & _LOW32)
        np.minimum.at(first, buckets, rows)
        hit = first[syn_buckets] < syns
        first[buckets] = _NO_ROW
        if not hit.any():
            return None
        at = syns[hit]
        return self._rearm(_flow(batch, at, syn_ports[hit]), at, event[:3], rows)

    def _settle(self, events, keep: np.ndarray) -> None:
        """Walk each slot's events in packet order: an ACK passes if the slot is armed
        when it comes (and spends it); then file each slot by its last event."""
        if len(events) == 1:
            slot, key, flow, row, kind = events[0]
            order = np.argsort(slot, kind="stable")  # in packet order already
        else:
            slot, key, flow, row, kind = (np.concatenate([e[k] for e in events]) for k in range(5))
            order = np.lexsort((row * 2 + kind, slot))
        slot, key, row, kind = slot[order], key[order], row[order], kind[order]
        n = len(slot)
        first = np.ones(n, bool)
        first[1:] = slot[1:] != slot[:-1]
        opening = np.flatnonzero(first)
        ends = np.append(opening[1:] - 1, n - 1)
        armed = self._armed
        in_table, at = armed.find(slot[opening], key[opening])
        armed_before = np.zeros(n, bool)
        armed_before[1:] = kind[:-1] == _ARM
        armed_before[opening] = in_table
        passing = (kind == _PASS) & armed_before
        keep[row[passing]] = True
        # a slot ends armed if its last event arms it, spent if its last event is an ACK that
        # follows an arming (then an ACK passed), else as it was
        end_arm = kind[ends] == _ARM
        spend = ~end_arm & np.logical_or.reduceat(passing, opening)
        gone = at[in_table & ~end_arm]
        changed = [_bucket(key[ends[end_arm]])]
        if len(gone):
            changed.append(_bucket(armed.key[gone]))
            np.subtract.at(self._count, changed[-1], 1)
            mask = np.ones(len(armed), bool)
            mask[gone] = False
        fresh = end_arm & ~in_table
        armed.time[at[in_table & end_arm]] = self._now  # armed again
        if len(gone):
            armed.keep(mask)
        if fresh.any():
            new = ends[fresh]
            armed.add(slot[new], key[new], self._now)
            np.add.at(self._count, changed[0][fresh[end_arm]], 1)
        if spend.any():
            e = ends[spend]
            self._spent.add(slot[e], key[e], flow[order[e]], self._now)
        changed.append(_bucket(key[kind == _ARM]))  # and the bits set for this batch
        changed = np.concatenate(changed)
        self._bitmap[changed] = self._count[changed] > 0

    def _prune(self) -> None:
        """Forget spent keys past ``orphan_ns`` and armed ones past the horizon (or past
        ``max_keys``, oldest first)."""
        self._spent.drop_older(self._now - self.orphan_ns)
        armed = self._armed
        if armed.oldest > self._now - self.horizon_ns and len(armed) <= self.max_keys:
            return
        gone = [armed.drop_older(self._now - self.horizon_ns)]
        if len(armed) > self.max_keys:  # a flood of SYN-ACKs: keep the newest
            before = len(armed)
            gone.append(armed.drop_older(int(np.partition(armed.time, -self.max_keys)[-self.max_keys]) - 1))
            self.dropped += before - len(armed)
        gone = np.concatenate(gone)
        if len(gone):
            b = _bucket(gone)
            np.subtract.at(self._count, b, 1)
            self._bitmap[b] = self._count[b] > 0

    def state(self) -> tuple:
        """What it remembers, to carry on in another process (see :meth:`restore`)."""
        return self._armed.fields(), self._spent.fields(), self._now, self.dropped

    def restore(self, state: tuple) -> None:
        armed, spent, self._now, self.dropped = state
        self._armed, self._spent = _Armed(*armed), _Spent(self.orphan_ns)
        slot, key, flow, time = spent
        for t in np.unique(time):
            at = time == t
            self._spent.add(slot[at], key[at], flow[at], int(t))
        self._count = np.bincount(_bucket(self._armed.key), minlength=_BUCKETS).astype(np.int32)
        self._bitmap = self._count > 0


def _ports(batch: TcpBatch, rows: np.ndarray) -> np.ndarray:
    """Client port << 16 | server port of segments sent by the client."""
    return (batch.sport[rows].astype(np.uint64) << _U64(16)) | batch.dport[rows].astype(np.uint64)


def _dict_room(n: int) -> int:
    """How many keys a copy of a dict of ``n`` keys takes before CPython moves it to a larger
    table: a copy gets the least power-of-two table of at least 1.5 n slots, two thirds of
    them usable (Objects/dictobject.c, estimate_log2_keysize and USABLE_FRACTION). Only
    memory depends on it being right."""
    size = 1 << ((3 * n + 1) // 2).bit_length()
    return (2 * size) // 3 - n


class Kind:
    """The note kinds: plain strings (an enum's hash is Python code, and notes are hot)."""

    SYN = "syn"
    SYN_RETRY = "syn-retry"
    SYN_ACK = "syn-ack"
    SYN_ACK_RETRY = "syn-ack-retry"
    ACK = "ack"
    RST = "rst"
    ALL = (SYN, SYN_RETRY, SYN_ACK, SYN_ACK_RETRY, ACK, RST)


class Outcome:
    """What became of an attempt."""

    COMPLETE = "complete"
    REFUSED = "refused"
    UNANSWERED = "unanswered"
    INCOMPLETE = "incomplete"
    ALL = (COMPLETE, REFUSED, UNANSWERED, INCOMPLETE)


class State(IntEnum):
    SYN_SENT = 1      # the client's SYN seen, no answer yet
    SYN_ACK_SEEN = 2  # the server answered; waiting for the client's ACK
    ESTABLISHED = 3   # the client's ACK completed the handshake
    REFUSED = 4       # the server reset it before any SYN-ACK
    RESET = 5         # reset by either side after the SYN-ACK, or by the client before it


@dataclass(slots=True, eq=False)
class Handshake:
    """One connection attempt and what became of it. Times are capture
    nanoseconds; ``None`` where that packet was never seen."""

    id: int
    flow: bytes            # client -> server, see segments.SEGMENT (+ its 8-byte context, keyed so)
    isn: int               # the client's initial sequence number
    syn_ns: int
    syn_data: int = 0      # payload of the SYN (TCP Fast Open)
    state: State = State.SYN_SENT
    server_isn: int | None = None
    syn_ack_ns: int | None = None
    ack_ns: int | None = None
    rst_ns: int | None = None
    syns: int = 1
    syn_acks: int = 0
    closed: bool = False

    @property
    def client(self) -> tuple[str, int]:
        return flow_endpoints(self.flow)[0]

    @property
    def server(self) -> tuple[str, int]:
        return flow_endpoints(self.flow)[1]

    @property
    def outcome(self) -> str:
        if self.state is _ESTABLISHED:
            return Outcome.COMPLETE
        if self.state is State.REFUSED:
            return Outcome.REFUSED
        return Outcome.UNANSWERED if self.syn_ack_ns is None else Outcome.INCOMPLETE

    @property
    def syn_to_syn_ack_ns(self) -> int | None:
        """First SYN to first SYN-ACK: negative when the capture saw the SYN-ACK first."""
        if self.syn_ack_ns is None:
            return None
        delay = self.syn_ack_ns - self.syn_ns
        return delay if INT64_MIN <= delay <= INT64_MAX else None  # else the times of a corrupt file

    @property
    def syn_ack_to_ack_ns(self) -> int | None:
        if self.ack_ns is None:
            return None
        delay = self.ack_ns - self.syn_ack_ns
        return delay if INT64_MIN <= delay <= INT64_MAX else None


class Closings:
    """Attempts that left the tracker in one step (a feed, a tick, the close), in the order
    they left, as the columns a score file, a summary and a call log take from them, each
    worked out once for all of them (``on_closes``: a Python call per attempt per reader
    is what this saves). A delay that :class:`Handshake` gives as None is ``INT64_MIN``
    here, and ``has_syn_to_syn_ack``/``has_syn_ack_to_ack`` say which are there; ``outcome``
    is the index in ``Outcome.ALL``; ``flows`` each attempt's 36-byte flow, client -> server
    (see ``segments.SEGMENT``), without a key's context."""

    __slots__ = ("handshakes", "id", "syn_ns", "outcome", "syn_to_syn_ack_ns", "syn_ack_to_ack_ns",
                 "has_syn_to_syn_ack", "has_syn_ack_to_ack", "flows")

    def __init__(self, handshakes: list[Handshake]):
        self.handshakes = handshakes
        n = len(handshakes)
        self.id = np.fromiter([h.id for h in handshakes], np.int64, n)
        self.syn_ns = np.fromiter([h.syn_ns for h in handshakes], np.int64, n)
        syn_ack, has_syn_ack = _times([h.syn_ack_ns for h in handshakes])
        ack, has_ack = _times([h.ack_ns for h in handshakes])
        state = np.fromiter([h.state for h in handshakes], np.int8, n)
        outcome = np.where(has_syn_ack, OUTCOME_CODE[Outcome.INCOMPLETE], OUTCOME_CODE[Outcome.UNANSWERED])
        outcome[state == State.ESTABLISHED] = OUTCOME_CODE[Outcome.COMPLETE]
        outcome[state == State.REFUSED] = OUTCOME_CODE[Outcome.REFUSED]
        self.outcome = outcome.astype(np.uint8)
        self.syn_to_syn_ack_ns, self.has_syn_to_syn_ack = _delays(self.syn_ns, syn_ack, has_syn_ack)
        self.syn_ack_to_ack_ns, self.has_syn_ack_to_ack = _delays(syn_ack, ack, has_ack & has_syn_ack)
        flows = b"".join([h.flow for h in handshakes])
        if len(flows) != 36 * n:  # keys with a context: its 8 bytes after each flow
            flows = b"".join([h.flow[:36] for h in handshakes])
        self.flows = np.frombuffer(flows, np.uint8).reshape(n, 36)

    def __len__(self) -> int:
        return len(self.handshakes)


OUTCOME_CODE = {o: i for i, o in enumerate(Outcome.ALL)}  # an attempt's outcome as Closings.outcome codes it


def _times(values: list) -> tuple[np.ndarray, np.ndarray]:
    """Times that may be None: as int64 (0 for None) and whether each is there."""
    column = np.array(values, object)
    there = column != None  # noqa: E711 (elementwise)
    column[~there] = 0
    return column.astype(np.int64), there.astype(bool)


def _delays(start: np.ndarray, end: np.ndarray, there: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``end - start`` where both are there and the difference fits an int64 (as
    :class:`Handshake`'s properties say), else INT64_MIN; and whether each is there."""
    delay = end - start  # wraps where it does not fit: ...
    there = there & (((end ^ start) & (end ^ delay)) >= 0)  # ... which is when start, end and delay disagree in sign
    return np.where(there, delay, INT64_MIN), there


class Note(NamedTuple):
    """A strike: one packet of a handshake, at its capture time."""

    time_ns: int
    kind: str
    handshake: Handshake


_new_note = tuple.__new__  # Note(...) without the Python-level __new__ of a NamedTuple
_SYN_SENT, _SYN_ACK_SEEN, _ESTABLISHED = State.SYN_SENT, State.SYN_ACK_SEEN, State.ESTABLISHED
_SYN, _SYN_RETRY, _SYN_ACK, _SYN_ACK_RETRY, _ACK, _RST = Kind.ALL


class HandshakeTracker:
    """Follows TCP handshakes through the segments it is fed.

    ``timeout_s``: how long an attempt stays in the table after its first SYN.
    ``max_attempts``: the table's size cap; past it the oldest are evicted.
    ``orphan_s``: how long a SYN-ACK seen before its SYN waits for it.
    ``linger_s``: how long a completed attempt stays (a server's SYN-ACK repeated
    meanwhile is a ``syn-ack-retry``: Linux resends it after 1, 3 and 7 s).
    ``on_close(handshake)``: called once per attempt when it leaves the table;
    ``on_closes(closings)``: the same attempts as :class:`Closings`, once per step
    (a feed, a tick, the close) in which any left, before that step's notes return.
    ``first_id``: the id of the first attempt (ids then count up), so that the
    trackers of one run can number their attempts apart.
    """

    def __init__(self, timeout_s: float = 135.0, max_attempts: int = 200_000, orphan_s: float = 2.0,
                 linger_s: float = 10.0, on_close: Callable[[Handshake], None] | None = None,
                 first_id: int = 1, on_closes: Callable[[Closings], None] | None = None):
        if timeout_s <= 0 or max_attempts < 1 or orphan_s < 0 or linger_s < 0:
            raise ValueError("timeout_s must be positive, orphan_s and linger_s not negative, max_attempts at least 1")
        self.timeout_ns = int(timeout_s * 1e9)
        self.linger_ns = int(linger_s * 1e9)
        self.orphan_ns = int(orphan_s * 1e9)
        self.max_attempts = max_attempts
        self.on_close = on_close
        self.on_closes = on_closes
        self._closing: list[Handshake] | None = None if on_closes is None else []  # left in this step
        self.notes = dict.fromkeys(Kind.ALL, 0)
        self.outcomes = dict.fromkeys(Outcome.ALL, 0)
        self.evicted = 0
        self._flows: dict[bytes, Handshake] = {}   # client->server flow -> its latest attempt
        self._queue: deque[Handshake] = deque()     # attempts in the order they opened
        self._done: deque[Handshake] = deque()      # completed attempts in the order they completed
        self._orphans: OrderedDict[bytes, list] = OrderedDict()  # flow -> [time, seq, ack, count]
        self._next_id = first_id
        self._copied_at, self._room = first_id, 1 << 12  # see _compact
        self._now = -(1 << 62)
        self.prefilter = Prefilter(self.timeout_ns + self.orphan_ns, 4 * max_attempts, self.orphan_ns)

    def feed_batch(self, batch: TcpBatch) -> list[Note]:
        """Feed the segments of ``batch`` that can change a handshake (see :class:`Prefilter`)."""
        if not len(batch):
            return []
        return self.feed(batch.select(self.prefilter.wanted(batch)))

    # -- the state machine ---------------------------------------------------------

    def feed(self, segments: np.ndarray) -> list[Note]:
        """Feed segments (an array of ``SEGMENT``) in capture order; the notes they make."""
        notes: list[Note] = []
        if not len(segments):
            return notes
        times = segments["time_ns"]
        self.tick(int(times[0]))
        keyed = "key" in segments.dtype.names  # SEGMENT_IN_CONTEXT: an attempt is its flow in its context
        rows = zip(times.tolist(), segments["key" if keyed else "flow"].tolist(), segments["flags"].tolist(),
                   segments["seq"].tolist(), segments["ack"].tolist(), segments["payload"].tolist())
        flows, counts, append = self._flows, self.notes, notes.append
        cap, timeout, now = self.max_attempts, self.timeout_ns, self._now
        # The common cases are inlined (a method call per packet is a third of the time);
        # every other case goes to the method that handles it in full. Time passes packet by
        # packet: an attempt past its deadline is never used again, whatever the batches (it
        # is closed when next looked up, or by the next tick, whichever comes first).
        for t, flow, flags, seq, ack, payload in rows:
            if t > now:
                now = t
            if flags & SYN:
                if flags & RST:
                    continue  # SYN+RST is no handshake packet
                if flags & ACK:
                    # the SYN-ACK travels server -> client (a key's context stays where it is)
                    rflow = flow[18:36] + flow[:18] + flow[36:] if keyed else flow[18:] + flow[:18]
                    h = flows.get(rflow)
                    if (h is not None and h.state is _SYN_SENT and ack == (h.isn + 1) & _MOD
                            and h.syn_ns > now - timeout):
                        h.server_isn, h.syn_ack_ns, h.syn_acks, h.state = seq, t, 1, _SYN_ACK_SEEN
                        counts[_SYN_ACK] += 1
                        append(_new_note(Note, (t, _SYN_ACK, h)))
                    else:
                        self._now = now
                        self._syn_ack(t, rflow, seq, ack, notes)
                elif flow in flows or self._orphans:
                    self._now = now
                    self._syn(t, flow, seq, payload, notes)
                else:  # a new attempt
                    h = Handshake(self._next_id, flow, seq, t, payload)
                    self._next_id += 1
                    flows[flow] = h
                    self._queue.append(h)
                    counts[_SYN] += 1
                    append(_new_note(Note, (t, _SYN, h)))
                    if len(flows) > cap:
                        self._now = now
                        self._evict()
            elif flags & RST:
                self._now = now
                self._rst(t, flow, flow[18:36] + flow[:18] + flow[36:] if keyed else flow[18:] + flow[:18], notes)
            elif flags & ACK:
                h = flows.get(flow)
                if (h is not None and h.state is _SYN_ACK_SEEN and ack == (h.server_isn + 1) & _MOD
                        and h.syn_ns > now - timeout):
                    h.ack_ns, h.state = t, _ESTABLISHED
                    counts[_ACK] += 1
                    append(_new_note(Note, (t, _ACK, h)))
                    self._done.append(h)
        self._now = now
        if len(self._queue) > 2 * len(flows) + 4096:  # closed attempts linger in the queue: let them go
            self._queue = deque(h for h in self._queue if not h.closed)
        if self._next_id - self._copied_at + len(segments) > self._room:  # the next batch might fill it
            self._compact(len(segments))
        if self._closing:
            self._hand_over()
        return notes

    def _hand_over(self) -> None:
        closing, self._closing = self._closing, []
        self.on_closes(Closings(closing))

    def _compact(self, batch: int) -> None:
        """Copy the attempt table before it grows. Attempts come and go (a SYN flood's at
        --max-attempts), and a dict never reuses the slots of deleted keys: once they are
        used up it moves to a new table three times its keys (twice the size a copy takes,
        and for a moment both tables). A copy made before that keeps it compact."""
        room = _dict_room(len(self._flows))
        if len(self._flows) >= 1 << 14 and room >= 2 * batch:
            self._flows = dict(self._flows)
        else:  # a small table, or a copy the next batches would outgrow at once: look again soon
            room = 1 << 12
        self._copied_at, self._room = self._next_id, room

    def tick(self, now_ns: int) -> None:
        """Let time pass (the live path calls this when the wire is quiet):
        attempts past their deadlines leave the table."""
        if now_ns > self._now:
            self._now = now_ns
        horizon = self._now - self.timeout_ns
        queue = self._queue
        while queue and queue[0].syn_ns <= horizon:
            h = queue.popleft()
            if not h.closed:
                self._close(h)
        horizon = self._now - self.linger_ns
        done = self._done
        while done and done[0].ack_ns <= horizon:
            h = done.popleft()
            if not h.closed:
                self._close(h)
        self._forget_orphans()
        if self._closing:
            self._hand_over()

    def _forget_orphans(self) -> None:
        horizon = self._now - self.orphan_ns
        orphans = self._orphans
        while orphans and next(iter(orphans.values()))[0] <= horizon:
            orphans.popitem(last=False)

    def _get(self, flow: bytes) -> Handshake | None:
        """The attempt of ``flow``, unless it is past its deadline (then it is closed now):
        what a tick just before this packet would have left."""
        h = self._flows.get(flow)
        if h is not None and (h.syn_ns <= self._now - self.timeout_ns
                              or (h.state is _ESTABLISHED and h.ack_ns <= self._now - self.linger_ns)):
            self._close(h)
            return None
        return h

    def _orphan(self, flow: bytes, pop: bool = False) -> list | None:
        """The SYN-ACK waiting for ``flow``'s SYN, unless it has waited too long."""
        orphan = self._orphans.pop(flow, None) if pop else self._orphans.get(flow)
        if orphan is not None and orphan[0] <= self._now - self.orphan_ns:
            self._orphans.pop(flow, None)
            return None
        return orphan

    def close(self) -> None:
        """The capture has ended: report every attempt still in the table."""
        flows, self._flows = self._flows, {}
        for h in flows.values():
            self._close(h)
        self._queue.clear()
        self._done.clear()
        self._orphans.clear()
        if self._closing:
            self._hand_over()

    @property
    def open_attempts(self) -> int:
        return len(self._flows)

    @property
    def next_id(self) -> int:
        """The id the next attempt will get."""
        return self._next_id

    @property
    def now(self) -> int:
        """The latest capture time seen, in nanoseconds."""
        return self._now

    def _note(self, notes: list, t: int, kind: str, h: Handshake) -> None:
        self.notes[kind] += 1
        notes.append(_new_note(Note, (t, kind, h)))

    def _syn(self, t: int, flow: bytes, isn: int, payload: int, notes: list) -> None:
        h = self._get(flow)
        if h is not None:
            if h.isn == isn:
                if h.state is _SYN_SENT or h.state is _SYN_ACK_SEEN:
                    h.syns += 1
                    self._note(notes, t, _SYN_RETRY, h)
                return  # a duplicate SYN after the handshake completed says nothing new
            self._close(h)  # the same ports with a new ISN: a new attempt
        h = Handshake(self._next_id, flow, isn, t, payload)
        self._next_id += 1
        self._flows[flow] = h
        self._queue.append(h)
        if len(self._flows) > self.max_attempts:
            self._evict()
        self.notes[_SYN] += 1
        notes.append(_new_note(Note, (t, _SYN, h)))
        if self._orphans:
            orphan = self._orphan(flow, pop=True)
            if orphan is not None and self._answers(h, orphan[2]):
                t0, seq, _, count = orphan
                h.server_isn, h.syn_ack_ns, h.syn_acks, h.state = seq, t0, count, _SYN_ACK_SEEN
                self._note(notes, t0, _SYN_ACK, h)
                for _ in range(count - 1):
                    self._note(notes, t0, _SYN_ACK_RETRY, h)

    @staticmethod
    def _answers(h: Handshake, ack: int) -> bool:
        return ack == (h.isn + 1) & _MOD or bool(h.syn_data and ack == (h.isn + 1 + h.syn_data) & _MOD)

    def _syn_ack(self, t: int, flow: bytes, seq: int, ack: int, notes: list) -> None:
        """``flow`` is client -> server (the SYN-ACK travels the other way)."""
        h = self._get(flow)
        if h is None:  # perhaps captured a moment before its SYN: wait for it a little
            orphan = self._orphan(flow)
            if orphan is None:
                self._orphans[flow] = [t, seq, ack, 1]
                if len(self._orphans) > self.max_attempts:
                    self._forget_orphans()
                    if len(self._orphans) > self.max_attempts:
                        self._orphans.popitem(last=False)
            elif orphan[2] == ack:
                orphan[3] += 1
            return
        if not self._answers(h, ack):
            return
        if h.syn_ack_ns is None:
            if h.state is not _SYN_SENT:
                return
            h.server_isn, h.syn_ack_ns, h.syn_acks, h.state = seq, t, 1, _SYN_ACK_SEEN
            self.notes[_SYN_ACK] += 1
            notes.append(_new_note(Note, (t, _SYN_ACK, h)))
        else:
            h.syn_acks += 1
            self._note(notes, t, _SYN_ACK_RETRY, h)

    def _rst(self, t: int, flow: bytes, rflow: bytes, notes: list) -> None:
        h = self._get(rflow)  # sent by the server of an attempt?
        by_server = h is not None and h.state <= _SYN_ACK_SEEN
        if not by_server:
            h = self._get(flow)  # or by its client
            if h is None or h.state > _SYN_ACK_SEEN:
                return
        h.rst_ns = t
        h.state = State.REFUSED if by_server and h.syn_ack_ns is None else State.RESET
        self._note(notes, t, _RST, h)
        self._close(h)

    def _close(self, h: Handshake) -> None:
        h.closed = True
        if self._flows.get(h.flow) is h:
            del self._flows[h.flow]
        self.outcomes[h.outcome] += 1
        if self.on_close is not None:
            self.on_close(h)
        if self._closing is not None:
            self._closing.append(h)

    def _evict(self) -> None:
        """Past ``max_attempts`` open attempts, close the oldest; one past its deadline
        leaves as it would have anyway, uncounted."""
        done = self._done
        if done and done[0].ack_ns <= self._now - self.linger_ns:
            self.tick(self._now)
        queue, horizon = self._queue, self._now - self.timeout_ns
        while len(self._flows) > self.max_attempts and queue:
            h = queue.popleft()
            if not h.closed:
                if h.syn_ns > horizon:
                    self.evicted += 1
                self._close(h)
