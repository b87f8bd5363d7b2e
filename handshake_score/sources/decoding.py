"""What the fast reader looks inside: the tunnels' UDP ports and the attempt key.

A plain value handed from the command line (or a Python caller) to the readers,
which hand it to :func:`~.decode.decode`.

>>> Decapsulation(vxlan_ports=(4789, 8472, 4790))      # a mirror on a third VXLAN port
>>> Decapsulation(context=True)                        # VLAN ids and tunnel endpoints too
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Decapsulation:
    """``*_ports``: the UDP destination ports read as each tunnel (IANA's, and
    Linux's old VXLAN port 8472). ``context``: also work out each segment's
    :meth:`~handshake_score.segments.TcpBatch.context` (its VLAN ids and the
    outer endpoints of the tunnels around it), for attempts keyed by them as
    well (Zeek's ``vlan_fivetuple``). ``max_depth``: how many headers of
    encapsulation are stepped through before a packet is given up (a loop of
    nested tunnels ends there)."""

    vxlan_ports: tuple[int, ...] = (4789, 8472)
    geneve_ports: tuple[int, ...] = (6081,)
    gtp_ports: tuple[int, ...] = (2152,)
    teredo_ports: tuple[int, ...] = (3544,)
    ayiya_ports: tuple[int, ...] = (5072,)
    context: bool = False
    max_depth: int = 8


DEFAULT = Decapsulation()
