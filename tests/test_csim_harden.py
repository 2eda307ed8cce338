"""Hardened zoo models convert through our correction-layer templates and are bit-exact in C-sim, and with no
fault they give exactly the unhardened model's logits."""

import numpy as np
import pytest
from conftest import HARDEN_CASES

from flow.csim import CSimLibrary
from flow.training import logits

pytestmark = [pytest.mark.csim, pytest.mark.slow]


@pytest.mark.parametrize("case", HARDEN_CASES, ids=lambda case: "-".join(map(str, case)))
def test_hardened_model_is_bit_exact_and_equals_the_baseline(trained_zoo, compiled_hardened, case):
    model_name, bits = case[:2]
    baseline, ds = trained_zoo[(model_name, bits)]
    hardened, project = compiled_hardened[case]
    csim = CSimLibrary(project).predict(ds.x_test)
    np.testing.assert_array_equal(csim, logits(hardened, ds.x_test))
    np.testing.assert_array_equal(csim, logits(baseline, ds.x_test))
    source = (project.directory / "firmware" / f"{project.project_name}.cpp").read_text()
    assert "nnet::correction<" in source
    assert (project.directory / "firmware" / "nnet_utils" / "nnet_correction.h").is_file()


def test_registration_is_idempotent():
    import hls4ml

    from flow.hls_ext import PASS_NAME, register_correction

    register_correction()
    register_correction()
    optimizers = hls4ml.model.flow.get_flow("convert").optimizers  # the flow whose last pass infers precisions
    assert optimizers[-1] == "infer_precision_types" and optimizers.count("infer_precision_types") == 1
    for backend in ("vivado", "vitis"):
        assert optimizers.count(f"{backend}:{PASS_NAME}") == 1
