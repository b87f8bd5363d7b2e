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
once, through ``on_close``, when it leaves.

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

from .segments import ACK, INT64_MAX, INT64_MIN, RST, SYN, TcpBatch, flow_endpoints

_MOD = 0xFFFFFFFF
_BITMAP_MASK = np.uint32((1 << 20) - 1)


def _bucket(ack: np.ndarray) -> np.ndarray:
    """A bitmap slot from an acknowledgement number: the low bits of an ISN + 1, which
    are random, so they spread evenly (a crafted flood only makes the test pass more)."""
    return ack & _BITMAP_MASK


def _key(ack: np.ndarray, client_port: np.ndarray, server_port: np.ndarray) -> np.ndarray:
    return (ack.astype(np.uint64) << np.uint64(32)) | (client_port.astype(np.uint64) << np.uint64(16)) | server_port


def _among(values: np.ndarray, sorted_keys: np.ndarray) -> np.ndarray:
    """``np.isin`` for keys kept sorted (isin would sort them again every batch)."""
    if not len(values):
        return np.zeros(0, bool)
    if not len(sorted_keys):
        return np.zeros(len(values), bool)
    at = np.minimum(np.searchsorted(sorted_keys, values), len(sorted_keys) - 1)
    return sorted_keys[at] == values


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
    flow: bytes            # client -> server, see segments.SEGMENT
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


class Note(NamedTuple):
    """A strike: one packet of a handshake, at its capture time."""

    time_ns: int
    kind: str
    handshake: Handshake


_new_note = tuple.__new__  # Note(...) without the Python-level __new__ of a NamedTuple
_SYN_SENT, _SYN_ACK_SEEN, _ESTABLISHED = State.SYN_SENT, State.SYN_ACK_SEEN, State.ESTABLISHED
_SYN, _SYN_RETRY, _SYN_ACK, _SYN_ACK_RETRY, _ACK, _RST = Kind.ALL


class Prefilter:
    """Picks, with numpy, the segments that can change a handshake: every SYN and
    RST, and the plain ACKs whose ``(ack, client port, server port)`` matches a
    SYN-ACK seen within ``horizon_ns`` (this batch's or an earlier one's).

    It watches only the packet stream, never the tracker, so it can run ahead
    of it in another process. It passes a superset of what the tracker can use:
    an attempt lives at most ``timeout`` after its first SYN, which comes at most
    ``orphan`` after its SYN-ACK, so ``horizon = timeout + orphan`` loses no
    completing ACK. Past ``max_keys`` SYN-ACKs in that window (a flood of
    them) the oldest keys are dropped and counted in ``dropped``.
    """

    def __init__(self, horizon_ns: int, max_keys: int = 1 << 21):
        self.horizon_ns, self.max_keys = horizon_ns, max_keys
        self.dropped = 0
        self._keys = np.zeros(0, np.uint64)  # sorted
        self._times = np.zeros(0, np.int64)
        # The latest batches' keys, sorted apart and merged in now and then: an insertion
        # into this small array each batch costs far less than one into the large one.
        self._young = np.zeros(0, np.uint64)
        self._young_times = np.zeros(0, np.int64)
        self._kept = 0  # keys left after the last pruning
        self._bitmap = np.zeros(int(_BITMAP_MASK) + 1, bool)  # keys by _bucket: a cheap first test before the exact one
        self._now = -(1 << 62)

    def wanted(self, batch: TcpBatch) -> np.ndarray:
        """A boolean mask over ``batch``: the segments to feed the tracker."""
        flags = batch.flags
        syn = (flags & SYN) != 0
        keep = syn | ((flags & RST) != 0)
        synack = np.flatnonzero(syn & ((flags & ACK) != 0))
        if len(synack):  # the key of the ACK that would complete each SYN-ACK
            expected = batch.seq[synack] + np.uint32(1)
            self._bitmap[_bucket(expected)] = True
            self._remember(np.sort(_key(expected, batch.dport[synack], batch.sport[synack])),
                           int(batch.select(synack[-1:])["time_ns"][0]))
        if len(self._keys) or len(self._young):  # the bitmap first: it rules out nearly every ACK cheaply
            maybe = np.flatnonzero(self._bitmap[_bucket(batch.ack)] & ((flags & (SYN | RST | ACK)) == ACK))
            if len(maybe):
                keys = _key(batch.ack[maybe], batch.sport[maybe], batch.dport[maybe])
                order = np.argsort(keys)  # looked up in order, the binary searches stay in cache
                keys = keys[order]
                keep[maybe[order[_among(keys, self._keys) | _among(keys, self._young)]]] = True
        return keep

    def state(self) -> tuple:
        """What it remembers, to carry on in another process (see :meth:`restore`)."""
        self._merge()
        return self._keys, self._times, self._now, self._kept, self.dropped

    def restore(self, state: tuple) -> None:
        self._keys, self._times, self._now, self._kept, self.dropped = state
        self._young, self._young_times = self._keys[:0], self._times[:0]
        self._rebuild_bitmap()

    def _remember(self, fresh: np.ndarray, now: int) -> None:
        """Add sorted keys seen at ``now`` (the batch's last SYN-ACK: a little late, so kept a little long)."""
        self._now = max(self._now, now)
        at = np.searchsorted(self._young, fresh)
        self._young, self._young_times = np.insert(self._young, at, fresh), np.insert(self._young_times, at, self._now)
        if len(self._young) < max(4096, len(self._keys) >> 3):
            return
        self._merge()
        times = self._times
        if len(times) > 2 * max(self._kept, 4096):  # forget what no attempt can still use
            live = times > self._now - self.horizon_ns
            if np.count_nonzero(live) > self.max_keys:  # a flood of SYN-ACKs: keep the newest
                newest = np.partition(times[live], -self.max_keys)[-self.max_keys]
                self.dropped += int(np.count_nonzero(live & (times < newest)))
                live &= times >= newest
            self._keys, self._times = self._keys[live], times[live]
            self._kept = len(self._keys)
            self._rebuild_bitmap()

    def _merge(self) -> None:
        at = np.searchsorted(self._keys, self._young)
        self._keys, self._times = np.insert(self._keys, at, self._young), np.insert(self._times, at, self._young_times)
        self._young, self._young_times = self._young[:0], self._young_times[:0]

    def _rebuild_bitmap(self) -> None:
        self._bitmap[:] = False
        self._bitmap[_bucket((self._keys >> np.uint64(32)).astype(np.uint32))] = True


class HandshakeTracker:
    """Follows TCP handshakes through the segments it is fed.

    ``timeout_s``: how long an attempt stays in the table after its first SYN.
    ``max_attempts``: the table's size cap; past it the oldest are evicted.
    ``orphan_s``: how long a SYN-ACK seen before its SYN waits for it.
    ``linger_s``: how long a completed attempt stays (a server's SYN-ACK repeated
    meanwhile is a ``syn-ack-retry``: Linux resends it after 1, 3 and 7 s).
    ``on_close(handshake)``: called once per attempt when it leaves the table.
    ``first_id``: the id of the first attempt (ids then count up), so that the
    trackers of one run can number their attempts apart.
    """

    def __init__(self, timeout_s: float = 135.0, max_attempts: int = 200_000, orphan_s: float = 2.0,
                 linger_s: float = 10.0, on_close: Callable[[Handshake], None] | None = None,
                 first_id: int = 1):
        if timeout_s <= 0 or max_attempts < 1 or orphan_s < 0 or linger_s < 0:
            raise ValueError("timeout_s must be positive, orphan_s and linger_s not negative, max_attempts at least 1")
        self.timeout_ns = int(timeout_s * 1e9)
        self.linger_ns = int(linger_s * 1e9)
        self.orphan_ns = int(orphan_s * 1e9)
        self.max_attempts = max_attempts
        self.on_close = on_close
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
        self.prefilter = Prefilter(self.timeout_ns + self.orphan_ns, 4 * max_attempts)

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
        rows = zip(times.tolist(), segments["flow"].tolist(), segments["flags"].tolist(),
                   segments["seq"].tolist(), segments["ack"].tolist(), segments["payload"].tolist())
        flows, counts, append = self._flows, self.notes, notes.append
        # The common cases are inlined (a method call per packet is a third of the time);
        # every other case goes to the method that handles it in full.
        for t, flow, flags, seq, ack, payload in rows:
            if flags & SYN:
                if flags & RST:
                    continue  # SYN+RST is no handshake packet
                if flags & ACK:
                    rflow = flow[18:] + flow[:18]  # the SYN-ACK travels server -> client
                    h = flows.get(rflow)
                    if h is not None and h.state is _SYN_SENT and ack == (h.isn + 1) & _MOD:
                        h.server_isn, h.syn_ack_ns, h.syn_acks, h.state = seq, t, 1, _SYN_ACK_SEEN
                        counts[_SYN_ACK] += 1
                        append(_new_note(Note, (t, _SYN_ACK, h)))
                    else:
                        self._syn_ack(t, rflow, seq, ack, notes)
                elif flow in flows or self._orphans:
                    self._syn(t, flow, seq, payload, notes)
                else:  # a new attempt
                    h = Handshake(self._next_id, flow, seq, t, payload)
                    self._next_id += 1
                    flows[flow] = h
                    self._queue.append(h)
                    counts[_SYN] += 1
                    append(_new_note(Note, (t, _SYN, h)))
            elif flags & RST:
                self._rst(t, flow, flow[18:] + flow[:18], notes)
            elif flags & ACK:
                h = flows.get(flow)
                if h is not None and h.state is _SYN_ACK_SEEN and ack == (h.server_isn + 1) & _MOD:
                    h.ack_ns, h.state = t, _ESTABLISHED
                    counts[_ACK] += 1
                    append(_new_note(Note, (t, _ACK, h)))
                    self._done.append(h)
        self._now = max(self._now, int(times.max()))
        if len(flows) > self.max_attempts:
            self._evict()
        if len(self._queue) > 2 * len(flows) + 4096:  # closed attempts linger in the queue: let them go
            self._queue = deque(h for h in self._queue if not h.closed)
        if self._next_id - self._copied_at + len(segments) > self._room:  # the next batch might fill it
            self._compact(len(segments))
        return notes

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
        attempts older than the timeout leave the table."""
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
        horizon = self._now - self.orphan_ns
        orphans = self._orphans
        while orphans and next(iter(orphans.values()))[0] <= horizon:
            orphans.popitem(last=False)

    def close(self) -> None:
        """The capture has ended: report every attempt still in the table."""
        flows, self._flows = self._flows, {}
        for h in flows.values():
            self._close(h)
        self._queue.clear()
        self._done.clear()
        self._orphans.clear()

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
        h = self._flows.get(flow)
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
        self.notes[_SYN] += 1
        notes.append(_new_note(Note, (t, _SYN, h)))
        if self._orphans:
            orphan = self._orphans.pop(flow, None)
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
        h = self._flows.get(flow)
        if h is None:  # perhaps captured a moment before its SYN: wait for it a little
            orphan = self._orphans.get(flow)
            if orphan is None:
                self._orphans[flow] = [t, seq, ack, 1]
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
        h = self._flows.get(rflow)  # sent by the server of an attempt?
        by_server = h is not None and h.state <= _SYN_ACK_SEEN
        if not by_server:
            h = self._flows.get(flow)  # or by its client
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

    def _evict(self) -> None:
        queue = self._queue
        while len(self._flows) > self.max_attempts and queue:
            h = queue.popleft()
            if not h.closed:
                self.evicted += 1
                self._close(h)
