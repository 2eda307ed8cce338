"""The fault-injection bridge: a table of every weight array of an hls4ml project and C++ appended to the
project's Python bridge from ``hls_templates/fi_bridge.cpp.in`` (extern arrays, fi_inject, fi_restore, fi_batch).
It is added at convert time, so every compiled project can take faults without being rebuilt.

Arrays are ap_fixed/ap_int words (a bit is addressed through the ap_fixed bit API), or hls4ml's exponent structs
of power-of-two weights ``{ap_uint<1> sign; ap_int<E> weight;}``: bits 0..E-1 address the exponent, bit E the sign
field (see flow/fixedpoint.py Po2Format); their table rows carry ``"word": "exponent"`` and the exponents for
which hls4ml's shift product is exact for the layer's input type (``exact_exponents``)."""

from __future__ import annotations

import json
from pathlib import Path
from string import Template

TEMPLATE = Path(__file__).resolve().parent.parent / "hls_templates" / "fi_bridge.cpp.in"
TABLE = "fi_arrays.json"
EXPONENT_MARKER = "// ==== exponent words"
KINDS = {"weight": "weight", "bias": "bias"}  # hls4ml weight keys of weight layers; any other key is "batchnorm"
CORRECTION_CLASS = "Correction"  # ftflow's correction layer (flow/hls_ext.py): every array is correction data


def array_kind(node, key: str) -> str:
    """weight / bias / correction / batchnorm for the array ``key`` of an hls4ml node."""
    from hls4ml.model.layers import BatchNormalization

    if node.class_name == CORRECTION_CLASS:
        return "correction"
    if isinstance(node, BatchNormalization) or node.class_name in ("BatchNormalization", "ApplyAlpha"):
        return "batchnorm"
    return KINDS.get(key, "batchnorm")


def array_table(graph) -> list[dict]:
    """One row per weight array: name, layer, kind (weight/bias/correction/batchnorm), length, width (addressable
    bits), signed, C++ type; exponent arrays also ``word`` and ``exact_exponents``."""
    from hls4ml.model.types import ExponentType

    from flow.fixedpoint import po2_exact_exponents

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


def append_bridge(project_dir: Path, project_name: str, table: list[dict], n_in: int, n_out: int) -> None:
    """Write the array table next to the project and append the FI bridge to ``<project>_bridge.cpp``."""
    (project_dir / TABLE).write_text(json.dumps(table, indent=2))
    cases = list(enumerate(table))
    text = TEMPLATE.read_text()
    main, exponent_code = text[: text.index(EXPONENT_MARKER)], text[text.index(EXPONENT_MARKER) :]

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


def read_table(project_dir: Path) -> list[dict]:
    """The array table written by ``append_bridge``."""
    return json.loads((project_dir / TABLE).read_text())
