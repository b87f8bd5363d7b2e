"""Link types beyond Ethernet, cooked and raw IP: what each record's link header
carries, as an EtherType and the offset where that payload starts.

:func:`link` is called by :mod:`.decode` for every link type in :data:`NAMES`;
it returns, for records starting at ``s`` and ending at ``end``, the EtherType
of what follows the link header (0x0800 IPv4, 0x86DD IPv6, 0x8847 MPLS, ...;
0 for anything that cannot carry TCP) and its byte offset, and how many records
were skipped as protected (encrypted 802.11) frames.
"""

from __future__ import annotations

import numpy as np

NAMES: dict[int, str] = {}


def link(b, linktype: int, s: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    raise NotImplementedError(linktype)
