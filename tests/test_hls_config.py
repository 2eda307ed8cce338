"""The hls4ml config built from the run config (no compilation)."""

from flow.config import config_from_dict
from flow.hls import hls_config
from flow.zoo import build_model


def _config(hls: dict):
    cfg = config_from_dict({"hls": hls})
    model = build_model(cfg.model, (8, 8, 1), 10)
    return hls_config(model, cfg.hls, input_frac_bits=8)


def test_name_granularity_with_quantizer_precisions():
    config = _config({})
    layers = config["LayerName"]
    assert {"conv1", "relu1", "conv2", "fc1", "logits"} <= set(layers)
    assert layers["conv1"]["Precision"]["weight"] == "fixed<6,1,TRN,WRAP,0>"
    assert layers["relu1"]["Precision"]["result"] == "ufixed<6,2,RND_CONV,SAT,0>"
    assert layers["image"]["Precision"]["result"] == "ufixed<9,1>"  # exactly the 2^-8 input grid in [0, 1]
    assert config["Model"]["Strategy"] == "Latency" and config["Model"]["ReuseFactor"] == 1


def test_overrides_from_the_run_config():
    config = _config(
        {
            "strategy": "Resource",
            "reuse_factor": 4,
            "input_precision": "ufixed<10,2>",
            "layers": {"fc1": {"reuse_factor": 8, "strategy": "Latency", "precision": {"accum": "fixed<20,8>"}}},
        }
    )
    assert config["Model"]["Strategy"] == "Resource" and config["Model"]["ReuseFactor"] == 4
    fc1 = config["LayerName"]["fc1"]
    assert fc1["ReuseFactor"] == 8 and fc1["Strategy"] == "Latency"
    assert config["LayerName"]["conv1"]["ReuseFactor"] == 4  # the model's reuse factor reaches every layer
    assert fc1["Precision"]["accum"] == "fixed<20,8>"
    assert fc1["Precision"]["weight"] == "fixed<6,1,TRN,WRAP,0>"  # untouched keys stay
    assert config["LayerName"]["image"]["Precision"]["result"] == "ufixed<10,2>"
