"""``hs capture``: real dumpcap on loopback, real connections, then ``hs score``.

The captures use a filter on the tests' own ports, so other loopback traffic on
the machine cannot change the counts. Errors are caused for real (a bad filter,
an unknown interface, an unprivileged user, a 64 kB tmpfs that fills up, a PATH
without dumpcap) and each must be one line, exit code 2, no traceback.
"""

from __future__ import annotations

import json
import os
import pty
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pytest

from conftest import CORPUS, ROOT, missing
from loopback import PAYLOAD, V4, V6, ClosedPort, Server, complete, refused

from handshake_score.capture import DEFAULT_SNAPLEN, CaptureOptions, record
from handshake_score.errors import CaptureError
from handshake_score.sources import CaptureReader
from handshake_score.sources.follow import FollowReader
from handshake_score.sources.ring import expand, ring_files
from handshake_score.scorefile import load_score
from handshake_score.summary import score_files

HS = [sys.executable, "-m", "handshake_score"]
EXAMPLE = ROOT / "captures" / "example-loopback.pcapng"


# -- helpers ----------------------------------------------------------------------


class Hs:
    """``hs capture ARGS`` running in the background, its output in files (a pipe it
    cannot write to would stall it)."""

    def __init__(self, args, logs: Path, pty_stderr: bool = False, **popen):
        logs.mkdir(exist_ok=True)
        self.out = (logs / "stdout").open("w+")
        self.leader = None
        if pty_stderr:
            self.leader, follower = pty.openpty()
            err = follower
        else:
            self.err = (logs / "stderr").open("w+")
            err = self.err
        self.proc = subprocess.Popen(HS + ["capture", *map(str, args)], stdout=self.out, stderr=err,
                                     stdin=subprocess.DEVNULL, **popen)
        if pty_stderr:
            os.close(follower)
        self.terminal = b""

    def stderr(self) -> str:
        if self.leader is not None:
            self._read_terminal()
            return self.terminal.decode(errors="replace")
        self.err.seek(0)
        return self.err.read()

    def stdout(self) -> str:
        self.out.seek(0)
        return self.out.read()

    def _read_terminal(self):
        import select

        while select.select([self.leader], [], [], 0)[0]:
            try:
                chunk = os.read(self.leader, 65536)
            except OSError:
                return
            if not chunk:
                return
            self.terminal += chunk

    def wait_capturing(self, timeout: float = 20) -> None:
        """Until hs says it is capturing (dumpcap has opened the interface and its file)."""
        deadline = time.monotonic() + timeout
        while "capturing on" not in self.stderr():
            if self.proc.poll() is not None:
                err = self.stderr()
                if "no permission to capture" in err:
                    missing(f"dumpcap cannot capture on lo here: {err.strip()}")
                raise AssertionError(f"hs capture ended ({self.proc.returncode}): {err}")
            assert time.monotonic() < deadline, f"hs capture did not start: {self.stderr()}"
            time.sleep(0.02)

    def wait(self, timeout: float = 30) -> int:
        code = self.proc.wait(timeout=timeout)
        if self.leader is not None:
            self._read_terminal()
            os.close(self.leader)
            self.leader, self.stderr = None, lambda: self.terminal.decode(errors="replace")
        return code


def one_error_line(r) -> str:
    """The single line of a user error: exit code 2, nothing else on stderr, no traceback."""
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hs: error: ") and "Traceback" not in r.stderr, r.stderr
    return lines[0]


def hs(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(HS + [str(a) for a in args], capture_output=True, text=True, timeout=60, **kw)


def tshark_frames(tshark: str, path) -> int:
    """Frames tshark reads; fails if tshark finds the file cut short or damaged."""
    r = subprocess.run([tshark, "-r", str(path), "-T", "fields", "-e", "frame.number"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "cut short" not in r.stderr and "appears to be damaged" not in r.stderr, r.stderr
    return len(r.stdout.split())


def children(pid: int) -> list[tuple[int, str, str]]:
    """(pid, state, command) of the processes whose parent is ``pid``, zombies included."""
    out = subprocess.run(["ps", "-o", "pid=,stat=,comm=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [(int(p), s, c) for p, s, c in (line.split(None, 2) for line in out.splitlines())]


def port_filter(*ports) -> str:
    return " or ".join(f"tcp port {p}" for p in ports)


def summary_line(text: str, head: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(head))


# -- the whole path: capture on loopback, then score -------------------------------


@pytest.mark.capture
def test_capture_then_score_finds_exactly_the_handshakes_made(dumpcap, tshark, tmp_path):
    """15 connection attempts, IPv4 and IPv6, 10 completed and 5 refused by a closed port:
    hs capture's own count, hs score's and the notes' client ports all say exactly that."""
    from test_loopback import check  # the loopback recorder's full check against tshark

    path = tmp_path / "made.pcapng"
    with ExitStack() as stack:
        s4, s6 = stack.enter_context(Server(V4)), stack.enter_context(Server(V6))
        c4, c6 = stack.enter_context(ClosedPort(V4)), stack.enter_context(ClosedPort(V6))
        run = Hs(["-i", "lo", "--duration", 3, "-o", path, "-f", port_filter(s4.port, s6.port, c4.port, c6.port)],
                 tmp_path / "logs")
        run.wait_capturing()
        made = []
        for client, host, server, n in [(complete, V4, s4, 6), (refused, V4, c4, 3), (complete, V6, s6, 4),
                                        (refused, V6, c6, 2)]:
            outcome = "complete" if client is complete else "refused"
            made += [(outcome, (host, p), (host, server.port)) for p in client(host, server.port, n)]
        assert run.wait() == 0, run.stderr()
    out = run.stdout()
    assert summary_line(out, "handshakes") == "handshakes  complete 10  refused 5  unanswered 0  incomplete 0"
    assert summary_line(out, "notes") == "notes       syn 15  syn-retry 0  syn-ack 10  syn-ack-retry 0  ack 10  rst 5"
    assert "stopped after 3 s (--duration)" in out and f"next        hs score {path}" in out
    err = run.stderr()
    assert "filter   'tcp port" in err and f"the first {DEFAULT_SNAPLEN} bytes of each packet" in err

    got, _ = check(tshark, path, made)  # every note names a connection made, by its client port
    assert got["handshakes"] == {"complete": 10, "refused": 5, "unanswered": 0, "incomplete": 0}
    scored = hs("score", path, "--json", "--no-write")
    assert scored.returncode == 0, scored.stderr
    as_scored = json.loads(scored.stdout)
    assert as_scored["handshakes"] == got["handshakes"] and as_scored["notes"] == got["notes"]
    packets = tshark_frames(tshark, path)
    assert f"{path}: {packets:,} packets (pcapng), {path.stat().st_size:,} bytes" in out
    assert int(subprocess.run([tshark, "-r", path, "-T", "fields", "-e", "frame.cap_len"], capture_output=True,
                              text=True).stdout.split()[0]) <= DEFAULT_SNAPLEN


@pytest.mark.capture
def test_sigterm_halfway_leaves_a_whole_file_and_no_dumpcap(dumpcap, tshark, tmp_path):
    """SIGTERM to hs alone, mid-traffic, whole packets (--full) in flight: hs tells dumpcap,
    which closes the file; the file reads whole in tshark and in our reader, hs's counts
    are the file's, and no dumpcap is left."""
    path = tmp_path / "stopped.pcapng"
    stop = threading.Event()
    with Server(V4) as server:
        run = Hs(["-i", "lo", "--full", "-o", path, "-f", port_filter(server.port)], tmp_path / "logs")
        run.wait_capturing()
        pids = [pid for pid, _, comm in children(run.proc.pid) if comm == "dumpcap"]
        assert len(pids) == 1

        def traffic():
            while not stop.is_set():
                with socket.create_connection((V4, server.port), timeout=5) as s:
                    s.sendall(PAYLOAD * 200)
                    s.recv(65536)

        talker = threading.Thread(target=traffic)
        talker.start()
        try:
            time.sleep(1.0)
            run.proc.send_signal(signal.SIGTERM)
            assert run.wait() == 0, run.stderr()
        finally:
            stop.set()
            talker.join()
    out = run.stdout()
    assert "stopped by SIGTERM" in out and "Traceback" not in run.stderr()
    assert subprocess.run(["ps", "-p", str(pids[0])], capture_output=True).returncode == 1  # gone, not orphaned
    reader = CaptureReader(path)
    packets = sum(b.packets for b in reader.batches())
    assert reader.truncated_at is None and packets > 20
    assert tshark_frames(tshark, path) == packets
    assert f"{path}: {packets:,} packets (pcapng)" in out
    assert not list(tmp_path.glob(".*.part"))  # no temporary name left behind


@pytest.mark.capture
def test_stopping_from_python_reaps_dumpcap(dumpcap, tmp_path):
    """record() from a thread, stopped by an event, and record() whose progress callback
    fails: either way dumpcap is waited for, so this process has no dumpcap child,
    running or zombie, afterwards."""
    stop, started, done = threading.Event(), threading.Event(), {}
    opts = CaptureOptions("lo", tmp_path / "api.pcapng", bpf="tcp port 9")
    worker = threading.Thread(target=lambda: done.update(result=record(opts, stop=stop, handle_signals=False,
                                                                        on_start=lambda r: started.set())))
    worker.start()
    if not started.wait(20):
        worker.join()
        missing("dumpcap could not start capturing on lo here")
    assert [c for c in children(os.getpid()) if c[2] == "dumpcap"]
    stop.set()
    worker.join(30)
    assert done["result"].stopped == "stop" and done["result"].files == [tmp_path / "api.pcapng"]
    assert [c for c in children(os.getpid()) if c[2] == "dumpcap"] == []

    def fail(status):
        raise RuntimeError("a progress display that breaks")

    with pytest.raises(RuntimeError):
        record(CaptureOptions("lo", tmp_path / "broken.pcapng", bpf="tcp port 9"), on_progress=fail)
    assert [c for c in children(os.getpid()) if c[2] == "dumpcap"] == []


@pytest.mark.capture
def test_ctrl_c_on_a_terminal_shows_progress_and_stops_cleanly(dumpcap, tshark, tmp_path):
    """On a terminal hs shows packets and handshakes as they come. Ctrl-C reaches the whole
    foreground group (hs and dumpcap): the file is closed whole and the summary printed."""
    path = tmp_path / "tty.pcapng"
    with Server(V4) as server:
        run = Hs(["-i", "lo", "-o", path, "-f", port_filter(server.port)], tmp_path / "logs", pty_stderr=True,
                 start_new_session=True)
        run.wait_capturing()
        complete(V4, server.port, 5)
        deadline = time.monotonic() + 20
        while "handshakes 5 (complete 5" not in run.stderr():
            assert time.monotonic() < deadline and run.proc.poll() is None, run.stderr()
            time.sleep(0.05)
        os.killpg(run.proc.pid, signal.SIGINT)  # as the terminal's Ctrl-C does
        assert run.wait() == 0, run.stderr()
    out = run.stdout()
    assert "stopped by Ctrl-C (SIGINT)" in out
    assert summary_line(out, "handshakes") == "handshakes  complete 5  refused 0  unanswered 0  incomplete 0"
    assert tshark_frames(tshark, path) > 0 and "Traceback" not in run.stderr()


@pytest.mark.capture
def test_ring_buffer_rotates_and_scores_as_one_capture(dumpcap, tshark, tmp_path):
    """10 kB files, 3 kept: more than 3 are written, 3 stay, and hs score reads those 3
    (given as the shell's glob, or found from the ring's base name) as one capture: a
    handshake cut between two files is found whole."""
    base = tmp_path / "gallery.pcapng"
    with Server(V4) as server:
        run = Hs(["-i", "lo", "--ring", "10kB:3", "--duration", 3, "-o", base, "-f", port_filter(server.port)],
                 tmp_path / "logs")
        run.wait_capturing()
        for _ in range(60):  # about a file every 0.25 s: dumpcap writes a batch of packets every 0.25 s,
            complete(V4, server.port, 1)  # and a file it opens and deletes within one batch cannot be read
            time.sleep(0.025)
        assert run.wait() == 0, run.stderr()
    out = run.stdout()
    files = ring_files(base)
    assert len(files) == 3 and not base.exists()
    written = int(out.split(" in a ring of ")[1].split()[0])
    assert written > 3 and files[-1].name.startswith(f"gallery_{written:05d}_")
    assert f"3 kept ({files[0].name} to {files[-1].name})" in out
    assert summary_line(out, "handshakes") == "handshakes  complete 60  refused 0  unanswered 0  incomplete 0", \
        run.stderr()
    assert all(f.stat().st_size < 12_000 for f in files[:-1])
    assert f"next        hs score {tmp_path}/gallery_*.pcapng" in out

    assert expand([base]) == files
    together = score_files(expand([base])).as_dict()
    syns = together["notes"]["syn"]
    assert syns > 10 and together["handshakes"] == {"complete": syns, "refused": 0, "unanswered": 0, "incomplete": 0}
    assert together["packets"] == sum(tshark_frames(tshark, f) for f in files)
    scored = hs("score", *sorted(tmp_path.glob("gallery_*.pcapng")), "--json", "--no-write")
    assert json.loads(scored.stdout)["handshakes"] == together["handshakes"]
    by_name = hs("score", base, "--json", "-o", tmp_path / "scores" / "gallery.score")  # the base name
    assert json.loads(by_name.stdout)["handshakes"] == together["handshakes"]
    assert [s.name for s in load_score(tmp_path / "scores" / "gallery.score").sources] == [f.name for f in files]


# -- errors: one line each, exit code 2 ----------------------------------------------


@pytest.mark.capture
def test_bad_filter_says_dumpcaps_reason_and_keeps_the_old_file(dumpcap, tmp_path):
    old = tmp_path / "old.pcapng"
    old.write_bytes(EXAMPLE.read_bytes())
    line = one_error_line(hs("capture", "-i", "lo", "-f", "tcp port", "-o", old, "--force"))
    assert line == "hs: error: bad capture filter 'tcp port': can't parse filter expression: syntax error"
    assert old.read_bytes() == EXAMPLE.read_bytes()  # --force replaces only once the new capture runs
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.pcapng"]


@pytest.mark.capture
def test_unknown_interface(dumpcap, tmp_path):
    line = one_error_line(hs("capture", "-i", "hs-nosuch0", "-o", tmp_path / "x.pcapng"))
    assert line == "hs: error: no interface named 'hs-nosuch0' here (hs capture --list shows them)"
    line = one_error_line(hs("capture", "-i", "999", "-o", tmp_path / "x.pcapng"))
    assert line == "hs: error: no interface number 999 (hs capture --list shows them)"
    assert list(tmp_path.iterdir()) == []


def test_output_exists(tmp_path):
    (tmp_path / "x.pcapng").write_bytes(b"mine")
    line = one_error_line(hs("capture", "-i", "lo", "-o", tmp_path / "x.pcapng"))
    assert line == f"hs: error: {tmp_path}/x.pcapng: already exists; use --force to replace it, or choose another name"
    (tmp_path / "ring_00007_20261124043512.pcapng").write_bytes(b"mine")
    line = one_error_line(hs("capture", "-i", "lo", "--ring", "1MB:3", "-o", tmp_path / "ring.pcapng"))
    assert line == (f"hs: error: {tmp_path}/ring.pcapng: a ring buffer of that name exists (1 files, such as "
                    "ring_00007_20261124043512.pcapng); use --force to replace it, or choose another name")
    assert (tmp_path / "x.pcapng").read_bytes() == b"mine"


def test_dumpcap_missing_says_how_to_install(tmp_path):
    line = one_error_line(hs("capture", "-i", "lo", env={**os.environ, "PATH": str(tmp_path)}))
    assert "dumpcap (Wireshark's capture engine) is not installed" in line and "sudo apt install tshark" in line
    assert one_error_line(hs("capture", "--list", env={**os.environ, "PATH": str(tmp_path)})) == line


def test_dumpcap_we_may_not_run_is_a_permission_problem(tmp_path):
    """Debian's "non-superusers may capture" makes dumpcap 0754 root:wireshark: for someone
    outside the group it is there but cannot be run. That is no missing tool."""
    (tmp_path / "dumpcap").write_text("#!/bin/sh\nexit 0\n")
    (tmp_path / "dumpcap").chmod(0o644)
    line = one_error_line(hs("capture", "-i", "lo", env={**os.environ, "PATH": str(tmp_path)}))
    assert "no permission to capture" in line and "wireshark group" in line


def test_permission_message_from_dumpcap(tmp_path):
    """dumpcap's own refusal (its text, as Debian's 4.0 prints it) becomes our one line with
    both fixes, and never the advice to run hs as root."""
    fake = tmp_path / "dumpcap"
    fake.write_text("#!/bin/sh\n"
                    "echo \"Capturing on 'Loopback: lo'\" >&2\n"
                    "echo 'dumpcap: You do not have permission to capture on device \"lo\".' >&2\n"
                    "echo '(socket: Operation not permitted)' >&2\n"
                    "echo 'Please check to make sure you have sufficient permissions.' >&2\n"
                    "exit 1\n")
    fake.chmod(0o755)
    line = one_error_line(hs("capture", "-i", "lo", "-o", tmp_path / "x.pcapng",
                             env={**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}))
    assert line == ("hs: error: no permission to capture on lo: add your user to the wireshark group "
                    "(sudo dpkg-reconfigure wireshark-common, answer Yes; sudo usermod -aG wireshark $USER; "
                    f"log in again) or give dumpcap the rights (sudo setcap cap_net_raw,cap_net_admin=eip {fake}); "
                    "hs itself needs no root")
    assert not (tmp_path / "x.pcapng").exists()


@pytest.mark.capture
def test_no_permission_for_real(dumpcap):
    """The real dumpcap, run by a user without capture rights (nobody, when we are root)."""
    folder = Path(tempfile.mkdtemp(prefix="hs-nobody-"))
    folder.chmod(0o777)
    try:
        if os.geteuid() == 0:
            if not shutil.which("setpriv"):
                missing("setpriv (util-linux) is not installed: cannot run dumpcap as an unprivileged user")
            prefix = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
        else:
            prefix = []
        r = subprocess.run(prefix + HS + ["capture", "-i", "lo", "--duration", "1", "-o", folder / "x.pcapng"],
                           capture_output=True, text=True, cwd=folder, timeout=60)
        if r.returncode == 0:
            pytest.skip("this user may capture (dumpcap has the capabilities): no refusal to see")
        if "hs: error:" not in r.stderr:
            missing(f"hs does not run as an unprivileged user here: {r.stderr.strip()[-200:]}")
        line = one_error_line(r)
        assert line.startswith("hs: error: no permission to capture on lo: add your user to the wireshark group")
        assert f"sudo setcap cap_net_raw,cap_net_admin=eip {dumpcap}" in line
        assert "root" not in line.replace("hs itself needs no root", "")  # never "run it as root"
        assert not (folder / "x.pcapng").exists()
    finally:
        shutil.rmtree(folder)


@pytest.mark.capture
def test_disk_full_keeps_what_was_captured(dumpcap, tshark, tmp_path):
    """A 64 kB tmpfs fills up with whole packets: dumpcap stops, the file keeps every
    packet it holds whole (a record cut in half is cut off), and the one line says so."""
    disk = tmp_path / "small"
    disk.mkdir()
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", disk], capture_output=True, text=True)
    if mount.returncode != 0:
        missing(f"cannot mount a small tmpfs here (needs root): {mount.stderr.strip()}")
    try:
        path = disk / "full.pcapng"
        with Server(V4) as server:
            run = Hs(["-i", "lo", "--full", "--duration", 20, "-o", path, "-f", port_filter(server.port)],
                     tmp_path / "logs")
            run.wait_capturing()
            for _ in range(200):
                if run.proc.poll() is not None:
                    break
                with socket.create_connection((V4, server.port), timeout=5) as s:
                    s.sendall(PAYLOAD * 100)
                    s.recv(65536)
            code = run.wait()
        err = run.stderr().strip().splitlines()
        assert code == 2 and "Traceback" not in run.stderr()
        packets = tshark_frames(tshark, path)  # whole: no record cut in half
        assert err[-1] == (f"hs: error: {path}: the disk is full: the capture stopped there; the {packets:,} "
                           "packets captured before it are kept")
        assert packets > 10 and CaptureReader(path).truncated_at is None
        assert f"{path}: {packets:,} packets (pcapng)" in run.stdout()
    finally:
        subprocess.run(["umount", "-l", disk], capture_output=True)


def test_usage_errors_are_one_line(tmp_path):
    for args, message in [
        (["--duration", "1", "--packets", "5"], "give --duration or --packets, not both"),
        (["--snaplen", "200", "--full"], "give --snaplen or --full, not both"),
        (["--snaplen", "20"], "--snaplen 20: at least 64 bytes, to keep the TCP header (160 keeps it inside tunnels too)"),
        (["--ring", "100:10"], "--ring 100:10: give the size a unit, such as 100MB:10"),
        (["--ring", "100MB"], "--ring 100MB: write SIZE:FILES, such as 100MB:10"),
        (["--ring", "100MB:1"], "--ring 100MB:1: a ring needs at least 2 files"),
        (["--duration", "0"], "--duration 0: give a number of seconds above 0"),
        (["-f", "tcp", "--vxlan-port", "4790"],
         "--vxlan-port, --geneve-port and --gtp-port widen the default filter: give them or --filter"),
        (["--geneve-port", "0"], "--geneve-port: 0 is not a UDP port (1-65535)"),
    ]:
        assert one_error_line(hs("capture", "-i", "lo", "-o", tmp_path / "x.pcapng", *args)) == f"hs: error: {message}"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.capture
def test_list_shows_interfaces_with_descriptions(dumpcap):
    r = hs("capture", "--list")
    assert r.returncode == 0, r.stderr
    lo = next(line for line in r.stdout.splitlines() if line.split()[1:2] == ["lo"])
    assert "Loopback" in lo and "127.0.0.1" in lo
    assert "(default)" in r.stdout


# -- the pieces: following a growing file, a ring's files ---------------------------


@pytest.mark.parametrize("source", [EXAMPLE, CORPUS / "http_ip4and6.pcapng", CORPUS / "dns_tcp.pcapng"],
                         ids=lambda p: p.name)
def test_follow_reads_whole_blocks_as_a_file_grows(source, tmp_path):
    """Written in random pieces (single bytes, a block and a half, ...), the file gives
    exactly the segments CaptureReader gives for the whole file, never a half block."""
    data = source.read_bytes()
    expected = np.concatenate([b.select() for b in CaptureReader(source).batches()])
    ends, at = {0}, 0  # where each block ends (these files are little-endian)
    while at < len(data):
        at += int.from_bytes(data[at + 4:at + 8], "little")
        ends.add(at)
    rng = random.Random(7)
    for trial in range(30):
        path = tmp_path / f"growing{trial}.pcapng"
        follow = FollowReader(path, chunk_size=rng.choice([64, 4096, 1 << 20]))
        assert list(follow.batches()) == []  # not there yet
        got, at = [], 0
        with path.open("wb") as f:
            while at < len(data):
                step = rng.choice([1, 3, 7, 100, 333, 2000, 70000])
                f.write(data[at:at + step])
                f.flush()
                at += step
                got += [b.select() for b in follow.batches()]
                assert follow.whole_bytes in ends and follow.whole_bytes <= at
        got += [b.select() for b in follow.batches()]
        assert np.concatenate(got).tobytes() == expected.tobytes()
        assert (follow.whole_bytes, follow.pending) == (len(data), 0)
        follow.close()


def test_follow_refuses_what_is_not_pcapng(tmp_path):
    (tmp_path / "x.pcap").write_bytes(b"\xd4\xc3\xb2\xa1" + bytes(20))  # classic pcap
    with pytest.raises(CaptureError, match="not a pcapng file"):
        list(FollowReader(tmp_path / "x.pcap").batches())


def test_ring_expand_orders_by_sequence_number(tmp_path):
    names = ["g_99999_20261124043512.pcapng", "g_100000_20261124043513.pcapng", "g_00002_20301231235959.pcapng",
             "g2_00001_20261124043512.pcapng", "g_00003_2026.pcapng", "g_00004_20261124043512.pcap",
             "other.pcapng"]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in expand([tmp_path / "g.pcapng"])] == [
        "g_00002_20301231235959.pcapng", "g_99999_20261124043512.pcapng", "g_100000_20261124043513.pcapng"]
    assert expand([tmp_path / "other.pcapng", tmp_path / "none.pcapng"]) == [tmp_path / "other.pcapng",
                                                                              tmp_path / "none.pcapng"]
    assert [p.name for p in expand([tmp_path / "g2.pcapng"])] == ["g2_00001_20261124043512.pcapng"]


@pytest.mark.capture
def test_kill_9_of_hs_stops_dumpcap_cleanly(dumpcap, tshark, tmp_path):
    """hs killed with no chance to clean up: the kernel tells dumpcap (PR_SET_PDEATHSIG,
    SIGINT), which closes its file and ends, instead of capturing on unwatched. (Not for a
    dumpcap with file capabilities: exec clears it there, as docs/capturing.md says.)"""
    caps = subprocess.run(["getcap", dumpcap], capture_output=True, text=True).stdout if shutil.which("getcap") else ""
    if "cap_net" in caps:
        pytest.skip("this dumpcap has file capabilities: the kernel drops the parent-death signal for it")
    path = tmp_path / "orphan.pcapng"
    with Server(V4) as server:
        run = Hs(["-i", "lo", "-o", path, "-f", port_filter(server.port)], tmp_path / "logs")
        run.wait_capturing()
        pids = [pid for pid, _, comm in children(run.proc.pid) if comm == "dumpcap"]
        assert len(pids) == 1
        complete(V4, server.port, 3)
        time.sleep(0.5)
        run.proc.kill()
        run.proc.wait()
        for _ in range(100):  # dumpcap ends by itself within a moment
            if subprocess.run(["ps", "-p", str(pids[0])], capture_output=True).returncode == 1:
                break
            time.sleep(0.05)
        else:
            pytest.fail(f"dumpcap {pids[0]} is still running after hs was killed")
    reader = CaptureReader(path)  # renamed from its temporary name once dumpcap was capturing
    packets = sum(b.packets for b in reader.batches())
    assert reader.truncated_at is None and packets == tshark_frames(tshark, path) >= 9


# -- the default filter: TCP wherever the reader can find it, and no other payloads ---------

def _framed():
    """(name, Ethernet frame) of TCP and UDP in each wrapping the default filter knows."""
    import craft
    seg, dns = craft.tcp_ip("10.0.0.1", "10.0.0.2", 40000, 80, 0x02, 1), craft.udp_ip("10.0.0.1", "10.0.0.2", 40001, 53)
    seg6 = craft.tcp_ip("fd00::1", "fd00::2", 40000, 80, 0x02, 1)
    vxlan = lambda inner, port=4789: craft.udp_ip("192.0.2.1", "192.0.2.2", 55555, port,  # noqa: E731
                                                  struct.pack("!II", 0x08000000, 42 << 8) + craft.eth(inner))
    gre = lambda inner: craft.ipv4("192.0.2.1", "192.0.2.2", 47, struct.pack("!HH", 0, 0x0800) + inner)  # noqa: E731
    pppoe = lambda inner: struct.pack("!BBHHH", 0x11, 0, 7, len(inner) + 2, 0x21) + inner  # noqa: E731
    mpls = lambda inner: struct.pack("!I", 16 << 12 | 0x100 | 64) + inner  # noqa: E731
    tag, outer = (0x8100, 7), (0x88A8, 5)
    for name, inner in (("tcp", seg), ("udp", dns)):
        yield name, craft.eth(inner)
        yield f"vlan {name}", craft.eth(inner, vlans=[tag])
        yield f"qinq {name}", craft.eth(inner, vlans=[outer, tag])
        yield f"vxlan {name}", craft.eth(vxlan(inner))
        yield f"vlan vxlan {name}", craft.eth(vxlan(inner), vlans=[tag])
        yield f"vxlan-4790 {name}", craft.eth(vxlan(inner, 4790))
        yield f"gre {name}", craft.eth(gre(inner))
        yield f"qinq gre {name}", craft.eth(gre(inner), vlans=[outer, tag])
        yield f"4in4 {name}", craft.eth(craft.ipv4("192.0.2.1", "192.0.2.2", 4, inner))
        yield f"4in6 {name}", craft.eth(craft.ipv6("2001:db8::1", "2001:db8::2", 4, inner))
        yield f"pppoe {name}", craft.eth(pppoe(inner), 0x8864)
        yield f"pppoe vxlan {name}", craft.eth(pppoe(vxlan(inner)), 0x8864)
        yield f"vlan pppoe {name}", craft.eth(pppoe(inner), 0x8864, vlans=[tag])
        yield f"mpls {name}", craft.eth(mpls(inner), 0x8847)
        yield f"vlan mpls {name}", craft.eth(mpls(inner), 0x8847, vlans=[tag])
    yield "6in4 tcp", craft.eth(craft.ipv4("192.0.2.1", "192.0.2.2", 41, seg6))


def _passes(tool: list[str], path, expression: str) -> bool:
    """Whether ``tool`` (tcpdump, or tshark ... -Y) prints the one frame of ``path``."""
    r = subprocess.run([*tool, expression, "-r", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return bool(r.stdout.strip())


TUNNELS = {"vxlan", "gre", "4in4", "4in6", "6in4", "mpls"}  # kept whole: the filter does not look inside


@pytest.mark.parametrize("extra", [(), (4790,)])
def test_the_default_filter_keeps_tcp_in_every_wrapping_and_drops_other_payloads(tshark, tmp_path, extra):
    """libpcap itself (tcpdump -r FILE FILTER) runs the filter over one crafted frame at a
    time: it keeps every frame tshark finds TCP in (tshark told of the extra VXLAN port too),
    and drops UDP, plain, tagged or in an untagged PPPoE session; a tunnel (its protocol or
    port), MPLS and a tagged PPPoE session are kept whole (libpcap cannot look past a label
    stack of any depth, or at PPP after a tag)."""
    import craft
    from handshake_score.capture.options import capture_filter
    from handshake_score.sources.decoding import Decapsulation
    tcpdump = shutil.which("tcpdump") or pytest.skip("tcpdump is not installed")
    bpf = capture_filter(Decapsulation(vxlan_ports=(4789, 8472, *extra)))
    decode_as = [arg for p in extra for arg in ("-d", f"udp.port=={p},vxlan")]
    for name, frame in _framed():
        path = tmp_path / "one.pcap"
        craft.write(path, craft.pcap([(1000, frame)]))
        has_tcp = _passes([tshark, *decode_as, "-Y"], path, "tcp")
        kept = _passes([tcpdump], path, bpf)
        wrappings = set(name.split()[:-1])
        whole = bool(wrappings & TUNNELS) or name.startswith("vlan pppoe") or bool(extra and "vxlan-4790" in wrappings)
        assert kept == (has_tcp or whole), name
        if name.endswith("tcp") and "vxlan-4790" not in wrappings:
            assert has_tcp, name  # tshark sees the TCP in every other wrapping: the test means it



def test_the_default_filter_compiles_for_each_kind_of_link():
    """An Ethernet link gets the whole filter; loopback and Linux cooked ("any") the IP
    part (libpcap refuses ``vlan`` on "any"); NFLOG none (libpcap cannot filter it)."""
    from handshake_score.capture.options import capture_filter, filter_for
    tcpdump = shutil.which("tcpdump") or pytest.skip("tcpdump is not installed")
    assert filter_for("nflog:5") == ""
    ethernet = [i for i in sorted(os.listdir("/sys/class/net")) if Path(f"/sys/class/net/{i}/type").read_text().strip() == "1"
                and Path(f"/sys/class/net/{i}/operstate").read_text().strip() != "down"]
    for interface in ["lo", "any", *ethernet[:1]]:
        bpf = filter_for(interface)
        assert bpf == capture_filter(ethernet=interface in ethernet)
        r = subprocess.run([tcpdump, "-i", interface, "-d", bpf], capture_output=True, text=True)
        assert r.returncode == 0 and "ret" in r.stdout, r.stderr
    r = subprocess.run([tcpdump, "-i", "any", "-d", capture_filter()], capture_output=True, text=True)
    assert r.returncode != 0  # why "any" gets the IP part only


@pytest.mark.capture
def test_capture_keeps_vxlan_on_the_port_it_is_given(dumpcap, tshark, tmp_path):
    """The default filter keeps UDP to --vxlan-port (the mirror's tunnel) and not UDP to
    another port; hs score then finds the handshake inside, by the same option."""
    from craft import ACK, SYN, eth, tcp_ip

    path = tmp_path / "mirror.pcapng"
    run = Hs(["-i", "lo", "--duration", 2, "-o", path, "--vxlan-port", 47900], tmp_path / "logs")
    run.wait_capturing()
    handshake = [tcp_ip("10.7.0.1", "10.7.0.2", 40000, 443, SYN, 100),
                 tcp_ip("10.7.0.2", "10.7.0.1", 443, 40000, SYN | ACK, 900, 101),
                 tcp_ip("10.7.0.1", "10.7.0.2", 40000, 443, ACK, 101, 901)]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        for port in (47900, 47901):  # ports no other test sends to
            for p in handshake:
                udp.sendto(bytes.fromhex("0800000000002a00") + eth(p), ("127.0.0.1", port))
    assert run.wait() == 0, run.stderr()
    ports = subprocess.run([tshark, "-r", path, "-Y", "udp", "-T", "fields", "-e", "udp.dstport"],
                           capture_output=True, text=True).stdout.split()
    assert ports == ["47900"] * 3
    scored = json.loads(hs("score", path, "--json", "--no-write", "--vxlan-port", 47900).stdout)
    assert scored["handshakes"]["complete"] == 1
