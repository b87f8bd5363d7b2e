"""handshake-score: listen to the TCP three-way handshake.

Packet sources (:mod:`.sources`) -> handshake tracker (:mod:`.tracker`) ->
score -> performers. Each stage takes the previous one's plain data types and
imports nothing from the stages after it.
"""

from functools import cache


@cache
def version() -> str:
    """hs's version, as installed (pyproject.toml's): read from the package metadata."""
    from importlib import metadata  # only when asked: most hs commands never are

    try:
        return metadata.version("handshake-score")
    except metadata.PackageNotFoundError:  # a source tree run without being installed
        return "0+unknown"


def __getattr__(name: str):
    if name == "__version__":
        return version()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
