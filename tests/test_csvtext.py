"""csvtext lays out CSV lines with numpy: every line must be what Python's own formatting writes."""

import numpy as np
import pytest

from handshake_score.csvtext import integers, lines, words

INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1


def python_lines(*columns) -> bytes:
    return "".join(",".join(map(str, row)) + "\n" for row in zip(*columns)).encode()


def test_integers_at_every_width_and_both_ends_of_int64():
    edges = [0, 1, -1, 9, -9, 10, -10, INT64_MAX, INT64_MIN, INT64_MIN + 1]
    edges += [s * (10 ** k + d) for k in range(1, 19) for d in (-1, 0, 1) for s in (1, -1)]
    values = np.array(edges, np.int64)
    assert lines([integers(values)]) == python_lines(edges)


def test_random_columns_as_python_formats_them():
    rng = np.random.default_rng(7)
    for _ in range(20):
        n = int(rng.integers(1, 500))
        a = rng.integers(INT64_MIN, INT64_MAX, n, dtype=np.int64, endpoint=True)
        b = rng.integers(0, 65536, n).astype(np.uint16)
        c = (rng.integers(-1000, 1000, n) * 10 ** rng.integers(0, 15, n)).astype(np.int64)
        table = ["10.0.0.1", "2001:db8::1", "héte", "x"]
        idx = rng.integers(0, len(table), n)
        got = lines([integers(a), integers(b), words(table, idx), integers(c)])
        assert got == python_lines(a.tolist(), b.tolist(), [table[i] for i in idx], c.tolist())


def test_an_empty_value_is_written_as_nothing():
    values = np.array([5, INT64_MIN, -3, INT64_MIN], np.int64)
    assert lines([integers(values, empty=INT64_MIN), integers(np.arange(4))]) == b"5,0\n,1\n-3,2\n,3\n"
    # a column empty on every line, and no line at all
    assert lines([integers(np.full(2, -1), empty=-1), words(["a"], [0, 0])]) == b",a\n,a\n"
    assert lines([integers(np.zeros(0, np.int64)), words(["a"], np.zeros(0, int))]) == b""


def test_words_of_a_large_table_use_only_the_rows_asked_for():
    table = [f"h{i}" for i in range(100_000)]
    assert lines([words(table, [99_999, 3, 99_999])]) == b"h99999\nh3\nh99999\n"


def test_a_nul_in_a_word_is_refused():
    with pytest.raises(ValueError, match="NUL"):
        words(["a\0b"], [0])
