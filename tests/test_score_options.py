"""hs score's choices: filters, anonymisation, the orchestra, and writes that lose nothing."""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest

from conftest import CORPUS, ROOT

from handshake_score.anonymize import anonymize
from handshake_score.orchestra import DEFAULT, load_orchestra
from handshake_score.score import Score, compose, moment
from handshake_score.scorefile import load_score

HS = [sys.executable, "-m", "handshake_score"]
MIXED = [CORPUS / "http_ip4and6.pcapng", CORPUS / "bgp-bgpsec.pcap", CORPUS / "resp_1_benchmark.pcap"]


def hs(*args, env=None, **kw):
    r = subprocess.run([*HS, *map(str, args)], capture_output=True, text=True, timeout=120,
                       env=None if env is None else {**os.environ, **env}, **kw)
    assert "Traceback" not in r.stderr
    return r


def one_line_error(r, *needles):
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("hs: error: "), r.stderr
    for n in needles:
        assert n in r.stderr, r.stderr


def written(*args, env=None) -> Score:
    out = Path("out.score")
    r = hs("score", *args, "-o", out, "--force", env=env)
    assert r.returncode == 0, r.stderr
    return load_score(out)


def endpoints(score):
    return [(score.hosts[c], cp, score.hosts[s], sp) for c, cp, s, sp in
            score.notes[["client", "client_port", "server", "server_port"]].tolist()]


# -- filters ------------------------------------------------------------------------------------------------

def test_host_filter_by_address_network_and_either_side():
    whole = compose(MIXED).score
    for host in ["172.18.0.3", "2001:db8:1:2::1000", "172.18.0.0/30"]:
        got = written(*MIXED, "--host", host)
        net = ipaddress.ip_network(host, strict=False)
        want = [e for e in endpoints(whole) if ipaddress.ip_address(e[0]) in net or ipaddress.ip_address(e[2]) in net]
        assert endpoints(got) == want and want
    both = written(*MIXED, "--host", "172.18.0.5", "--host", "2001:db8:1:2::1002")
    assert {e[2] for e in endpoints(both)} | {e[0] for e in endpoints(both)} >= {"172.18.0.5", "2001:db8:1:2::1002"}


def test_port_kind_and_time_filters_keep_exactly_what_they_name():
    whole = compose(MIXED).score
    got = written(*MIXED, "--port", 179)
    assert len(got) == int(np.count_nonzero((whole.notes["server_port"] == 179) | (whole.notes["client_port"] == 179))) == 12
    got = written(*MIXED, "--kinds", "syn-ack,rst")
    assert sorted(set(got.kinds())) == ["rst", "syn-ack"]
    assert len(got) == int(np.count_nonzero(np.isin(whole.kinds(), ["syn-ack", "rst"])))
    # from/to in seconds after the capture's start: the score starts at --from
    bgp = compose([CORPUS / "bgp-bgpsec.pcap"]).score
    got = written(CORPUS / "bgp-bgpsec.pcap", "--from", "2.4", "--to", "6.2")
    keep = (bgp.notes["time_ns"] >= 2_400_000_000) & (bgp.notes["time_ns"] < 6_200_000_000)
    assert np.array_equal(got.notes["time_ns"], bgp.notes["time_ns"][keep] - 2_400_000_000)
    assert got.start_ns == bgp.start_ns + 2_400_000_000
    assert got.options["from"] == "2.4" and got.options["to"] == "6.2"


def test_times_of_day_in_local_time_or_utc():
    """bgp-bgpsec.pcap starts at 2023-...; a time of day names the first such moment at or after it."""
    bgp = compose([CORPUS / "bgp-bgpsec.pcap"]).score
    start_s = bgp.start_ns // 10**9
    t = time.gmtime(start_s + 5)  # 5 s into the capture, as a UTC time of day
    of_day = f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
    expect = (start_s + 5) * 10**9 - bgp.start_ns
    assert moment(of_day + "Z", bgp.start_ns) == expect
    for zone, offset in [("UTC0", 0), ("XYZ-3", 3 * 3600)]:  # POSIX TZ: XYZ-3 is 3 h east of UTC
        t = time.gmtime(start_s + 5 + offset)
        local = f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
        got = written(CORPUS / "bgp-bgpsec.pcap", "--from", local, env={"TZ": zone})
        assert got.start_ns == bgp.start_ns + expect, zone
        assert np.array_equal(got.notes["time_ns"], bgp.notes["time_ns"][bgp.notes["time_ns"] >= expect] - expect)
    assert moment("1.5", 0) == 1_500_000_000 and moment("90", 0) == 90 * 10**9


@pytest.mark.parametrize("args, needle", [
    (["--from", "half past"], "--from: 'half past' is not seconds, a time of day"),
    (["--from", "5", "--to", "3"], "--to: '3' is not after the start"),
    (["--kinds", "syn,fin"], "--kinds: unknown note kind 'fin'"),
    (["--port", "70000"], "--port: 70000 is not a port"),
    (["--host", "10.0.0.0/33"], "--host: '10.0.0.0/33' is not an address or a network"),
    (["--key", "k"], "--key is the key of --anonymize"),
])
def test_bad_filter_values_are_one_line_errors(args, needle):
    r = hs("score", CORPUS / "bgp-bgpsec.pcap", *args)
    one_line_error(r, needle)
    assert not Path("scores").exists() or not list(Path("scores").iterdir())


# -- anonymisation ------------------------------------------------------------------------------------------

def test_anonymized_score_hides_every_address_and_the_key():
    whole = compose(MIXED).score
    out = Path("shared.score")
    r = hs("score", *MIXED, "--anonymize", "--key", "correct horse battery", "--host", "172.18.0.3", "-o", out)
    assert r.returncode == 0, r.stderr
    text = out.read_text()
    for host in whole.hosts:
        assert host not in text.split("# orchestra")[1]  # the notes
        assert f'"{host}"' not in text and f",{host}," not in text
    assert "correct horse battery" not in text and "horse" not in text
    shared = load_score(out)
    assert shared.options["anonymized"] is True and shared.options["host"][0].startswith("private-v4-")
    # the same host, the same pseudonym; different hosts, different ones
    mapping = {}
    mine = [e for e in endpoints(whole) if "172.18.0.3" in (e[0], e[2])]
    for real, fake in zip(mine, endpoints(shared)):
        for a, b in [(real[0], fake[0]), (real[2], fake[2])]:
            assert mapping.setdefault(a, b) == b
        assert (real[1], real[3]) == (fake[1], fake[3])  # ports stay
    assert len(set(mapping.values())) == len(mapping) >= 3


def test_pseudonyms_keep_private_and_public_apart_and_follow_the_key():
    whole = compose(MIXED + [CORPUS / "tcp-handshake-nano.pcap"]).score
    a, b, c = anonymize(whole, "k1"), anonymize(whole, "k1"), anonymize(whole, "k2")
    assert a.hosts == b.hosts and a.hosts != c.hosts
    assert anonymize(whole).hosts != anonymize(whole).hosts  # no key: a random one each time
    for real, fake in zip(whole.hosts, a.hosts):
        ip = ipaddress.ip_address(real)
        assert fake.startswith(f"{'public' if ip.is_global else 'private'}-v{ip.version}-")
    assert any(h.startswith("public-v4-") for h in a.hosts) and any(h.startswith("private-v6-") for h in a.hosts)
    # a pseudonym can be given back to --host
    shared = Path("shared.score")
    assert hs("score", *MIXED, "--anonymize", "--key", "k1", "-o", shared).returncode == 0
    pseudonym = a.hosts[whole.hosts.index("172.18.0.5")]
    again = Path("again.score")
    assert hs("score", *MIXED, "--anonymize", "--key", "k1", "--host", pseudonym, "-o", again).returncode == 0
    got = load_score(again)
    assert len(got) == 2 and pseudonym in got.hosts


def test_key_from_the_environment():
    one = Path("one.score")
    assert hs("score", CORPUS / "tcp_handshake.pcapng", "--anonymize", "-o", one, env={"HS_ANONYMIZE_KEY": "s3cret"}).returncode == 0
    two = Path("two.score")
    assert hs("score", CORPUS / "tcp_handshake.pcapng", "--anonymize", "--key", "s3cret", "-o", two).returncode == 0
    assert load_score(one).hosts == load_score(two).hosts and "s3cret" not in one.read_text()


# -- the orchestra ------------------------------------------------------------------------------------------

def test_orchestra_show_prints_the_built_in_defaults_as_toml():
    r = hs("orchestra", "--show")
    assert r.returncode == 0
    table = tomllib.loads(r.stdout)
    assert set(table) == {"syn", "syn-retry", "syn-ack", "syn-ack-retry", "ack", "rst"}
    assert (table["syn"]["note"], table["syn-ack"]["note"], table["ack"]["note"]) == (76, 81, 75)
    assert table["syn-retry"]["velocity"] < table["syn"]["velocity"]
    assert all(t["channel"] == 9 for t in table.values())
    path = Path("mine.toml")
    path.write_text(r.stdout)
    assert load_orchestra(path).instruments == DEFAULT.instruments


def test_an_orchestra_file_overrides_key_by_key_and_lands_in_the_score():
    path = Path("band.toml")
    path.write_text('[syn]\nnote = 60\n\n[rst]\nvelocity = 127\ntimbre = "click"\n')
    shown = tomllib.loads(hs("orchestra", "--orchestra", path).stdout)
    assert shown["syn"]["note"] == 60 and shown["syn"]["velocity"] == 100 and shown["rst"]["velocity"] == 127
    score = written(CORPUS / "tcp_handshake.pcapng", "--orchestra", path)
    assert score.orchestra.name == "band.toml"
    assert score.orchestra["syn"].note == 60 and score.orchestra["syn-ack"].note == 81


@pytest.mark.parametrize("text, needle", [
    ("[syx]\nnote = 1\n", "[syx]: unknown note kind"),
    ("[syn]\nnote = 128\n", "[syn] note: 128 is outside 0-127"),
    ("[syn]\nnote = -1\n", "[syn] note: -1 is outside 0-127"),
    ('[syn]\nnote = "76"\n', "[syn] note: '76' is not an integer"),
    ("[syn]\nvelocity = 1.5\n", "[syn] velocity: 1.5 is not an integer"),
    ("[ack]\nloudness = 3\n", "[ack] loudness: unknown key"),
    ("[ack]\npulse_ms = 500\n", "[ack] pulse_ms: 500 is outside 1-90"),
    ("[ack\n", "not valid TOML"),
    ("syn = 3\n", "syn: must be a table"),
])
def test_a_bad_orchestra_names_the_key(text, needle):
    path = Path("bad.toml")
    path.write_text(text)
    for args in (["orchestra", "--orchestra", path], ["score", CORPUS / "tcp_handshake.pcapng", "--orchestra", path]):
        r = hs(*args)
        one_line_error(r, str(path), needle)
    assert not Path("scores").exists()


# -- writes that lose nothing ----------------------------------------------------------------------------------

def test_default_name_and_no_overwrite_without_force():
    r = hs("score", CORPUS / "tcp_handshake.pcapng")
    assert r.returncode == 0 and "scores/tcp_handshake.score" in r.stdout
    path = Path("scores/tcp_handshake.score")
    before = path.read_bytes()
    path.write_bytes(b"mine, keep me\n")
    r = hs("score", CORPUS / "tcp_handshake.pcapng")
    one_line_error(r, "scores/tcp_handshake.score: already exists; use --force")
    assert path.read_bytes() == b"mine, keep me\n"
    assert hs("score", CORPUS / "tcp_handshake.pcapng", "--force").returncode == 0
    assert path.read_bytes() == before
    r = hs("score", CORPUS / "tcp_handshake.pcapng", CORPUS / "dns_tcp.pcapng")
    assert "scores/tcp_handshake-and-1-more.score" in r.stdout


def test_a_failed_run_leaves_the_previous_score_and_no_temporary_file(tmp_path):
    path = Path("kept.score")
    path.write_bytes(b"the previous score\n")
    cut = tmp_path / "in" / "cut.pcapng"
    cut.parent.mkdir()
    cut.write_bytes((CORPUS / "tcp_handshake.pcapng").read_bytes()[:-10])
    r = hs("score", cut, "--strict", "-o", path, "--force")
    one_line_error(r, "cut short")
    assert path.read_bytes() == b"the previous score\n"
    assert sorted(p.name for p in Path(".").iterdir()) == ["in", "kept.score"]


def test_sigterm_while_scoring_leaves_the_previous_score(tmp_path):
    big = tmp_path / "big.pcap"
    subprocess.run([sys.executable, ROOT / "benchmarks" / "make_capture.py", big, "--packets", "1500000"],
                   check=True, capture_output=True)
    path = Path("kept.score")
    path.write_bytes(b"the previous score\n")
    proc = subprocess.Popen([*HS, "score", str(big), "-o", str(path), "--force"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(0.7)  # into the reading of 1.5 M packets (about 1 s even on a fast machine)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "Traceback" not in err
    assert path.read_bytes() == b"the previous score\n"
    assert sorted(p.name for p in Path(".").iterdir()) == ["big.pcap", "big.pcap.expected.json", "kept.score"]


def test_an_error_while_writing_removes_the_temporary_file_and_keeps_the_old_one():
    from handshake_score.files import atomic_write

    path = Path("kept.score")
    path.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(path, force=True) as f:
            f.write(b"half of a new ")
            raise KeyboardInterrupt
    assert path.read_bytes() == b"old" and [p.name for p in Path(".").iterdir()] == ["kept.score"]
    with atomic_write(path, force=True) as f:
        f.write(b"new")
    assert path.read_bytes() == b"new" and oct(path.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_score_and_midi_in_one_go_equal_score_then_export():
    r = hs("score", CORPUS / "resp_1_benchmark.pcap", "-o", "a.score", "--midi", "a.mid", "--stretch", "10")
    assert r.returncode == 0, r.stderr
    assert hs("export", "a.score", "b.mid", "--stretch", "10").returncode == 0
    assert Path("a.mid").read_bytes() == Path("b.mid").read_bytes() and Path("a.mid").stat().st_size > 1000


@pytest.mark.parametrize("args, needle", [
    (["--midi", "a.mid", "--stretch", "0"], "stretch must be a number above 0"),
    (["--midi", "a.mid", "--stretch", "nan"], "stretch must be a number above 0"),
    (["-o", "same", "--midi", "same"], "the score and the MIDI file cannot be the same file"),
])
def test_a_bad_midi_request_fails_before_anything_is_written(args, needle):
    r = hs("score", CORPUS / "tcp_handshake.pcapng", *args)
    one_line_error(r, needle)
    assert list(Path(".").iterdir()) == []


def test_export_refuses_to_overwrite_and_a_bad_stretch_before_reading():
    assert hs("score", CORPUS / "tcp_handshake.pcapng", "-o", "a.score").returncode == 0
    Path("a.mid").write_bytes(b"keep")
    one_line_error(hs("export", "a.score", "a.mid"), "a.mid: already exists")
    one_line_error(hs("export", "a.score", "b.mid", "--stretch", "-2"), "stretch must be a number above 0")
    assert Path("a.mid").read_bytes() == b"keep" and not Path("b.mid").exists()
    assert hs("export", "a.score", "a.mid", "--force").returncode == 0 and Path("a.mid").read_bytes()[:4] == b"MThd"
