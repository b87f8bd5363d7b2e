"""Keyed pseudonyms for the hosts of a score, so it can be shared.

Each address becomes ``<class>-v<version>-<12 hex digits>``, the digits an
HMAC-SHA256 of the address under a key: the same host always gets the same
pseudonym under the same key, nobody without the key can tell which host it
is (even by trying every IPv4 address), and the class (``private`` or
``public``) and IP version stay visible, because they are what a listener
learns from (a LAN's handshakes take microseconds, the internet's
milliseconds). Without a key given, a random one is used and forgotten, so two
shared scores cannot be linked. The key is never written anywhere.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
from dataclasses import replace

from .score import Score

DIGITS = 12


def pseudonym(host: str, key: bytes, digits: int = DIGITS) -> str:
    digest = hmac.new(key, host.encode(), hashlib.sha256).hexdigest()[:digits]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:  # already a pseudonym, or a name
        return f"other-{digest}"
    return f"{'public' if ip.is_global else 'private'}-v{ip.version}-{digest}"


def new_key(key: str | bytes | None = None) -> bytes:
    """``key`` as bytes, or a random key (forgotten with the process) when None."""
    return os.urandom(32) if key is None else key.encode() if isinstance(key, str) else key


def pseudonyms(hosts: list[str], key: bytes) -> dict[str, str]:
    """Each host's pseudonym, all distinct (48 bits each: should two collide, 256)."""
    names = {h: pseudonym(h, key) for h in hosts}
    if len(set(names.values())) < len(names):
        names = {h: pseudonym(h, key, 64) for h in hosts}
    return names


def anonymize(score: Score, key: str | bytes | None = None) -> Score:
    """``score`` with every host replaced by its keyed pseudonym (a random key when None)."""
    key = new_key(key)
    names = pseudonyms(score.hosts, key)
    options = dict(score.options, anonymized=True)
    if "host" in options:  # a filter naming real hosts would give them away
        options["host"] = [names.get(h) or (pseudonym(h, key) if _is_address(h) else "(hidden)") for h in options["host"]]
    return replace(score, hosts=[names[h] for h in score.hosts], options=options)


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False
