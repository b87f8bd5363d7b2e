"""Handshakes inside the kernel's own tunnels: hs sees them with the inner addresses.

Two network namespaces joined by a veth pair (the underlay), a tunnel between them
made by the kernel (vxlan, geneve, gretap, ip6gre, ipip, sit...), a TCP listener
behind one end and a port that refuses. Connections cross the tunnel while dumpcap
records the underlay with hs capture's own defaults (:func:`capture_filter`,
``DEFAULT_SNAPLEN``): so this also shows the default filter passes the tunnel and
the default snap length keeps the TCP header inside it. hs must find every attempt
with the inner addresses and ports and the right outcome; tshark's dissection of the
same file must agree on the inner SYNs. A kernel that cannot make a link type skips
that case with its own words; on a kernel that can, it runs.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest

from conftest import missing
from netns import UNDERLAY, Capture, Pair, tunnel, udp_marker
from handshake_score.capture.options import DEFAULT_SNAPLEN, capture_filter
from handshake_score.sources import CaptureReader
from handshake_score.sources.decoding import DEFAULT, Decapsulation
from handshake_score.tracker import HandshakeTracker

HS = [sys.executable, "-m", "handshake_score"]
REFUSING = 9  # nothing listens on it in a new namespace: the kernel answers RST
MARKER_PORT = 3544  # Teredo's: the default filter keeps it, whatever the tunnel

CASES = [  # kind, underlay IP version, VLAN inside the tunnel, UDP port (None: the link's default)
    pytest.param("vxlan", 4, None, None, id="vxlan-over-ipv4"),
    pytest.param("vxlan", 6, None, None, id="vxlan-over-ipv6"),
    pytest.param("vxlan", 6, 42, None, id="vxlan-over-ipv6-vlan-inside"),
    pytest.param("vxlan", 4, None, 4790, id="vxlan-on-port-4790"),
    pytest.param("geneve", 4, None, None, id="geneve-over-ipv4"),
    pytest.param("geneve", 6, None, None, id="geneve-over-ipv6"),
    pytest.param("gretap", 4, 42, None, id="gretap-vlan-inside"),
    pytest.param("ip6gretap", 6, None, None, id="ip6gretap"),
    pytest.param("gre", 4, None, None, id="gre"),
    pytest.param("ip6gre", 6, None, None, id="ip6gre"),
    pytest.param("ipip", 4, None, None, id="ipip-4in4"),
    pytest.param("sit", 4, None, None, id="sit-6in4"),
    pytest.param("ip6tnl", 6, None, None, id="ip6tnl-4in6-6in6"),
]


def scored(path, decapsulation: Decapsulation) -> Counter:
    """(client, server, outcome) of every attempt hs's reader and tracker find in ``path``."""
    found = Counter()
    tracker = HandshakeTracker(on_close=lambda h: found.update([(h.client, h.server, h.outcome)]))
    for batch in CaptureReader(path, decapsulation=decapsulation).batches():
        tracker.feed_batch(batch)
    tracker.close()
    return found


def tshark_syns(tshark: str, path, udp_port: int | None) -> Counter:
    """The SYNs (without ACK) tshark dissects in ``path``: (client, server) by the innermost
    addresses (the Source and Destination columns name the innermost IP header)."""
    decode_as = ["-d", f"udp.port=={udp_port},vxlan"] if udp_port else []
    r = subprocess.run([tshark, "-r", str(path), *decode_as, "-Y", "tcp.flags.syn == 1 && tcp.flags.ack == 0",
                        "-T", "fields", "-E", "separator=/t", "-e", "_ws.col.Source", "-e", "tcp.srcport",
                        "-e", "_ws.col.Destination", "-e", "tcp.dstport"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rows = [line.split("\t") for line in r.stdout.splitlines()]
    return Counter(((s, int(sp)), (d, int(dp))) for s, sp, d, dp in rows)


@pytest.mark.parametrize("kind, underlay, vlan, port", CASES)
def test_every_handshake_inside_a_kernel_tunnel(kind, underlay, vlan, port, tshark, tmp_path):
    decapsulation = DEFAULT if port is None else Decapsulation(vxlan_ports=(*DEFAULT.vxlan_ports, port))
    path = tmp_path / f"{kind}.pcapng"
    made = Counter()
    with Pair() as (a, b):
        link = tunnel(a, b, kind, underlay, port, vlan)
        with b.server() as listening, Capture(b, "vb", path, capture_filter(decapsulation), DEFAULT_SNAPLEN) as cap:
            for v, server in link.inner_b.items():
                client = link.inner_a[v]
                for p in a.connect(server, listening.ports[0], 3):
                    made[((client, p), (server, listening.ports[0]), "complete")] += 1
                for p in a.connect(server, REFUSING, 2, refused=True):
                    made[((client, p), (server, REFUSING), "refused")] += 1
            marker = os.urandom(8)
            cap.settle(marker, lambda: udp_marker(a, UNDERLAY[underlay][1], MARKER_PORT, marker))

    assert scored(path, decapsulation) == made
    if port is not None:  # the extra port is what made the difference
        assert not scored(path, DEFAULT)
    syns = Counter({(c, s): n for (c, s, _), n in made.items()})
    assert tshark_syns(tshark, path, port) == syns  # tshark's own dissection agrees
    if port is None:  # and so does the command line, with its defaults
        r = subprocess.run([*HS, "score", str(path), "--json", "--no-write"], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        got = json.loads(r.stdout)
        outcomes = Counter(o for _, _, o in made.elements())
        assert got["handshakes"]["complete"] == outcomes["complete"]
        assert got["handshakes"]["refused"] == outcomes["refused"]
        assert got["notes"]["syn"] == sum(made.values()) and got["notes"]["rst"] == outcomes["refused"]


# -- live: hs play --live sees through the tunnel, and listens on an NFLOG group --------------


class Live:
    """``hs play --live -i INTERFACE --to console`` running in ``ns``, with its defaults
    (filter, snap length, decapsulation); its console lines read with a deadline."""

    def __init__(self, ns, interface: str):
        self.proc = ns.popen(*HS, "play", "--live", "-i", interface, "--to", "console", stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        started = ""
        deadline = time.monotonic() + 20
        while "Ctrl-C stops" not in started:
            line = self.proc.stderr.readline()
            if not line or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"hs play --live did not start on {interface}: {started}{line}")
            started += line
        self.queue: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [self.queue.put(line) for line in self.proc.stdout], daemon=True).start()

    def lines(self, n: int, timeout_s: float = 20.0) -> list[tuple[str, str, str]]:
        """The next ``n`` console lines as (kind, source, destination), or fewer at the deadline."""
        got, deadline = [], time.monotonic() + timeout_s
        while len(got) < n:
            try:
                words = self.queue.get(timeout=max(deadline - time.monotonic(), 0.01)).split()
            except queue.Empty:
                break
            got.append((words[1], words[2], words[4]))
        return got

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGTERM)
        try:
            _, err = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        assert "Traceback" not in err, err
        return err


def expected_lines(client: str, ports_ok: list[int], ports_refused: list[int], server: str, sport: int) -> list:
    c, s = (f"[{client}]", f"[{server}]") if ":" in client else (client, server)
    out = []
    for p in ports_ok:
        out += [("SYN", f"{c}:{p}", f"{s}:{sport}"), ("SYN-ACK", f"{s}:{sport}", f"{c}:{p}"),
                ("ACK", f"{c}:{p}", f"{s}:{sport}")]
    for p in ports_refused:
        out += [("SYN", f"{c}:{p}", f"{s}:{REFUSING}"), ("RST", f"{c}:{p}", f"{s}:{REFUSING}")]  # "client -x- server"
    return out


def test_live_hears_handshakes_inside_a_vxlan_tunnel():
    """hs play --live on the underlay, no options: each strike names the inner addresses."""
    with Pair() as (a, b):
        link = tunnel(a, b, "vxlan", 4)
        with b.server() as listening:
            live = Live(b, "vb")
            try:
                client, server = link.inner_a[4], link.inner_b[4]
                ok = a.connect(server, listening.ports[0], 2)
                bad = a.connect(server, REFUSING, 1, refused=True)
                heard = live.lines(8)
            finally:
                live.stop()
    assert heard == expected_lines(client, ok, bad, server, listening.ports[0])


def log_to_nflog(ns, group: int, port: int, threshold: int | None = None) -> None:
    """An nft rule in ``ns`` copying every TCP packet to or from ``port`` and :data:`REFUSING`
    to NFLOG group ``group``; ``threshold``: its queue-threshold (the kernel's default
    batches up to 100 packets, or a second's worth, into one netlink message)."""
    log = f"log group {group}" + (f" queue-threshold {threshold}" if threshold else "")
    if shutil.which("nft") is None:
        missing("nftables' nft is not installed")
    rules = (f"table inet hs {{\n chain out {{\n  type filter hook output priority 0;\n"
             f"  tcp dport {{ {port}, {REFUSING} }} {log}\n  tcp sport {{ {port}, {REFUSING} }} {log}\n }}\n}}\n")
    r = subprocess.run(ns.argv("nft", "-f", "-"), input=rules, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_live_listens_on_an_nflog_group():
    """hs play --live -i nflog:N: the packets an nft ``log group N`` rule copies to it."""
    group = 5
    with Pair() as (a, _):
        with a.server() as listening:
            port = listening.ports[0]
            log_to_nflog(a, group, port)
            live = Live(a, f"nflog:{group}")
            try:
                ok = a.connect("127.0.0.1", port, 2)
                bad = a.connect("127.0.0.1", REFUSING, 1, refused=True)
                heard = live.lines(8)
            finally:
                live.stop()
    assert heard == expected_lines("127.0.0.1", ok, bad, "127.0.0.1", port)


_RECORD = r"""
import json, sys
from handshake_score.capture import CaptureOptions, record
result = record(CaptureOptions(sys.argv[1], sys.argv[2]), on_start=lambda r: print("started", flush=True))
print(json.dumps({"bpf": result.bpf, "handshakes": result.handshakes, "notes": result.notes}), flush=True)
"""


def test_capture_with_its_defaults_counts_handshakes_inside_a_tunnel(tmp_path):
    """hs capture's engine with no filter or snap length given, on the underlay: it counts
    the tunnelled handshakes as they come, and the file it writes scores the same."""
    path = tmp_path / "underlay.pcapng"
    with Pair() as (a, b):
        link = tunnel(a, b, "vxlan", 6)
        with b.server() as listening:
            rec = b.popen(sys.executable, "-c", _RECORD, "vb", str(path), stdout=subprocess.PIPE, text=True)
            try:
                assert rec.stdout.readline() == "started\n"
                for v, server in link.inner_b.items():
                    a.connect(server, listening.ports[0], 2)
                    a.connect(server, REFUSING, 1, refused=True)
                marker = os.urandom(8)
                deadline = time.monotonic() + 20
                while marker not in path.read_bytes() and time.monotonic() < deadline:
                    udp_marker(a, UNDERLAY[6][1], MARKER_PORT, marker)
                    time.sleep(0.2)
            finally:
                rec.send_signal(signal.SIGTERM)  # its clean stop
                out, _ = rec.communicate(timeout=30)
    result = json.loads(out)
    assert result["handshakes"] == {"complete": 4, "refused": 2, "unanswered": 0, "incomplete": 0}
    assert "vlan" in result["bpf"] and "udp dst port 4789" in result["bpf"]
    found = scored(path, DEFAULT)
    assert Counter(o for _, _, o in found.elements()) == {"complete": 4, "refused": 2}
    assert {c[0] for c, _, _ in found} == set(link.inner_a.values())  # the inner addresses


def test_capture_records_an_nflog_group(tmp_path):
    """hs capture's engine on nflog:N with its defaults (no filter, no snap length there:
    libpcap would drop what does not fit): every handshake counted and in the file. (dumpcap
    keeps only the first packet of each batch the kernel hands over: the rule says
    queue-threshold 1, as hs capture's start line tells the user.)"""
    path = tmp_path / "nflog.pcapng"
    with Pair() as (a, _):
        with a.server() as listening:
            log_to_nflog(a, 7, listening.ports[0], threshold=1)
            rec = a.popen(sys.executable, "-c", _RECORD, "nflog:7", str(path), stdout=subprocess.PIPE, text=True)
            try:
                assert rec.stdout.readline() == "started\n"
                ok = a.connect("127.0.0.1", listening.ports[0], 3)
                a.connect("127.0.0.1", REFUSING, 2, refused=True)
                deadline = time.monotonic() + 20  # NFLOG hands packets over in batches, within a second
                while sum(n for (_, _, o), n in scored(path, DEFAULT).items() if o != "unanswered") < 5 \
                        and time.monotonic() < deadline:
                    time.sleep(0.2)
            finally:
                rec.send_signal(signal.SIGTERM)
                out, _ = rec.communicate(timeout=30)
    result = json.loads(out)
    assert result["bpf"] == ""
    assert result["handshakes"] == {"complete": 3, "refused": 2, "unanswered": 0, "incomplete": 0}
    found = scored(path, DEFAULT)
    assert {c for c, _, o in found if o == "complete"} == {("127.0.0.1", p) for p in ok}
