"""Network namespaces, veth underlays and the kernel's own tunnels, for tests (as root).

>>> with Pair() as (a, b):                       # two namespaces joined by a veth pair
...     link = tunnel(a, b, "vxlan", underlay=6)   # a kernel tunnel over it; pytest.skip if it cannot
...     with b.server(ports=1) as listen:          # a TCP listener behind the tunnel
...         a.connect(link.inner_b, listen.ports[0], 3)

Each namespace is named ``hs<pid>-<counter><a|b>`` (unique per process and test) and
deleted on leaving, whatever happened; deleting it removes its links too. Addresses:
underlay 10.77.0.1/2 and fd77::1/2, inside the tunnel 192.168.77.1/2 and fd7e::1/2.
IPv6 is switched on (``disable_ipv6=0``) with duplicate address detection off
(``accept_dad=0``), so addresses are usable at once.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import missing

UNDERLAY = {4: ("10.77.0.1", "10.77.0.2", 24), 6: ("fd77::1", "fd77::2", 64)}
INNER = {4: ("192.168.77.1", "192.168.77.2", 24), 6: ("fd7e::1", "fd7e::2", 64)}
_COUNTER = itertools.count()


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(argv, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {r.stderr.strip() or r.returncode}")
    return r


def can_make_namespaces() -> None:
    """Skip (or fail, where CI requires it) unless ``ip netns`` works here."""
    if shutil.which("ip") is None:
        missing("iproute2's ip is not installed")
    if os.geteuid() != 0:
        missing("network namespaces need root")


class Namespace:
    """One network namespace: commands run in it with :meth:`run` and :meth:`popen`."""

    def __init__(self, name: str):
        self.name = name

    def argv(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        return _run(*self.argv(*argv), check=check)

    def popen(self, *argv: str, **kw) -> subprocess.Popen:
        return subprocess.Popen(self.argv(*argv), **kw)

    def ip(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.run("ip", *args, check=check)

    def enable_ipv6(self, link: str = "all") -> None:
        for key, value in (("disable_ipv6", 0), ("accept_dad", 0)):
            for which in dict.fromkeys(("default", "all", link)):
                self.run("sysctl", "-qw", f"net.ipv6.conf.{which}.{key}={value}", check=False)

    @contextmanager
    def server(self, ports: int = 1):
        """TCP listeners on ``ports`` free ports (every address, IPv4 and IPv6), accepting
        and closing each connection; ``.ports`` names them."""
        proc = self.popen(sys.executable, "-c", _SERVER, str(ports), stdout=subprocess.PIPE, text=True)
        try:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError("the test server did not start")
            yield _Listening(json.loads(line))
        finally:
            proc.terminate()
            proc.wait(10)

    def connect(self, host: str, port: int, n: int, refused: bool = False) -> list[int]:
        """``n`` connections one after another (each closed at once); the client ports.
        ``refused``: each must be refused (RST), else each must be accepted."""
        r = self.run(sys.executable, "-c", _CLIENT, host, str(port), str(n), "1" if refused else "0")
        return json.loads(r.stdout)


@dataclass
class _Listening:
    ports: list[int]


# the processes that run inside a namespace: plain sockets, nothing imported from the tests
_SERVER = r"""
import json, socket, sys, threading
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", 0)); s.listen(64); socks.append(s)
def serve(s):
    while True:
        c, _ = s.accept(); c.close()
for s in socks:
    threading.Thread(target=serve, args=(s,), daemon=True).start()
print(json.dumps([s.getsockname()[1] for s in socks]), flush=True)
threading.Event().wait()
"""

_CLIENT = r"""
import json, socket, sys
host, port, n, refused = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
family = socket.AF_INET6 if ":" in host else socket.AF_INET
ports = []
for _ in range(n):
    s = socket.socket(family, socket.SOCK_STREAM); s.settimeout(10); s.bind(("", 0))
    ports.append(s.getsockname()[1])
    try:
        s.connect((host, port))
        assert not refused, "accepted where a refusal was expected"
    except ConnectionRefusedError:
        assert refused, "refused where a connection was expected"
    s.close()
print(json.dumps(ports))
"""


class Pair:
    """Two namespaces, ``a`` and ``b``, joined by veth ``va`` / ``vb`` (the underlay),
    with the :data:`UNDERLAY` addresses; both deleted on leaving."""

    def __init__(self):
        can_make_namespaces()
        stem = f"hs{os.getpid()}-{next(_COUNTER)}"
        self.a, self.b = Namespace(stem + "a"), Namespace(stem + "b")

    def __enter__(self) -> tuple[Namespace, Namespace]:
        made = []
        try:
            for ns in (self.a, self.b):
                r = _run("ip", "netns", "add", ns.name, check=False)
                if r.returncode != 0:
                    missing(f"ip netns add: {r.stderr.strip()}")
                made.append(ns)
                ns.enable_ipv6()
                ns.ip("link", "set", "lo", "up")
            self.a.ip("link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", self.b.name)
            for ns, link, k in ((self.a, "va", 0), (self.b, "vb", 1)):
                ns.enable_ipv6(link)
                for v in (4, 6):
                    ns.ip("addr", "add", f"{UNDERLAY[v][k]}/{UNDERLAY[v][2]}", "dev", link, "nodad")
                ns.ip("link", "set", link, "up")
        except BaseException:
            for ns in made:
                _run("ip", "netns", "del", ns.name, check=False)
            raise
        return self.a, self.b

    def __exit__(self, *exc) -> None:
        for ns in (self.a, self.b):
            _run("ip", "netns", "del", ns.name, check=False)


@dataclass
class Tunnel:
    """A tunnel made by :func:`tunnel`: its link's name in both namespaces and the
    inner addresses of each end (None where the tunnel does not carry that IP version)."""

    kind: str
    link: str
    inner_a: dict[int, str]
    inner_b: dict[int, str]


# link type: (ip link arguments given the underlay's local and remote addresses, inner IP versions, Ethernet?)
KINDS = {
    "vxlan": (lambda loc, rem, port: ["type", "vxlan", "id", "42", "local", loc, "remote", rem,
                                      "dstport", str(port or 4789)], (4, 6), True),
    "geneve": (lambda loc, rem, port: ["type", "geneve", "id", "42", "remote", rem]
               + (["dstport", str(port)] if port else []), (4, 6), True),
    "gretap": (lambda loc, rem, port: ["type", "gretap", "local", loc, "remote", rem], (4, 6), True),
    "ip6gretap": (lambda loc, rem, port: ["type", "ip6gretap", "local", loc, "remote", rem], (4, 6), True),
    "gre": (lambda loc, rem, port: ["type", "gre", "local", loc, "remote", rem], (4, 6), False),
    "ip6gre": (lambda loc, rem, port: ["type", "ip6gre", "local", loc, "remote", rem], (4, 6), False),
    "ipip": (lambda loc, rem, port: ["type", "ipip", "local", loc, "remote", rem], (4,), False),
    "sit": (lambda loc, rem, port: ["type", "sit", "local", loc, "remote", rem], (6,), False),  # 6in4
    "ip6tnl": (lambda loc, rem, port: ["type", "ip6tnl", "mode", "any", "local", loc, "remote", rem], (4, 6), False),
}


def tunnel(a: Namespace, b: Namespace, kind: str, underlay: int = 4, port: int | None = None,
           vlan: int | None = None) -> Tunnel:
    """A ``kind`` link (see :data:`KINDS`) named ``tun0`` in both namespaces, over the
    veth underlay of IP version ``underlay``, up, with the :data:`INNER` addresses;
    ``vlan``: those addresses on an 802.1Q link ``tun0.VLAN`` on top of it instead.
    Skips the test, with the kernel's own words, if the kernel cannot make the link."""
    args, versions, ethernet = KINDS[kind]
    local, remote = UNDERLAY[underlay][0], UNDERLAY[underlay][1]
    for ns, (loc, rem) in ((a, (local, remote)), (b, (remote, local))):
        r = ns.ip("link", "add", "tun0", *args(loc, rem, port), check=False)
        if r.returncode != 0:
            pytest.skip(f"this kernel cannot make a {kind} link: {r.stderr.strip()}")
    link = "tun0"
    if vlan is not None:
        if not ethernet:
            raise ValueError(f"{kind} carries no Ethernet frames, so no VLAN")
        for ns in (a, b):
            r = ns.ip("link", "add", "link", "tun0", "name", f"tun0.{vlan}", "type", "vlan", "id", str(vlan),
                      check=False)
            if r.returncode != 0:
                pytest.skip(f"this kernel cannot make a VLAN on {kind}: {r.stderr.strip()}")
        link = f"tun0.{vlan}"
    inner = {0: {}, 1: {}}
    for ns, k in ((a, 0), (b, 1)):
        ns.enable_ipv6("tun0")
        ns.enable_ipv6(link)
        for v in versions:
            ns.ip("addr", "add", f"{INNER[v][k]}/{INNER[v][2]}", "dev", link, *(["nodad"] if v == 6 else []))
            inner[k][v] = INNER[v][k]
        ns.ip("link", "set", "tun0", "up")
        ns.ip("link", "set", link, "up")
    return Tunnel(kind, link, inner[0], inner[1])


class Capture:
    """dumpcap on ``link`` in ``ns`` into a pcapng file, with a capture filter and snap length."""

    def __init__(self, ns: Namespace, link: str, path: Path, bpf: str = "", snaplen: int = 0):
        self.ns, self.link, self.path, self.bpf, self.snaplen = ns, link, Path(path), bpf, snaplen

    def __enter__(self) -> Capture:
        dumpcap = shutil.which("dumpcap")
        if dumpcap is None:
            missing("dumpcap is not installed")
        argv = [dumpcap, "-i", self.link, "-w", str(self.path), *(["-f", self.bpf] if self.bpf else []),
                *(["-s", str(self.snaplen)] if self.snaplen else [])]
        self.proc = self.ns.popen(*argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True)
        said = ""
        while "File: " not in said:  # named once the interface is open and capturing
            line = self.proc.stderr.readline()
            if not line:
                self.proc.wait()
                raise RuntimeError(f"dumpcap did not start on {self.link}: {said.strip()}")
            said += line
        return self

    def settle(self, marker: bytes, send) -> None:
        """Call ``send()`` (which sends ``marker`` in a packet the filter keeps) until the
        marker is in the file: every packet sent before it is on disk then."""
        deadline = time.monotonic() + 20
        while marker not in self.path.read_bytes():
            if time.monotonic() > deadline:
                raise TimeoutError(f"dumpcap on {self.link} wrote no marker within 20 s")
            send()
            time.sleep(0.2)

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # dumpcap's clean stop: it closes the file
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stderr.close()


def udp_marker(ns: Namespace, host: str, port: int, marker: bytes) -> None:
    """One UDP datagram carrying ``marker`` from ``ns`` to ``host``:``port``."""
    family = "AF_INET6" if ":" in host else "AF_INET"
    ns.run(sys.executable, "-c", f"import socket; socket.socket(socket.{family}, socket.SOCK_DGRAM)"
                                 f".sendto({marker!r}, ({host!r}, {port}))")
