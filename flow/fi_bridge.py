"""The fault-injection bridge: a table of every weight array of an hls4ml project and C++ appended to the
project's Python bridge from ``hls_templates/fi_bridge.cpp.in`` (extern arrays, fi_inject, fi_restore, fi_batch).
It is added at convert time, so every compiled project can take faults without being rebuilt.

Arrays are ap_fixed/ap_int words (a bit is addressed through the ap_fixed bit API), or hls4ml's exponent structs
of power-of-two weights ``{ap_uint<1> sign; ap_int<E> weight;}``: bits 0..E-1 address the exponent, bit E the sign
field (see flow/fixedpoint.py Po2Format); their table rows carry ``"word": "exponent"`` and the exponents for
which hls4ml's shift product is exact for the layer's input type (``exact_exponents``).

Fast evaluation: ``<project>_fi_fast.cpp`` (the template's last section), compiled in the project's main unit
(flow/build_cache.py), runs the layer calls of the generated top function ``firmware/<project>.cpp`` one by one on
a cached batch (flow/csim.py FastEvaluator). A top function this module does not understand gets a stub whose
``fi_fast_unsupported()`` says why; such projects are evaluated in full."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from string import Template

import numpy as np

from flow.fixedpoint import po2_exact_exponents
from flow.harden import copy_of, correction_name
from flow.package_data import template
from flow.rundir import write_json

TEMPLATE = "fi_bridge.cpp.in"  # in hls_templates/ (flow/package_data.py)
TABLE = "fi_arrays.json"
TENSORS = "fi_tensors.json"  # the fast evaluation's tensors: the sites of activation faults (tensor_table)
EXPONENT_MARKER = "// ==== exponent words"
FAST_MARKER = "// ==== fast evaluation"
LAYERS_MARKER = "// hls-fpga-machine-learning insert layers"  # in hls4ml's top function, before the layers
KINDS = {"weight": "weight", "bias": "bias"}  # hls4ml weight keys of weight layers; any other key is "batchnorm"
CORRECTION_CLASS = "Correction"  # ftflow's correction layer (flow/hls_ext.py): every array is correction data


def array_kind(node, key: str) -> str:
    """weight / bias / correction / batchnorm for the array ``key`` of an hls4ml node."""
    from hls4ml.model.layers import BatchNormalization  # hls4ml: ~0.3 s to import

    if node.class_name == CORRECTION_CLASS:
        return "correction"
    if isinstance(node, BatchNormalization) or node.class_name in ("BatchNormalization", "ApplyAlpha"):
        return "batchnorm"
    return KINDS.get(key, "batchnorm")


def channel_fields(graph, node, key: str) -> dict:
    """What a row of a Dense/Conv node's weight or bias says about channels: ``channels`` (outputs), and
    ``channel_axis`` (where the channel is in the flat array: ``last``, or ``first`` once hls4ml's Resource strategy
    transposed the kernel); on a hardened layer ``protected`` (the channels with copies), on a copy layer
    ``copy_of`` (the hardened layer). Empty for other arrays."""
    channels = node.get_attr("n_filt", None) or node.get_attr("n_out", None)
    if array_kind(node, key) not in KINDS or not channels:
        return {}
    first = key == "weight" and node.get_attr("_weights_transposed", False) is True
    fields = {"channels": int(channels), "channel_axis": "first" if first else "last"}
    correction = graph.graph.get(correction_name(node.name))
    if correction is not None and correction.class_name == CORRECTION_CLASS:
        fields["protected"] = [c for c, row in enumerate(correction.get_attr("sources")) if len(row) > 1]
    original = copy_of(node.name)
    if original and correction_name(original) in graph.graph:
        fields["copy_of"] = original
    return fields


def array_table(graph) -> list[dict]:
    """One row per weight array: name, layer, kind (weight/bias/correction/batchnorm), length, width (addressable
    bits), signed, C++ type; exponent arrays also ``word`` and ``exact_exponents``; Dense/Conv weights and biases
    their ``channel_fields``."""
    from hls4ml.model.types import ExponentType  # hls4ml: ~0.3 s to import

    rows = []
    for node in graph.get_layers():
        for key, var in node.weights.items():
            precision = var.type.precision
            row = {
                "name": var.name,
                "layer": node.name,
                "kind": array_kind(node, key),
                "length": int(var.data_length),
                "width": int(precision.width),
                "signed": bool(precision.signed),
                "type": var.type.name,
                **channel_fields(graph, node, key),
            }
            if isinstance(var.type, ExponentType):
                row["width"] = int(precision.width) + 1  # the exponent's bits and the sign field
                row["word"] = "exponent"
                source = node.get_input_variable().type.precision
                if hasattr(source, "integer") and source.width is not None:
                    row["exact_exponents"] = list(
                        po2_exact_exponents(int(precision.width), int(source.width), int(source.integer))
                    )
            rows.append(row)
    return rows


def _is_exponent(row: dict) -> bool:
    return row.get("word") == "exponent"


def append_bridge(project_dir: Path, project_name: str, table: list[dict], n_in: int, n_out: int, graph=None) -> None:
    """Write the array table next to the project, append the FI bridge to ``<project>_bridge.cpp`` and write the
    fast evaluation ``<project>_fi_fast.cpp`` (after hls4ml wrote the project: it reads the top function); with the
    hls4ml ``graph``, also the tensor table of the activation faults (``tensor_table``)."""
    write_json(project_dir / TABLE, table)
    cases = list(enumerate(table))
    text = template(TEMPLATE).read_text()
    exponent_at, fast_at = text.index(EXPONENT_MARKER), text.index(FAST_MARKER)
    main, exponent_code, fast = text[:exponent_at], text[exponent_at:fast_at], text[fast_at:]

    def inject(i: int, row: dict) -> str:
        setter = "set_exponent_bit" if _is_exponent(row) else "set_bit"
        return f"    case {i}: return ftflow_fi::{setter}({row['name']}, {row['length']}, {i}, index, bit, kind);"

    def restore(i: int, row: dict) -> str:
        if _is_exponent(row):
            return f"        case {i}: ftflow_fi::put_exponent_bit({row['name']}[e.index], e.bit, e.value); break;"
        return f"        case {i}: {row['name']}[e.index][e.bit] = e.value; break;"

    code = Template(main).substitute(
        externs="\n".join(f"extern {row['type']} {row['name']}[{row['length']}];" for row in table),
        exponent_code="\n" + exponent_code if any(_is_exponent(row) for row in table) else "",
        n_arrays=len(table),
        length_cases="\n".join(f"    case {i}: return {row['length']};" for i, row in cases),
        width_cases="\n".join(f"    case {i}: return {row['width']};" for i, row in cases),
        inject_cases="\n".join(inject(i, row) for i, row in cases),
        restore_cases="\n".join(restore(i, row) for i, row in cases),
        project=project_name,
        n_in=n_in,
        n_out=n_out,
    )
    bridge = project_dir / f"{project_name}_bridge.cpp"
    text = bridge.read_text()
    end = text.rindex("#endif")  # the bridge is a header-style file: stay inside its include guard
    bridge.write_text(text[:end] + code + "\n" + text[end:])
    (project_dir / fast_source(project_name)).write_text(fast_code(project_dir, project_name, table, fast, n_in, n_out))
    if graph is not None:
        write_json(project_dir / TENSORS, tensor_table(graph, _parsed_top(project_dir, project_name, table)))


def read_table(project_dir: Path) -> list[dict]:
    """The array table written by ``append_bridge``."""
    return json.loads((project_dir / TABLE).read_text())


# ---- fast evaluation: the top function's layer calls, one by one ----


def fast_source(project_name: str) -> str:
    """The fast-evaluation source of a project, next to its bridge."""
    return f"{project_name}_fi_fast.cpp"


class Unsupported(Exception):
    """A top function the fast evaluation does not understand (the project is evaluated in full)."""


@dataclass
class Tensor:
    ctype: str  # the element type (io_parallel) or the stream word type (io_stream)
    size: str | None  # io_parallel: values per sample (a C++ expression); io_stream: None (known at capture)


@dataclass
class Call:
    function: str  # nnet::<name><template arguments>
    args: list[str]
    label: str  # the layer name of hls4ml's comment
    inputs: list[int] = field(default_factory=list)  # tensor ids it reads
    outputs: list[int] = field(default_factory=list)  # tensor ids it writes
    arrays: list[int] = field(default_factory=list)  # bridge array indices it names


@dataclass
class Network:
    stream: bool
    tensors: list[Tensor]  # 0: the top input, 1: the top output
    calls: list[Call]
    names: dict[str, int]  # C++ name (aliases included) -> tensor id


_PARAM = {False: re.compile(r"^(\w+) (\w+) ?\[([^\]]+)\]$"), True: re.compile(r"^hls::stream<\s*(\w+)\s*> ?& ?(\w+)$")}
_DECL = {
    False: re.compile(r"^(\w+) (\w+) ?\[([^\]]+)\];$"),
    True: re.compile(r'^hls::stream<\s*(\w+)\s*> (\w+) ?(?:\("\w*"\))?;$'),
}
_ALIAS = re.compile(r"^auto ?& ?(\w+) ?= ?(\w+);$")
_CALL = re.compile(r"^(nnet::\w+ ?(?:<.*>)?) ?\(([^()]*)\);(?: ?// ?(\w+).*)?$")
_SKIPPED = re.compile(r"^(#pragma\b|//|#ifndef __SYNTHESIS__$|#endif\b|if ?\( ?nnet::trace_enabled ?\))")


def parse_top(text: str, project_name: str, table: list[dict]) -> Network:
    """The tensors and layer calls of hls4ml's top function (one input, one output); ``Unsupported`` if its form
    is not known."""
    signature = re.search(rf"\bvoid\s+{project_name}\s*\(([^)]*)\)\s*\{{", text)
    if signature is None or LAYERS_MARKER not in text:
        raise Unsupported(f"no top function {project_name}() with hls4ml's layer section")
    params = [" ".join(p.split()) for p in signature.group(1).split(",")]
    if len(params) != 2:
        raise Unsupported(f"the top function has {len(params)} parameters (one input and one output are handled)")
    stream = params[0].startswith("hls::stream")
    net = Network(stream, [], [], {})
    for param in params:
        match = _PARAM[stream].match(param)
        if match is None:
            raise Unsupported(f"top function parameter '{param}'")
        _add_tensor(net, match)
    body = text[text.index(LAYERS_MARKER) + len(LAYERS_MARKER) : text.rindex("}")]
    for line in _statements(body):
        _statement(net, line)
    _link(net, {row["name"]: i for i, row in enumerate(table)})
    return net


def _statements(body: str) -> list[str]:
    """The statements of the layer section, whitespace normalized, without pragmas, comments and trace code."""
    lines = [" ".join(line.split()) for line in body.splitlines()]
    return [line for line in lines if line and not _SKIPPED.match(line)]


def _add_tensor(net: Network, match: re.Match) -> None:
    """A parameter or local (type, name[, size]) of the top function as the next tensor."""
    net.names[match.group(2)] = len(net.tensors)
    net.tensors.append(Tensor(match.group(1), None if net.stream else match.group(3).strip()))


def _statement(net: Network, line: str) -> None:
    """Record a declaration, an alias (``auto& a = b;``) or a layer call of the top function."""
    declaration, alias, call = _DECL[net.stream].match(line), _ALIAS.match(line), _CALL.match(line)
    if declaration:
        _add_tensor(net, declaration)
    elif alias and alias.group(2) in net.names:
        net.names[alias.group(1)] = net.names[alias.group(2)]
    elif call:
        args = [a.strip() for a in call.group(2).split(",")] if call.group(2).strip() else []
        net.calls.append(Call(call.group(1), args, call.group(3) or ""))
    else:
        raise Unsupported(f"statement '{line}' in the top function")


def _link(net: Network, arrays: dict[str, int]) -> None:
    """Sort every call's arguments into the tensors it reads (written before: by an earlier call, or the top
    input) and writes, and the weight arrays it names."""
    written = {0}
    for call in net.calls:
        for arg in call.args:
            if arg in arrays:
                call.arrays.append(arrays[arg])
            elif arg not in net.names:
                raise Unsupported(f"argument '{arg}' of {call.function} is neither a tensor nor a weight array")
            elif net.names[arg] in written:
                call.inputs.append(net.names[arg])
            elif net.names[arg] in call.outputs:
                raise Unsupported(f"{call.function} writes {arg} twice")
            else:
                call.outputs.append(net.names[arg])
        if net.stream and len(set(call.inputs)) < len(call.inputs):
            raise Unsupported(f"{call.function} reads the stream of one tensor twice")
        written.update(call.outputs)
    if len(written) != len(net.tensors):
        raise Unsupported("a tensor of the top function is written by no layer call")


def _parsed_top(project_dir: Path, project_name: str, table: list[dict]) -> Network | str:
    """The parsed top function, or why it is not understood."""
    top = project_dir / "firmware" / f"{project_name}.cpp"
    try:
        return parse_top(top.read_text() if top.is_file() else "", project_name, table)
    except Unsupported as why:
        return str(why)


def tensor_table(graph, net: Network | str) -> dict:
    """The tensors activation faults can hit: every tensor of the fast evaluation a layer call writes, as
    ``{"tensors": [row, ...]}`` (or ``{"unsupported": why}`` when the top function is not understood). A row: ``id``
    (the fast evaluation's tensor index), ``name`` (C++), ``layer`` (the hls4ml node writing it), ``class``,
    ``length`` (elements per sample, channels last: element e is in channel e % ``channels``), ``width``,
    ``integer``, ``signed``, ``type``, ``point`` (``before``: a weight layer's output an activation reads, directly
    or through its correction, and that layer's copies and correction; ``after``: that activation's output, ``of``
    the weight layer; ``both``: any other)
    and, as for the weight arrays, ``protected`` (a hardened layer's channels with copies) or ``copy_of``."""
    from hls4ml.model.layers import Activation  # hls4ml: ~0.3 s to import

    if isinstance(net, str):
        return {"unsupported": net}
    nodes = list(graph.get_layers())
    by_output = {name: node for node in nodes for name in node.outputs}
    weighted = {n.name for n in nodes if "weight" in n.weights and n.class_name != CORRECTION_CLASS}

    def weight_layer_of(node) -> str | None:
        """The weight layer an activation node reads (directly, or through that layer's correction)."""
        if not isinstance(node, Activation) or len(node.inputs) != 1 or node.inputs[0] not in by_output:
            return None
        source = by_output[node.inputs[0]]
        if source.class_name == CORRECTION_CLASS:
            original = source.name.removesuffix(correction_name(""))
            return original if original in weighted else None
        return source.name if source.name in weighted else None

    activated = {weight_layer_of(n): n.name for n in nodes} if nodes else {}

    def _unit_of(node) -> str:
        """The weight layer a copy or correction node stands in for (its own name for any other node)."""
        if node.class_name == CORRECTION_CLASS:
            return node.name.removesuffix(correction_name(""))
        return copy_of(node.name) or node.name

    rows, seen = [], set()
    for node in nodes:
        for var in node.variables.values():
            t = net.names.get(var.name)
            if t is None or t == 0 or t in seen:  # the top input is no layer's output; aliases: the first writer
                continue
            seen.add(t)
            precision = var.type.precision
            width, signed = getattr(precision, "width", None), getattr(precision, "signed", None)
            if width is None or signed is None:
                continue  # no fixed-point word (not targeted)
            row = {
                "id": t, "name": var.name, "layer": node.name, "class": node.class_name,
                "length": int(np.prod(var.shape)), "channels": int(var.shape[-1]), "width": int(width),
                "integer": int(getattr(precision, "integer", width)), "signed": bool(signed), "type": var.type.name,
                "point": "before" if _unit_of(node) in activated else "both",
            }  # fmt: skip
            if weight_layer_of(node):
                row.update(point="after", of=weight_layer_of(node))
            fields = channel_fields(graph, node, "weight")
            row.update({k: v for k, v in fields.items() if k in ("protected", "copy_of")})
            rows.append(row)
    return {"tensors": rows}


def read_tensors(project_dir: Path) -> dict | None:
    """The tensor table written by ``append_bridge`` (None: converted before it existed)."""
    path = project_dir / TENSORS
    return json.loads(path.read_text()) if path.is_file() else None


def fast_code(project_dir: Path, project_name: str, table: list[dict], template: str, n_in: int, n_out: int) -> str:
    """``<project>_fi_fast.cpp``: the fast evaluation of the project's top function, or a stub saying why not."""
    top = project_dir / "firmware" / f"{project_name}.cpp"
    try:
        net = parse_top(top.read_text() if top.is_file() else "", project_name, table)
    except Unsupported as why:
        reason = "".join(c if c.isprintable() and c not in '"\\' else " " for c in str(why))
        return (
            "// ---- ftflow fast fault evaluation (flow/fi_bridge.py): not available for this project ----\n"
            f'extern "C" const char *fi_fast_unsupported() {{ return "{reason}"; }}\n'
        )
    return Template(template[template.index("\n") + 1 :]).substitute(
        project=project_name, n_in=n_in, n_out=n_out, **_fast_fields(net, n_in, n_out)
    )


def _offsets(lists: list[list[int]]) -> tuple[str, str]:
    """(offsets, items) of C arrays holding ``lists`` back to back (items end with -1: never empty)."""
    at = [0]
    for items in lists:
        at.append(at[-1] + len(items))
    return ", ".join(map(str, at)), ", ".join(map(str, [*(i for items in lists for i in items), -1]))


def _fast_fields(net: Network, n_in: int, n_out: int) -> dict[str, str]:
    """The template's per-project fields."""
    n = len(net.calls)
    last_read = [
        max([j for j, c in enumerate(net.calls) if t in c.inputs], default=-1) for t in range(len(net.tensors))
    ]
    last_read[1] = n  # the network's output is always read
    writer = [next((j for j, c in enumerate(net.calls) if t in c.outputs), -1) for t in range(len(net.tensors))]
    fields = {}
    for key in ("input", "output", "array"):
        fields[f"{key}_at"], fields[f"{key}s"] = _offsets([getattr(c, f"{key}s") for c in net.calls])
    return {
        **fields,
        "tensors": "\n".join(f"static tensor<{t.ctype}> t{i};" for i, t in enumerate(net.tensors)),
        "tensor_list": ", ".join(f"&t{i}" for i in range(len(net.tensors))),
        "n_tensors": str(len(net.tensors)),
        "n_calls": str(n),
        "last_read": ", ".join(map(str, last_read)),
        "writer": ", ".join(map(str, writer)),
        "cases": "\n".join(_case(net, j, call) for j, call in enumerate(net.calls)),
        "capture_input": _capture_input(net, n_in),
        "write_output": _write_output(net, n_out),
        "reset": "\n".join(f"    t{i}.reset(n, {t.size});" for i, t in enumerate(net.tensors) if t.size is not None),
    }


def _case(net: Network, j: int, call: Call) -> str:
    """The switch case of ``run_call`` that runs layer call ``j`` on the given samples."""
    lines = _stream_call(net, call) if net.stream else [f"{call.function}({', '.join(_array_args(net, call))});"]
    body = "\n".join(f"            {line}" for line in ["int s = samples[k];", *lines])
    loop = f"        for (int k = 0; k < count; k++) {{\n{body}\n        }}"
    return f"    case {j}: // {call.label}\n{loop}\n        return true;"


def _array_args(net: Network, call: Call) -> list[str]:
    """io_parallel: the call's arguments, each tensor as sample s's slice of its gold or work values."""
    args = []
    for arg in call.args:
        t = net.names.get(arg)
        if t is None:
            args.append(arg)
        else:
            slot = f"t{t}.in(s)" if t in call.inputs else f"t{t}.out(s, capture)"
            args.append(f"arr<{net.tensors[t].size}>({slot})")
    return args


def _stream_call(net: Network, call: Call) -> list[str]:
    """io_stream: local streams filled from the input tensors, the call, the output streams emptied."""
    lines, args, pulls = [], [], []
    for arg in call.args:
        t = net.names.get(arg)
        if t is None:
            args.append(arg)
            continue
        local = f"a{len(args)}"
        args.append(local)
        lines.append(f"hls::stream<{net.tensors[t].ctype}> {local};")
        if t in call.inputs:
            lines.append(f"t{t}.push(s, {local});")
        else:
            pulls.append(f"if (!t{t}.pull(s, {local}, capture, n))\n                return false;")
    return [*lines, f"{call.function}({', '.join(args)});", *pulls]


def _capture_input(net: Network, n_in: int) -> str:
    """The batch's float inputs converted to the input tensor's gold values, as the bridge converts them."""
    ctype, x = net.tensors[0].ctype, "const_cast<float *>(x) + (size_t)s * " + str(n_in)
    if not net.stream:
        convert = f"nnet::convert_data<float, {ctype}, {n_in}>({x}, t0.out(s, true));"
        return f"    for (int s = 0; s < n; s++)\n        {convert}"
    return (
        f"    for (int s = 0; s < n; s++) {{\n        hls::stream<{ctype}> in;\n"
        f"        nnet::convert_data<float, {ctype}, {n_in}>({x}, in);\n"
        "        if (!t0.pull(s, in, true, n))\n            return false;\n    }"
    )


def _write_output(net: Network, n_out: int) -> str:
    """The output tensor (work where it differs from gold) converted to floats, as the bridge converts it."""
    ctype, y = net.tensors[1].ctype, f"y + (size_t)s * {n_out}"
    if not net.stream:
        return f"    for (int s = 0; s < n; s++)\n        nnet::convert_data<{ctype}, float, {n_out}>(t1.in(s), {y});"
    return (
        f"    for (int s = 0; s < n; s++) {{\n        hls::stream<{ctype}> out;\n        t1.push(s, out);\n"
        f"        nnet::convert_data<{ctype}, float, {n_out}>(out, {y});\n    }}"
    )
