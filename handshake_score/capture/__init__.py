"""Recording traffic to pcapng with Wireshark's own capture engine, dumpcap.

>>> result = record(CaptureOptions(interface="lo", duration=10))
>>> result.files, result.handshakes["complete"]

dumpcap is driven directly, as a child process, not through pyshark: pyshark's
``LiveCapture`` runs tshark under an asyncio event loop, buffers its output
file and writes it only at close, and can leave a zombie dumpcap and
event-loop errors behind when stopped. Here dumpcap writes the file itself
(flushing as it goes), and this module reads the file as it grows
(:class:`~.sources.follow.FollowReader`) to count packets and handshakes.
Stopping (Ctrl-C, SIGTERM, SIGHUP, ``--duration``, ``--packets``) always goes
through dumpcap's own clean stop (SIGINT: it writes what it holds and closes
the file), then the child is waited for, so none is left running or as a
zombie. If dumpcap had to be killed, or the disk filled up, a record cut in
half at the end is cut off, so the file reads cleanly.

Privacy by default: a capture filter for TCP only (with the tunnels, VLAN tags,
MPLS and PPPoE sessions it may travel in: :func:`~.options.capture_filter`) and a
snap length of 160 bytes, so the headers are kept, a tunnel's and the TCP inside
it, and most of the payload is not.
"""

from .dumpcap import find_dumpcap, list_interfaces
from .options import (DEFAULT_FILTER, DEFAULT_SNAPLEN, CaptureFailed, CaptureOptions, CaptureResult, Interface,
                      Ring, Status, capture_filter, default_output, filter_for)
from .report import describe_start, interfaces_table, report, status_line, warnings_for
from .session import record

__all__ = ["CaptureFailed", "CaptureOptions", "CaptureResult", "DEFAULT_FILTER", "DEFAULT_SNAPLEN", "Interface",
           "Ring", "Status", "capture_filter", "default_output", "describe_start", "filter_for", "find_dumpcap",
           "interfaces_table", "list_interfaces", "record", "report", "status_line", "warnings_for"]
