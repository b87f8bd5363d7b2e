"""The captures' sha256, worked out beside the scoring: the digest of each file's bytes, whatever its size."""

import hashlib
import os

from conftest import CORPUS
from handshake_score.digests import Digests


def test_each_capture_gets_the_sha256_of_its_bytes(tmp_path):
    empty = tmp_path / "empty.pcap"
    empty.write_bytes(b"")
    large = tmp_path / "large.bin"  # more than one step of the map, and not a whole number of them
    large.write_bytes(os.urandom(1 << 20) * 70 + b"tail")
    paths = [CORPUS / "tcp-handshake-nano.pcap", empty, large]
    assert Digests(paths).result() == [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]


def test_a_file_it_cannot_read_has_no_digest(tmp_path):
    assert Digests([tmp_path / "missing.pcap"]).result() == [""]


def test_digests_begun_early_serve_the_same_paths_only(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"a")
    b.write_bytes(b"b")
    early = Digests([a])
    assert early.of([str(a)]) is early
    other = early.of([a, b])  # a ring buffer's base name became its files: begun again
    assert other is not early and other.result() == [hashlib.sha256(b"a").hexdigest(), hashlib.sha256(b"b").hexdigest()]
