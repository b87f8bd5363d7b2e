"""handshake-score: listen to the TCP three-way handshake.

Packet sources (:mod:`.sources`) -> handshake tracker (:mod:`.tracker`) ->
score -> performers. Each stage takes the previous one's plain data types and
imports nothing from the stages after it.
"""

__version__ = "0.1.0"
