import pytest

from flow.errors import FlowError
from flow.stats import leveugle_sample_size, wilson_interval, z_score


@pytest.mark.parametrize(
    "population, margin, confidence, expected",
    [
        (1000, 0.05, 0.95, 278),  # 1000 / (1 + 0.0025 * 999 / (1.96^2 * 0.25)) = 277.74
        (60, 0.05, 0.95, 53),  # 60 / (1 + 0.0025 * 59 / 0.9604) = 52.01
        (10**6, 0.01, 0.99, 16317),  # 1e6 / (1 + 1e-4 * 999999 / (2.5758^2 * 0.25)) = 16316.2
        (1, 0.05, 0.95, 1),
        (0, 0.05, 0.95, 0),
    ],
)
def test_leveugle_sample_size(population, margin, confidence, expected):
    assert leveugle_sample_size(population, margin, confidence) == expected


def test_leveugle_with_a_known_p_needs_fewer_faults():
    assert leveugle_sample_size(10**5, 0.01, 0.95, p=0.1) < leveugle_sample_size(10**5, 0.01, 0.95, p=0.5)


def test_wilson_interval_known_values():
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.27753), abs=1e-5)
    assert wilson_interval(5, 10) == pytest.approx((0.23659, 0.76341), abs=1e-5)
    assert wilson_interval(10, 10) == pytest.approx((0.72247, 1.0), abs=1e-5)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert z_score(0.95) == pytest.approx(1.959964, abs=1e-6)


@pytest.mark.parametrize("kwargs", [{"margin": 0.0}, {"margin": 1.5}, {"confidence": 1.0}, {"p": 0.0}])
def test_bad_statistics_parameters(kwargs):
    args = {"population": 100, "margin": 0.05, "confidence": 0.95, "p": 0.5, **kwargs}
    with pytest.raises(FlowError, match="must lie in"):
        leveugle_sample_size(**args)
