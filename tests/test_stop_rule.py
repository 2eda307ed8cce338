"""inject.stop_at_margin's rule without a C-sim: it decides on the completed prefix of a seeded order, so rows
arriving in any order (or from a resumed run) give the same stop point."""

from __future__ import annotations

import numpy as np
import pytest

from flow.campaign import MarginStop, PrefixRule, half_width
from flow.config import config_from_dict


def _first_stop(critical: list[bool], stop: MarginStop) -> int | None:
    """The stop point by brute force: the first multiple of ``every`` in the order whose prefix is precise enough."""
    order = stop.order(len(critical))
    for n in range(stop.every, len(order) + 1, stop.every):
        if half_width(sum(critical[i] for i in order[:n]), n) <= stop.margin:
            return n
    return None


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_any_arrival_order_stops_where_the_prefix_says(seed):
    rng = np.random.default_rng(seed)
    critical = list(rng.random(1000) < 0.3)
    stop = MarginStop(0.05, 25, seed)
    expected = _first_stop(critical, stop)
    assert expected is not None and 25 <= expected < 1000
    rows = [(i, critical[i]) for i in rng.permutation(1000)]  # out of order, in uneven batches
    rule = PrefixRule(stop, 1000)
    for k in range(0, 1000, 37):
        rule.add([(int(i), c) for i, c in rows[k : k + 37]])
    assert rule.at == expected
    assert rule.counted() == set(stop.order(1000)[:expected])
    assert rule.report()["stopped"] and rule.report()["faults"] == expected


def test_no_stop_until_the_prefix_is_complete():
    stop = MarginStop(0.2, 10, 7)
    order = stop.order(100)
    rule = PrefixRule(stop, 100)
    rule.add([(i, False) for i in order[1:]])  # every row but the first of the order
    assert rule.at is None and rule.counted() == set(order[1:])
    rule.add([(order[0], False)])
    assert rule.at == _first_stop([False] * 100, stop) == 10


def test_the_order_is_seeded_and_a_permutation():
    a, b = MarginStop(0.1, 5, 3), MarginStop(0.1, 5, 4)
    assert a.order(50) == MarginStop(0.1, 9, 3).order(50) and sorted(a.order(50)) == list(range(50))
    assert a.order(50) != b.order(50) and a.order(50) != list(range(50))


def test_margin_not_reached_says_so():
    stop = MarginStop(0.01, 10, 0)
    rule = PrefixRule(stop, 40)
    rule.add([(i, i % 2 == 0) for i in range(40)])
    report = rule.report()
    assert rule.at is None and not report["stopped"] and report["faults"] == 40
    assert report["reason"].startswith("margin 0.01 not reached before the end of the list: 40 of 40 faults")


def test_stop_at_margin_config_defaults_to_off():
    assert config_from_dict({}).inject.stop_at_margin is None
    assert config_from_dict({"inject": {"stop_at_margin": 0.02}}).inject.stop_at_margin == 0.02
