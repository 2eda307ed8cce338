"""Every zoo model at 4 and 8 bits is bit-exact in C-sim for io_parallel/io_stream and Vivado/Vitis."""

import itertools

import numpy as np
import pytest
from conftest import BACKENDS, BITS, IO_TYPES, ZOO_CASES

from flow.csim import CSimLibrary
from flow.training import logits

pytestmark = [pytest.mark.csim, pytest.mark.slow]


@pytest.mark.parametrize("model, bits, io_type, backend", list(itertools.product(ZOO_CASES, BITS, IO_TYPES, BACKENDS)))
def test_zoo_model_is_bit_exact_in_csim(trained_zoo, compiled_zoo, model, bits, io_type, backend):
    keras_model, ds = trained_zoo[(model, bits)]
    project = compiled_zoo[(model, bits, io_type, backend)]
    expected = logits(keras_model, ds.x_test)
    got = CSimLibrary(project).predict(ds.x_test)
    assert got.shape == expected.shape == (len(ds.x_test), ds.classes)
    assert np.abs(expected).max() > 0  # a non-trivial comparison
    np.testing.assert_array_equal(got, expected)
