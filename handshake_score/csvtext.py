"""Columns of integers and words as the lines of a CSV text, made by numpy.

>>> lines([integers(np.array([7, -12])), words(["syn", "ack"], np.array([1, 0]))])
b'7,ack\\n-12,syn\\n'

A score file has a line per note, and ``%``-formatting them is a Python call per
value. Here every field is laid out in a byte matrix instead, one row a line, each
field right-aligned in a slot as wide as its widest value and NUL before it; the
lines are the matrix's bytes without the NULs. So a field's text must hold no NUL
(:func:`words` checks), and a value can be written as nothing (``empty``).
"""

from __future__ import annotations

import numpy as np

_POW10 = 10 ** np.arange(1, 20, dtype=np.uint64)  # a uint64 has at most 20 digits
_ZERO, _MINUS = ord("0"), ord("-")


def integers(values: np.ndarray, empty: int | None = None) -> np.ndarray:
    """An ``(n, width)`` uint8 slot of 64-bit integers in decimal (``-`` for the
    negative), right-aligned; a value equal to ``empty`` is written as nothing."""
    v = np.asarray(values).astype(np.int64, copy=False)
    negative = v < 0
    size = v.view(np.uint64).copy()
    np.negative(size, out=size, where=negative)  # two's complement: |INT64_MIN| too
    digits = np.searchsorted(_POW10, size, side="right") + 1
    most = int(digits.max(initial=1))
    signed = bool(negative.any())
    width = most + signed
    slot = np.empty((len(v), width), np.uint8)
    for k in range(most):
        size, digit = np.divmod(size, np.uint64(10))
        column = digit.astype(np.uint8)
        column += _ZERO
        if k:
            column[digits <= k] = 0
        slot[:, width - 1 - k] = column
    if signed:
        slot[:, 0] = 0
        rows = np.flatnonzero(negative)
        slot[rows, width - 1 - digits[rows]] = _MINUS
    if empty is not None:
        slot[v == empty] = 0
    return slot


def words(table: list[str], index: np.ndarray) -> np.ndarray:
    """An ``(n, width)`` uint8 slot of ``table[index[i]]``, UTF-8, left-aligned."""
    index = np.asarray(index, np.intp)
    if len(table) > len(index):  # a score's million hosts, a block's few: only those
        used, index = np.unique(index, return_inverse=True)
        table = [table[i] for i in used.tolist()]
    encoded = [w.encode() for w in table]
    if any(b"\0" in w for w in encoded):
        raise ValueError("a CSV field cannot hold a NUL byte")
    lengths = np.fromiter(map(len, encoded), np.intp, len(encoded))
    matrix = np.zeros((len(encoded), max(int(lengths.max(initial=0)), 1)), np.uint8)
    flat = np.frombuffer(b"".join(encoded), np.uint8)
    if len(flat):
        rows = np.repeat(np.arange(len(encoded)), lengths)
        columns = np.arange(len(flat)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        matrix[rows, columns] = flat
    return matrix[index]


def lines(slots: list[np.ndarray], separator: bytes = b",", end: bytes = b"\n") -> bytes:
    """The slots (of as many rows each) as lines of fields: ``separator`` between, ``end`` after."""
    n = len(slots[0])
    width = sum(s.shape[1] for s in slots) + len(slots)
    matrix = np.empty((n, width), np.uint8)
    at = 0
    for i, slot in enumerate(slots):
        if i:
            matrix[:, at] = separator[0]
            at += 1
        matrix[:, at:at + slot.shape[1]] = slot
        at += slot.shape[1]
    matrix[:, at] = end[0]
    return matrix[matrix != 0].tobytes()
