"""The fault-injection bridge: a table of every weight array of an hls4ml project and C++ appended to the
project's Python bridge from ``hls_templates/fi_bridge.cpp.in`` (extern arrays, fi_inject, fi_restore, fi_batch).
It is added at convert time, so every compiled project can take faults without being rebuilt."""

from __future__ import annotations

import json
from pathlib import Path
from string import Template

TEMPLATE = Path(__file__).resolve().parent.parent / "hls_templates" / "fi_bridge.cpp.in"
TABLE = "fi_arrays.json"
KINDS = {"weight": "weight", "bias": "bias"}  # hls4ml weight keys; anything else is correction data


def array_table(graph) -> list[dict]:
    """One row per weight array: name, layer, kind (weight/bias/correction), length, width, signed, C++ type."""
    rows = []
    for node in graph.get_layers():
        for key, var in node.weights.items():
            precision = var.type.precision
            rows.append(
                {
                    "name": var.name,
                    "layer": node.name,
                    "kind": KINDS.get(key, "correction"),
                    "length": int(var.data_length),
                    "width": int(precision.width),
                    "signed": bool(precision.signed),
                    "type": var.type.name,
                }
            )
    return rows


def append_bridge(project_dir: Path, project_name: str, table: list[dict], n_in: int, n_out: int) -> None:
    """Write the array table next to the project and append the FI bridge to ``<project>_bridge.cpp``."""
    (project_dir / TABLE).write_text(json.dumps(table, indent=2))
    cases = list(enumerate(table))
    code = Template(TEMPLATE.read_text()).substitute(
        externs="\n".join(f"extern {row['type']} {row['name']}[{row['length']}];" for row in table),
        n_arrays=len(table),
        length_cases="\n".join(f"    case {i}: return {row['length']};" for i, row in cases),
        width_cases="\n".join(f"    case {i}: return {row['width']};" for i, row in cases),
        inject_cases="\n".join(
            f"    case {i}: return ftflow_fi::set_bit({row['name']}, {row['length']}, {i}, index, bit, kind);"
            for i, row in cases
        ),
        restore_cases="\n".join(
            f"        case {i}: {row['name']}[e.index][e.bit] = e.value; break;" for i, row in cases
        ),
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
