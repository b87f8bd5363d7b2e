"""Make real TCP handshakes on loopback and record them with dumpcap.

``record(dumpcap, path, ports)`` runs dumpcap on ``lo`` with a capture filter
on exactly the given TCP ports plus one UDP port of its own. It knows dumpcap
is capturing, and later that every packet sent so far is on disk, by sending a
UDP datagram carrying a unique marker to itself and waiting until the marker's
bytes show up in the file: no fixed sleeps. The traffic is therefore the TCP
packets of the given ports plus a few UDP marker datagrams, which a handshake
scorer must ignore.

The clients return the local ports of their sockets (``getsockname()``), so
tests can check the notes name exactly the connections that were made.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import socketserver
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path

from conftest import missing

V4, V6 = "127.0.0.1", "::1"
PAYLOAD = b"hello handshake\n"


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


# -- capture ----------------------------------------------------------------

class Recording:
    """A running capture into ``path``."""

    def __init__(self, path: Path, proc: subprocess.Popen, stderr, udp: socket.socket):
        self.path, self.proc, self.stderr, self.udp = path, proc, stderr, udp

    def _dumpcap_error(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace").strip()

    def sync(self, timeout: float = 15.0) -> None:
        """Send a unique marker to ourselves until dumpcap has written it to the file
        (then every packet sent before it is on disk too: lo keeps order)."""
        token = b"hs" + os.urandom(6)  # 8 bytes: the datagram is 50 bytes on lo
        deadline, sent = time.monotonic() + timeout, 0.0
        while True:
            if self.proc.poll() is not None:
                err = self._dumpcap_error()
                if "permission" in err.lower() or "not permitted" in err.lower():
                    missing(f"dumpcap cannot capture on lo here: {err}")
                raise RuntimeError(f"dumpcap exited ({self.proc.returncode}): {err}")
            if self.path.exists() and token in self.path.read_bytes():
                return
            if time.monotonic() - sent > 0.25:  # resend: the first ones may predate the capture
                self.udp.sendto(token, self.udp.getsockname())
                sent = time.monotonic()
            if time.monotonic() > deadline:
                raise TimeoutError(f"dumpcap wrote no marker within {timeout} s: {self._dumpcap_error()}")
            time.sleep(0.01)


@contextmanager
def record(dumpcap: str, path: Path, ports, snaplen: int | None = None):
    """Capture TCP traffic of ``ports`` on lo into the pcapng file ``path``;
    yields once dumpcap is capturing, returns once the file is complete."""
    if snaplen is not None and snaplen < 50:
        raise ValueError("the markers need a snap length of at least 50")
    path = Path(path)
    path.unlink(missing_ok=True)
    with tempfile.TemporaryFile() as err:
        rec = None
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            udp.bind((V4, 0))
            filt = " or ".join([f"tcp port {p}" for p in ports] + [f"udp port {udp.getsockname()[1]}"])
            cmd = [dumpcap, "-i", "lo", "-f", filt, "-w", str(path), "-q"]
            cmd += ["-s", str(snaplen)] if snaplen else []
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
            rec = Recording(path, proc, err, udp)
            rec.sync()
            yield rec
            rec.sync()
        finally:
            if rec is not None and rec.proc.poll() is None:
                rec.proc.send_signal(signal.SIGINT)  # dumpcap writes its statistics block and closes the file
                try:
                    rec.proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    rec.proc.kill()
                    rec.proc.wait()
                    raise
            udp.close()
        if rec.proc.returncode != 0:
            raise RuntimeError(f"dumpcap failed ({rec.proc.returncode}): {rec._dumpcap_error()}")


# -- server -----------------------------------------------------------------

class _Echo(socketserver.BaseRequestHandler):
    def handle(self):
        data = self.request.recv(1024)
        self.request.sendall(data.upper())
        while self.request.recv(1024):  # wait for the client to close first
            pass


class Server:
    """A threaded echo server on ``host`` (127.0.0.1 or ::1), ephemeral port, deep backlog."""

    def __init__(self, host: str = V4):
        cls = type("S", (socketserver.ThreadingTCPServer,),
                   {"address_family": _family(host), "request_queue_size": 1024,
                    "daemon_threads": True, "allow_reuse_address": True})
        self.server = cls((host, 0), _Echo)
        self.host, self.port = host, self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


class ClosedPort:
    """A port nothing listens on, kept bound (not listening) so no one else can take it:
    a connect to it is refused, on loopback a SYN answered by RST/ACK."""

    def __init__(self, host: str = V4):
        self.host = host
        self.sock = socket.socket(_family(host), socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.port = self.sock.getsockname()[1]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.sock.close()


class FullListener:
    """A listener with a full accept queue (backlog 0, one connection made at once and
    never accepted, so before any capture starts): Linux drops the SYNs of further
    connects, which the clients retry (after 1 s) until they give up."""

    def __init__(self, host: str = V4):
        self.host = host
        self.sock = socket.create_server((host, 0), family=_family(host), backlog=0)
        self.port = self.sock.getsockname()[1]
        self.filler = socket.create_connection((host, self.port))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.filler.close()
        self.sock.close()


# -- clients ----------------------------------------------------------------

def complete(host: str, port: int, n: int) -> list[int]:
    """``n`` connections one after another: connect, send, read the reply, close.
    Returns the client ports."""
    ports = []
    for _ in range(n):
        with socket.create_connection((host, port), timeout=10) as s:
            ports.append(s.getsockname()[1])
            s.sendall(PAYLOAD)
            assert s.recv(1024) == PAYLOAD.upper()
    return ports


def refused(host: str, port: int, n: int) -> list[int]:
    """``n`` connects to a closed port, each refused. The socket is bound first so
    its port survives the failed connect. Returns the client ports."""
    ports = []
    for _ in range(n):
        with socket.socket(_family(host), socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            ports.append(s.getsockname()[1])
            try:
                s.connect((host, port))
            except ConnectionRefusedError:
                continue
            raise AssertionError(f"connect to closed port {port} was not refused")
    return ports


def unanswered(host: str, port: int, n: int, wait: float = 1.5) -> list[int]:
    """``n`` connects at once to a ``FullListener``, each given up after ``wait`` seconds
    (one SYN retry with Linux's 1 s initial timeout). Returns the client ports."""
    socks = [socket.socket(_family(host), socket.SOCK_STREAM) for _ in range(n)]

    def attempt(s):
        s.settimeout(wait)
        try:
            s.connect((host, port))
        except TimeoutError:
            return
        raise AssertionError(f"connect to full listener {port} was answered")

    try:
        for s in socks:
            s.bind((host, 0))
        with ThreadPoolExecutor(n) as pool:
            list(pool.map(attempt, socks))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def concurrent(host: str, port: int, n: int) -> list[int]:
    """``n`` connections open at the same time (all connected before any data moves),
    then each sends, reads and closes. Returns the client ports."""

    async def run():
        conns = await asyncio.gather(*(asyncio.open_connection(host, port) for _ in range(n)))

        async def talk(reader, writer):
            writer.write(PAYLOAD)
            await writer.drain()
            assert await reader.readexactly(len(PAYLOAD)) == PAYLOAD.upper()
            writer.close()
            await writer.wait_closed()

        ports = [w.get_extra_info("sockname")[1] for _, w in conns]
        await asyncio.gather(*(talk(r, w) for r, w in conns))
        return ports

    return asyncio.run(run())


# -- a whole recording ------------------------------------------------------

CLIENTS = {"complete": complete, "refused": refused, "concurrent": concurrent, "unanswered": unanswered}
OUTCOME = {"complete": "complete", "refused": "refused", "concurrent": "complete", "unanswered": "unanswered"}


def make_capture(dumpcap: str, path: Path, plan, snaplen: int | None = None) -> list[tuple[str, tuple, tuple]]:
    """Record ``plan``, a list of ``(client, host, n)`` with client one of ``CLIENTS``,
    run in order, into ``path``. Returns one ``(outcome, (client ip, port), (server ip,
    port))`` per connection attempt made, outcome as the handshake rules name it."""
    made = []
    with ExitStack() as stack:
        hosts = sorted({host for _, host, _ in plan})
        servers = {h: stack.enter_context(Server(h)) for h in hosts}
        closed = {h: stack.enter_context(ClosedPort(h)) for h in hosts}
        full = {h: stack.enter_context(FullListener(h)) for h in {h for w, h, _ in plan if w == "unanswered"}}
        ports = [x.port for x in [*servers.values(), *closed.values(), *full.values()]]
        with record(dumpcap, path, ports, snaplen):
            for what, host, n in plan:
                port = {"refused": closed, "unanswered": full}.get(what, servers)[host].port
                made += [(OUTCOME[what], (host, p), (host, port)) for p in CLIENTS[what](host, port, n)]
    return made
