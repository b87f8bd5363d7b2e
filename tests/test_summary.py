"""The summary's median delays: exact for a capture of ordinary size, bounded memory past it."""

import random
import statistics

import numpy as np
import pytest

from handshake_score.summary import Delays


@pytest.mark.parametrize("values", [[5], [3, -4], [0, 0, 7, -2, 0], [-10**12, 10**12, 1, 2]])
def test_median_is_exact_for_a_few_values(values):
    d = Delays()
    for v in values:
        d.add(v)
    assert d.count == len(values)
    assert d.median() == statistics.median(values)


def test_no_values_no_median():
    assert Delays().median() is None


def test_median_past_the_exact_limit_is_within_half_a_bucket_and_memory_stays_fixed():
    rng = random.Random(7)
    values = [int(rng.lognormvariate(17, 2)) * rng.choice((1, 1, 1, -1)) for _ in range(Delays.EXACT * 3)]
    d = Delays()
    for v in values[: Delays.EXACT - 1]:
        d.add(v)
    assert d.median() == statistics.median(values[: Delays.EXACT - 1])  # still exact
    for v in values[Delays.EXACT - 1 :]:
        d.add(v)
    true = statistics.median(values)
    assert d.count == len(values)
    assert abs(d.median() - true) <= 5e-4 * abs(true)
    assert d._values is None and d._histogram.nbytes < 1 << 20  # the values are gone: a fixed histogram holds them


def test_a_median_of_zero_and_of_negative_delays_past_the_limit():
    d = Delays()
    for _ in range(Delays.EXACT + 10):
        d.add(0)
    assert d.median() == 0.0
    d = Delays()
    for i in range(Delays.EXACT + 11):
        d.add(-1_000_000 - i % 3)
    assert abs(d.median() + 1_000_001) <= 5e-4 * 1_000_001


def test_adding_many_at_once_is_adding_each():
    """The tracker hands over closed attempts a step at a time: a summary's delays must not
    depend on how many come at once, before the histogram and after it."""
    rng = random.Random(3)
    values = [int(rng.lognormvariate(15, 3)) * rng.choice((1, -1)) for _ in range(Delays.EXACT * 2 + 17)]
    one, many = Delays(), Delays()
    for v in values:
        one.add(v)
    at = 0
    for size in [1, 0, 5000, Delays.EXACT, 3, Delays.EXACT, 10**6]:
        many.add_many(np.array(values[at:at + size], np.int64))
        at += size
        if at <= Delays.EXACT:
            assert many.median() == statistics.median(values[:at]) if at else many.median() is None
    assert (many.count, many.median()) == (one.count, one.median())
    assert np.array_equal(many._histogram, one._histogram)
