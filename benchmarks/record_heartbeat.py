"""Record ``captures/heartbeat-loopback.pcapng``: devices that call home on a schedule, among random traffic.

    sudo python benchmarks/record_heartbeat.py [--seconds 180] [--out captures/heartbeat-loopback.pcapng]

No public capture we know of has a real schedule with a licence that lets us ship it, so this
records one on loopback, with dumpcap (tests/loopback.py's ``record``), headers only. Linux
answers on all of 127.0.0.0/8, so each "device" and "server" has an address of its own:

- 127.0.0.23 -> 127.0.0.53:8443 every 15 s, each call within +-2 % of its time (a smart
  speaker's heartbeat, the Echo's period);
- 127.0.0.31 -> 127.0.0.80:8883 every 5 s, about one call in six skipped (an MQTT keep-alive
  on a flaky device);
- 127.0.0.31 -> 127.0.0.80:8080 every 30 s, +-5 % (the same device's status report);
- 127.0.0.40 .. 127.0.0.45 -> 127.0.0.90:8000..8002 at random (Poisson, one connection every
  2 s on average in all): someone browsing.

Every connection is a whole handshake, a request and a reply. ``hs rhythm`` on the file
finds the three schedules and nothing else; ``hs plot --view rhythm`` draws docs/rhythm-heartbeat.png.
"""

from __future__ import annotations

import argparse
import heapq
import shutil
import socket
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from loopback import PAYLOAD, _Echo, record  # noqa: E402

SCHEDULES = [  # client, server, port, period s, jitter (share of the period), share of calls skipped
    ("127.0.0.23", "127.0.0.53", 8443, 15.0, 0.02, 0.0),
    ("127.0.0.31", "127.0.0.80", 8883, 5.0, 0.03, 1 / 6),
    ("127.0.0.31", "127.0.0.80", 8080, 30.0, 0.05, 0.0),
]
RANDOM_CLIENTS = [f"127.0.0.{n}" for n in range(40, 46)]
RANDOM_SERVER, RANDOM_PORTS, RANDOM_MEAN_S = "127.0.0.90", (8000, 8001, 8002), 2.0


def servers(stack: ExitStack) -> None:
    import socketserver
    import threading

    for host, port in {(s, p) for _, s, p, *_ in SCHEDULES} | {(RANDOM_SERVER, p) for p in RANDOM_PORTS}:
        cls = type("S", (socketserver.ThreadingTCPServer,), {"daemon_threads": True, "allow_reuse_address": True})
        server = cls((host, port), _Echo)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        stack.callback(server.server_close)
        stack.callback(server.shutdown)


def connect(client: str, server: str, port: int) -> None:
    with socket.socket() as s:
        s.bind((client, 0))
        s.settimeout(5)
        s.connect((server, port))
        s.sendall(PAYLOAD)
        s.recv(1024)


def plan(seconds: float, rng: np.random.Generator) -> list[tuple[float, str, str, int]]:
    """Every connection to make: (seconds after the start, client, server, port)."""
    calls = []
    for client, server, port, period, jitter, skipped in SCHEDULES:
        phase = rng.uniform(0.5, period)
        for k in range(int((seconds - phase) // period) + 1):
            if rng.random() >= skipped:
                calls.append((phase + k * period + rng.uniform(-jitter, jitter) * period, client, server, port))
    t = rng.exponential(RANDOM_MEAN_S)
    while t < seconds:
        calls.append((t, str(rng.choice(RANDOM_CLIENTS)), RANDOM_SERVER, int(rng.choice(RANDOM_PORTS))))
        t += rng.exponential(RANDOM_MEAN_S)
    heapq.heapify(calls)
    return [heapq.heappop(calls) for _ in range(len(calls))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--out", type=Path, default=ROOT / "captures" / "heartbeat-loopback.pcapng")
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    dumpcap = shutil.which("dumpcap") or sys.exit("dumpcap is not installed (apt-get install tshark)")
    todo = plan(args.seconds, np.random.default_rng(args.seed))
    ports = sorted({p for _, _, _, p in todo})
    with ExitStack() as stack:
        servers(stack)
        with record(dumpcap, args.out, ports, snaplen=128):
            start = time.monotonic()
            for at, client, server, port in todo:
                time.sleep(max(0.0, start + at - time.monotonic()))
                connect(client, server, port)
    print(f"wrote {args.out}: {len(todo)} connections over {args.seconds:g} s")


if __name__ == "__main__":
    main()
