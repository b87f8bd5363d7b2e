"""The calls of captures being scored, collected as the tracker closes each attempt
(``hs score``'s rhythm summary): :class:`CallLog`, compact columns with a bound on how many
attempts it keeps, and the table of addresses its :class:`~.callers.Calls` name, made into
text only for the few callers reported."""

from __future__ import annotations

from array import array

import numpy as np

from ..tracker import Closings
from .callers import Calls


class CallLog:
    """The calls of captures being scored, kept as the tracker closes attempts (give
    :meth:`add` as ``on_closes``), in compact columns: 51 bytes an attempt. Past ``limit``
    attempts it keeps no more (``full`` says so), so a flood cannot grow it, nor the
    analysis of it, without bound.

    >>> log = CallLog()
    >>> summary = score_files(["captures/home.pcapng"], on_closes=log.add)
    >>> callers, _ = analyse(log.calls())
    """

    def __init__(self, limit: int = 200_000):
        self.limit, self.full = limit, False
        self._ends = bytearray()          # client address, server address, server port: 34 bytes a call
        self._time, self._d1 = array("q"), array("q")
        self._outcome = array("B")

    def __len__(self) -> int:
        return len(self._time)

    def add(self, closings: Closings) -> None:
        room = self.limit - len(self._time)
        if len(closings) > room:
            self.full = True
        if room <= 0:
            return
        flows = closings.flows[:room]
        self._ends += np.concatenate([flows[:, :16], flows[:, 18:36]], axis=1).tobytes()
        self._time.frombytes(closings.syn_ns[:room].tobytes())
        self._d1.frombytes(closings.syn_to_syn_ack_ns[:room].tobytes())  # INT64_MIN (NO_DELAY) where none
        self._outcome.frombytes(closings.outcome[:room].tobytes())

    def calls(self) -> Calls:
        """The calls so far, times since the first of them."""
        n = len(self._time)
        ends = np.frombuffer(self._ends, np.uint8).reshape(n, 34)  # no copy
        time = np.frombuffer(self._time, np.int64) if n else np.zeros(0, np.int64)
        client, server, hosts = _address_ids(ends[:, :16], ends[:, 16:32])
        port = ends[:, 32:34].copy().view(">u2").ravel().astype(np.uint16)
        start = int(time.min()) if n else 0
        return Calls(client, server, port, time - start,
                     np.frombuffer(self._outcome, np.uint8) if n else np.zeros(0, np.uint8),
                     np.frombuffer(self._d1, np.int64) if n else np.zeros(0, np.int64),
                     hosts, int(time.max()) - start if n else 0)


class _Hosts:
    """Addresses as text, made only for the few a caller names (a flood has a million)."""

    def __init__(self, raw: np.ndarray):
        self.raw = raw  # (n, 16) uint8

    def __len__(self) -> int:
        return len(self.raw)

    def __getitem__(self, i: int) -> str:
        from ..segments import address_text

        return address_text(self.raw[i].tobytes())


def _address_ids(*columns: np.ndarray) -> tuple:
    """Each column of 16-byte addresses as indices into one table of them, and the table.
    Keys are a 64-bit mix of each address's two words, sorted (checked for the collision
    that never comes, then done exactly)."""
    words = [np.ascontiguousarray(c).view("<u8") for c in columns]
    keys = np.concatenate([(w[:, 0] * np.uint64(0x9E3779B97F4A7C15)) ^ w[:, 1] for w in words])
    unique, first, index = np.unique(keys, return_index=True, return_inverse=True)
    index = index.ravel().astype(np.uint32)
    both = np.concatenate(words)
    if not np.array_equal(both[first][index], both):
        _, first, index = np.unique(both.view([("a", "<u8"), ("b", "<u8")]).ravel(), return_index=True,
                                    return_inverse=True)
        index = index.ravel().astype(np.uint32)
    n = len(columns[0])
    raw = both[first].view(np.uint8).reshape(-1, 16)
    return (*(index[i * n:(i + 1) * n] for i in range(len(columns))), _Hosts(raw))
