"""Saving, loading and checking QKeras models."""

from __future__ import annotations

import re
from pathlib import Path

from flow.errors import FlowError
from flow.model_files import load_checked, load_json_weights
from flow.rundir import write_atomic
from flow.schema import IDENTIFIER

# Keras layer types hls4ml converts for us, and those that must be replaced by a quantized twin.
SUPPORTED_LAYERS = {
    "InputLayer", "QConv2D", "QDense", "QActivation", "MaxPooling2D", "AveragePooling2D", "Flatten",
    "Add", "Concatenate", "Reshape", "Dropout", "ZeroPadding2D", "QConv2DBatchnorm", "QDenseBatchnorm",
    "GlobalAveragePooling2D", "GlobalMaxPooling2D", "Correction", "Activation", "BatchNormalization",
    "QBatchNormalization",
}  # fmt: skip
UNQUANTIZED = {
    "Conv2D": "QConv2D", "Dense": "QDense", "ReLU": "QActivation", "DepthwiseConv2D": "QDepthwiseConv2D",
    "SeparableConv2D": "QSeparableConv2D",
}  # fmt: skip
EXACT_FLOAT_ACTIVATIONS = ("relu", "linear")  # float activations whose fixed-point result is exact


def custom_objects() -> dict:
    """QKeras classes and quantizers, and ftflow's Correction layer, needed to load a saved model."""
    from qkeras.utils import _add_supported_quantized_objects  # QKeras imports TensorFlow (~2 s)

    from flow.correction import Correction  # flow.correction imports TensorFlow at its top

    objects: dict = {"Correction": Correction}
    _add_supported_quantized_objects(objects)
    return objects


def load_model(path: str | Path):
    """Load a saved QKeras model (.h5, .keras or a SavedModel directory) with QKeras custom objects, after
    checking its stored architecture (flow/model_files.py)."""
    path = Path(path)
    if not path.exists():
        raise FlowError(f"model.path: file not found: {path}")
    try:
        return load_checked(path, custom_objects())
    except FlowError:
        raise
    except Exception as exc:  # keras raises many types for unreadable files
        raise FlowError(f"{path}: cannot load as a QKeras model ({' '.join(str(exc).split())[:300]})") from None


def load_user_model(cfg):
    """The model a ModelConfig names: ``path`` (a file or SavedModel directory) or hls4ml's ``json`` + ``weights``."""
    if cfg.path:
        return load_model(cfg.path)
    try:
        return load_json_weights(Path(cfg.json), Path(cfg.weights), custom_objects())
    except FlowError:
        raise
    except Exception as exc:
        raise FlowError(f"{cfg.json}: cannot load as a QKeras model ({' '.join(str(exc).split())[:300]})") from None


def save_model(model, path: Path) -> Path:
    """Save a model in HDF5 (the format QKeras round-trips reliably)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda p: model.save(p, include_optimizer=False))  # a kill leaves no half model
    return path


def check_model(model) -> None:
    """Fail with the first layer (name and type) that is unquantized or not convertible by this flow."""
    problems = layer_problems(model)
    if problems:
        name, why = next(iter(problems.items()))
        raise FlowError(f"layer '{name}' {why}")


def layer_problems(model) -> dict[str, str]:
    """Layer name -> why the flow cannot take it (its type, and what to use instead), for every such layer."""
    problems = {}
    for layer in model.layers:
        problem = _layer_problem(layer)
        if problem:
            problems[layer.name] = problem
    return problems


def _layer_problem(layer) -> str | None:
    kind = type(layer).__name__
    if not re.fullmatch(IDENTIFIER, layer.name):
        return (
            f"({kind}): its name becomes a C++ identifier in the hls4ml project; allowed: a letter or _, then "
            "letters, digits or _ (at most 64): rename the layer"
        )
    if kind in UNQUANTIZED:
        return f"({kind}) is not quantized: use {UNQUANTIZED[kind]} so the FPGA arithmetic is defined by the model"
    if kind not in SUPPORTED_LAYERS:
        return f"({kind}) is not supported; supported types: {', '.join(sorted(SUPPORTED_LAYERS))}"
    for attr in ("kernel_quantizer", "bias_quantizer"):
        if hasattr(layer, attr) and getattr(layer, attr) is None and _has_weight(layer, attr):
            return f"({kind}) has no {attr}: every weight must be quantized"
    if kind == "QActivation" and getattr(layer, "quantizer", None) is None:
        return "(QActivation) has an unquantized activation"
    if kind == "Activation" and layer.get_config().get("activation") not in EXACT_FLOAT_ACTIVATIONS:
        return (
            f"(Activation {layer.get_config().get('activation')!r}) is not quantized: only relu and linear are "
            "exact in fixed point (a final softmax/sigmoid is stripped); use a QActivation"
        )
    return None


def _has_weight(layer, attr: str) -> bool:
    return attr == "kernel_quantizer" or bool(getattr(layer, "use_bias", False))


def input_shape(model) -> tuple[int, ...]:
    """The model's input shape without the batch dimension."""
    return tuple(int(d) for d in model.input_shape[1:])


def output_size(model) -> int:
    """Number of logits."""
    return int(model.output_shape[-1])
