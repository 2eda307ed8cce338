"""``ftflow check``: what each step will do with every layer of a user's model, without converting it."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from flow.config import RunConfig
from flow.emulate import WEIGHT_LAYER_TYPES
from flow.errors import FlowError
from flow.fixedpoint import format_of_quantizer
from flow.hardware.boards import resolve_board
from flow.hls import build_graph
from flow.hls_precision import fidelity_report
from flow.modelio import layer_problems, load_model
from flow.normalize import normalize_model


@dataclass(frozen=True)
class LayerCheck:
    layer: str
    kind: str
    normalized: str  # what normalization did to it ("" = unchanged)
    steps: str  # what rank/harden/inject do with it
    problem: str | None = None  # why the flow cannot take it
    precisions: dict[str, str] = field(default_factory=dict)  # hls4ml types ftflow or hls4ml will use
    warnings: tuple[str, ...] = ()  # e.g. an accumulator that can wrap on inputs outside the test set

    @property
    def supported(self) -> bool:
        return self.problem is None


def check_model_file(path: str | Path, cfg: RunConfig) -> list[LayerCheck]:
    """Per layer of the normalized model (and each layer normalization removed): its treatment and problems."""
    original = load_model(path)
    try:
        normalized = normalize_model(original)
    except FlowError as exc:
        return [LayerCheck("(model)", type(original).__name__, "", "", str(exc))]
    model = normalized.model
    done = {a.get("into", a["layer"]): a for a in normalized.actions} | {a["layer"]: a for a in normalized.actions}
    problems = layer_problems(model) | _quantizer_problems(model)
    precisions, warnings = ({}, {}) if problems else _precisions(model, cfg)
    rows = []
    present = {layer.name for layer in model.layers}
    for action in normalized.actions:
        if action["layer"] not in present:
            rows.append(LayerCheck(action["layer"], "-", f"{action['action']}: {action['why']}", ""))
    for layer in model.layers:
        kind = type(layer).__name__
        action = done.get(layer.name)
        note = f"{action['action']}: {action['why']}" if action else ""
        rows.append(
            LayerCheck(layer.name, kind, note, _steps(kind), problems.get(layer.name), precisions.get(layer.name, {}),
                       tuple(warnings.get(layer.name, ())))
        )  # fmt: skip
    return rows


def _steps(kind: str) -> str:
    if kind in WEIGHT_LAYER_TYPES:
        return "ranked, hardenable, weights and bias injected"
    if kind in ("BatchNormalization",):
        return "kept; fixed-point scale/bias in hls4ml (not a fault target)"
    return "passes values through" if kind != "InputLayer" else "input"


def _quantizer_problems(model) -> dict[str, str]:
    """Weight layers whose quantizers have no bit-level fault model."""
    problems = {}
    for layer in model.layers:
        if type(layer).__name__ not in WEIGHT_LAYER_TYPES:
            continue
        for name in ("kernel", "bias"):
            quantizer = getattr(layer, f"{name}_quantizer_internal", None)
            if getattr(layer, name, None) is None or quantizer is None:
                continue
            try:
                format_of_quantizer(quantizer, f"{name}")
            except FlowError as exc:
                problems[layer.name] = f"({type(layer).__name__}) {exc}"
    return problems


def _precisions(model, cfg: RunConfig) -> tuple[dict[str, dict[str, str]], dict[str, list[str]]]:
    """From an in-memory conversion: hls4ml layer name -> type -> 'precision (set by)', and layer -> warnings."""
    with tempfile.TemporaryDirectory() as tmp:
        graph, config = build_graph(model, cfg.hls, resolve_board(cfg.board), cfg.data.input_frac_bits, Path(tmp) / "g")
        report = fidelity_report(graph, config)
    warnings: dict[str, list[str]] = {}
    for risk in report["wrap_risks"]:
        warnings.setdefault(risk["layer"], []).append(
            f"{risk['type']} {risk['precision']} can wrap: worst case {risk['worst_case']}, safe with "
            f"{risk['safe_integer_bits']} integer bits"
        )
    types = {row["layer"]: {name: _describe(t) for name, t in row["types"].items()} for row in report["layers"]}
    return types, warnings


def _describe(entry: dict) -> str:
    inexact = "" if entry.get("exact", True) else f", inexact: {entry['reason']}"
    return f"{entry['precision']} ({entry['set_by']}{inexact})"


def format_checks(rows: list[LayerCheck]) -> list[str]:
    """Printable lines: one per layer, then its result types."""
    lines = []
    for row in rows:
        status = "ok" if row.supported else f"NOT SUPPORTED: {row.problem}"
        lines.append(f"{row.layer:<24} {row.kind:<20} {status}")
        if row.normalized:
            lines.append(f"{'':<24}   normalized: {row.normalized}")
        if row.supported and row.steps:
            lines.append(f"{'':<24}   steps: {row.steps}")
        for name, value in row.precisions.items():
            lines.append(f"{'':<24}   {name}: {value}")
        for warning in row.warnings:
            lines.append(f"{'':<24}   WARNING: {warning}")
    return lines
