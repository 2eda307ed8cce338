import json

import numpy as np
import pytest

from flow.config import config_from_dict
from flow.errors import VerificationError
from flow.steps import run
from flow.verify import compare_logits, first_mismatch


def test_compare_logits_counts_and_agreement():
    a = np.array([[1.0, 2.0], [3.0, 0.5], [0.0, 0.25]], dtype=np.float32)
    b = a.copy()
    assert compare_logits(a, b)["bit_exact"] is True
    b[1, 0] = 0.0  # flips the argmax of sample 1
    b[2, 1] = 0.375  # same argmax, different value
    report = compare_logits(a, b, labels=np.array([1, 0, 1]))
    assert report["bit_exact"] is False
    assert report["n_samples_differing"] == 2
    assert report["argmax_agreement"] == pytest.approx(2 / 3)
    assert report["max_abs_diff"] == 3.0
    assert report["keras_accuracy"] == 1.0 and report["csim_accuracy"] == pytest.approx(2 / 3)


def test_first_mismatch():
    rows = [{"layer": "a", "bit_exact": True}, {"layer": "b", "bit_exact": False}, {"layer": "c", "bit_exact": False}]
    assert first_mismatch(rows) == "b"
    assert first_mismatch(rows[:1]) is None


@pytest.mark.csim
@pytest.mark.slow
def test_mismatch_is_located_per_layer(tmp_path, tiny_cfg_dict):
    """Truncating conv2's result type breaks bit-exactness; the trace blames conv2 first, not conv1."""
    tiny_cfg_dict["hls"] = {"csim_opt": "O1", "layers": {"conv2": {"precision": {"result": "fixed<4,1>"}}}}
    cfg = config_from_dict(tiny_cfg_dict)
    with pytest.raises(VerificationError, match="first at layer 'conv2'"):
        run(cfg, tmp_path)
    report = json.loads((tmp_path / "verify" / "report.json").read_text())
    assert report["bit_exact"] is False and report["first_mismatch_layer"] == "conv2"
    by_layer = {row["layer"]: row for row in report["per_layer"]}
    assert by_layer["conv1"]["bit_exact"] is True and by_layer["pool1"]["bit_exact"] is True
    assert by_layer["conv2"]["max_abs_diff"] > 0
    assert set(json.loads((tmp_path / "time_per_step.json").read_text())) == {
        "load",
        "train",
        "rank",
        "convert",
        "verify",
    }


def test_unknown_layer_override_is_a_clear_error(tmp_path, tiny_cfg_dict):
    from flow.errors import FlowError

    tiny_cfg_dict["hls"] = {"layers": {"conv3": {"reuse_factor": 2}}}
    with pytest.raises(FlowError, match=r"hls\.layers: no layer named 'conv3' in the model"):
        run(config_from_dict(tiny_cfg_dict), tmp_path, ["load", "convert"])
