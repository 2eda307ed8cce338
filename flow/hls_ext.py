"""hls4ml support for the Correction layer: Keras-v2 handler, hls4ml layer, config/function templates, the C++
header ``hls_templates/nnet_correction.h`` and a precision pass (min, median and clamps are exact, so the result
type is the input type). ``register_correction()`` registers all of it; it is idempotent and runs nothing at import.
"""

from __future__ import annotations

import numpy as np

from flow.errors import FlowError
from flow.package_data import template as shipped_template

HEADER = "nnet_correction.h"  # in hls_templates/ (flow/package_data.py)
BACKENDS = ("Vivado", "Vitis")
PASS_NAME = "correction_result_type"
INFER = "infer_precision_types"  # hls4ml's precision inference; ftflow's precision passes run right before it

CONFIG_TEMPLATE = """struct config{index} : nnet::correction_config {{
    static const unsigned n_pixels = {n_pixels};
    static const unsigned n_in_chan = {n_in_chan};
    static const unsigned n_chan0 = {n_chan0};
    static const unsigned n_copy = {n_copy};
    static const unsigned n_out_chan = {n_out_chan};
    static const unsigned n_sources = {n_sources};
    static const unsigned policy = nnet::correction_{policy};
    static const bool clip = {clip};
}};\n"""
FUNCTION_TEMPLATE = (
    "nnet::correction<{input_t}, {copy_types}{output_t}, {src_t}, {bound_t}, {config}>"
    "({input}, {copies}{output}, {src}, {lo}, {hi});"
)
INCLUDES = ["nnet_utils/nnet_correction.h"]


def parse_correction(keras_layer, input_names, input_shapes, data_reader):
    """Keras-v2 handler: inputs are the original layer and its 1 or 2 copy layers; the config holds the source
    map and the bounds."""
    config = keras_layer["config"]
    if len(input_shapes) not in (2, 3):
        raise ValueError(f"correction layer '{config['name']}' needs the original and 1 or 2 copies as inputs")
    shape = list(input_shapes[0])
    layer = {
        "class_name": "Correction",
        "name": config["name"],
        "sources": config["sources"],
        "policy": config["policy"],
        "lo": config["lo"],
        "hi": config["hi"],
        "clip": bool(config["clip"]),
        "n_in_chan": int(sum(s[-1] for s in input_shapes)),
        "n_chan0": int(shape[-1]),
        "n_copy": int(input_shapes[1][-1]),
        "n_out_chan": len(config["sources"]),
        "n_pixels": int(np.prod(shape[1:-1])) if len(shape) > 2 else 1,
        "n_sources": max(len(row) for row in config["sources"]),
        "inputs": input_names,
    }
    return layer, [*shape[:-1], layer["n_out_chan"]]


def _layer_class():
    # hls4ml: ~0.3 s to import
    from hls4ml.model.attributes import Attribute, ChoiceAttribute, WeightAttribute
    from hls4ml.model.layers import Layer
    from hls4ml.model.types import IntegerPrecisionType, UnspecifiedPrecisionType

    class Correction(Layer):
        """Merges original/copy channels; the source map and bounds are weight arrays the kernel reads."""

        _expected_attributes = [
            Attribute("n_pixels"),
            Attribute("n_in_chan"),
            Attribute("n_chan0"),
            Attribute("n_copy"),
            Attribute("n_out_chan"),
            Attribute("n_sources"),
            ChoiceAttribute("policy", ["min", "range", "vote"], configurable=False),
            Attribute("clip", value_type=bool, default=False, configurable=False),
            WeightAttribute("src"),
            WeightAttribute("lo"),
            WeightAttribute("hi"),
        ]

        def initialize(self):
            inp = self.get_input_variable()
            shape = list(inp.shape)
            shape[-1] = self.attributes["n_out_chan"]
            self.add_output_variable(shape)
            n_sources = self.attributes["n_sources"]
            rows = [row + [row[-1]] * (n_sources - len(row)) for row in self.attributes["sources"]]
            src = np.array(rows, dtype=np.int64).reshape(-1)
            width = max(1, int(src.max()).bit_length())
            self.add_weights_variable(
                name="src", var_name="src{index}", data=src, precision=IntegerPrecisionType(width, signed=False)
            )
            zeros = [0.0] * self.attributes["n_out_chan"]
            for name in ("lo", "hi"):  # their type is set to the input's by the correction_result_type pass
                data = np.array(self.attributes[name] if self.attributes[name] is not None else zeros)
                self.add_weights_variable(
                    name=name, var_name=name + "{index}", type_name="bound{index}_t",
                    precision=UnspecifiedPrecisionType(), data=data,
                )  # fmt: skip

    return Correction


def _templates(layer_cls):
    # hls4ml: ~0.3 s to import
    from hls4ml.backends.template import FunctionCallTemplate, LayerConfigTemplate

    class CorrectionConfigTemplate(LayerConfigTemplate):
        def __init__(self):
            super().__init__(layer_cls)
            self.template = CONFIG_TEMPLATE

        def format(self, node):
            params = self._default_config_params(node)
            params["clip"] = "true" if node.get_attr("clip") else "false"
            return self.template.format(**params)

    class CorrectionFunctionTemplate(FunctionCallTemplate):
        def __init__(self):
            super().__init__(layer_cls, include_header=INCLUDES)
            self.template = FUNCTION_TEMPLATE

        def format(self, node):
            params = self._default_function_params(node)
            copies = [node.get_input_variable(name) for name in node.inputs[1:]]
            params["copies"] = "".join(f"{var.name}, " for var in copies)
            params["copy_types"] = "".join(f"{var.type.name}, " for var in copies)
            params["src"] = node.get_weights("src").name
            params["lo"] = node.get_weights("lo").name
            params["hi"] = node.get_weights("hi").name
            params["src_t"] = node.get_weights("src").type.name
            params["bound_t"] = node.get_weights("lo").type.name
            return self.template.format(**params)

    return CorrectionConfigTemplate, CorrectionFunctionTemplate


def _precision_pass(layer_cls):
    from hls4ml.model.optimizer import OptimizerPass  # hls4ml: ~0.3 s to import
    from hls4ml.model.types import UnspecifiedPrecisionType

    class CorrectionResultType(OptimizerPass):
        """Result and bound types = the input type, once the input type is known (min/median are exact)."""

        def match(self, node):
            if not isinstance(node, layer_cls):
                return False
            known = not isinstance(node.get_input_variable().type.precision, UnspecifiedPrecisionType)
            return known and isinstance(node.get_weights("lo").type.precision, UnspecifiedPrecisionType)

        def transform(self, model, node):
            precision = node.get_input_variable().type.precision
            node.get_output_variable().type.precision = precision
            for name in ("lo", "hi"):
                node.get_weights(name).type.precision = precision
                node.get_weights(name).update_precision(precision)
            return True

    return CorrectionResultType


def register_correction() -> None:
    """Register the Correction layer with hls4ml's Keras-v2 converter and the Vivado and Vitis backends."""
    import hls4ml  # hls4ml: ~0.3 s to import
    from hls4ml.converters.keras_v2_to_hls import get_layer_handlers
    from hls4ml.model.layers import layer_map

    if "Correction" in layer_map and "Correction" in get_layer_handlers():
        return
    layer_cls = _layer_class()
    hls4ml.model.layers.register_layer("Correction", layer_cls)
    if "Correction" not in get_layer_handlers():
        hls4ml.converters.register_keras_v2_layer_handler("Correction", parse_correction)
    precision_pass = _precision_pass(layer_cls)
    for backend_name in BACKENDS:
        backend = hls4ml.backends.get_backend(backend_name)
        for template in _templates(layer_cls):
            backend.register_template(template)
        backend.register_source(shipped_template(HEADER))
        register_before_precision_inference(backend, f"{backend_name.lower()}:{PASS_NAME}", precision_pass)


def register_before_precision_inference(backend, name: str, opt) -> None:
    """Register optimizer ``opt`` as ``name`` with ``backend`` so that it runs right before hls4ml's own precision
    inference (which would give its layers the default type), through hls4ml's public flow API: ``register_pass``
    with ``flow=`` appends it to the flows whose last pass is ``infer_precision_types`` (hls4ml 1.3: ``convert``),
    and ``update_flow`` moves that pass back to the end. Idempotent."""
    from hls4ml.model.flow import get_flow, update_flow
    from hls4ml.model.optimizer import get_available_passes

    flows = precision_flows(get_flow, backend.get_default_flow())
    if not flows:
        raise FlowError(
            f"hls4ml's {backend.name} flow has no flow ending in infer_precision_types; ftflow's precision passes "
            "need hls4ml 1.3 (pyproject.toml pins it)"
        )
    if name not in get_available_passes():
        backend.register_pass(name, opt, flow=flows)
    for flow in flows:
        if name not in get_flow(flow).optimizers:
            update_flow(flow, add_optimizers=[name])
        if get_flow(flow).optimizers[-1] != INFER:
            update_flow(flow, remove_optimizers=[INFER])
            update_flow(flow, add_optimizers=[INFER])


def precision_flows(get_flow, flow_name: str) -> list[str]:
    """Names of the flows (``flow_name`` and those it requires) whose last pass is infer_precision_types."""
    found, seen, pending = [], set(), [flow_name]
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        flow = get_flow(name)
        optimizers = flow.optimizers if isinstance(flow.optimizers, list) else []
        if optimizers and optimizers[-1] == INFER:
            found.append(name)
        pending.extend(flow.requires or [])
    return found
