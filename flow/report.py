"""``ftflow report OUT``: one self-contained HTML page (images embedded as base64 PNG) from what a run directory
holds: ranking, comparison table, resource estimate, verification and fault campaign summaries."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import yaml

from flow import report_plots
from flow.compare_table import (
    BASIS_LABELS,
    ComparisonRow,
    FaultModelRow,
    basis_of,
    cells,
    critical_text,
    fault_model_matrix,
    mean_cost,
    read_table,
)
from flow.errors import FlowError
from flow.hardware.estimate import RESOURCE_KEYS
from flow.outdir import usable_out_dir
from flow.rank_report import ranking_from_dict
from flow.records import load_inject_summary, load_resources
from flow.rundir import write_text_atomic

STYLE = """body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;font-size:12px;margin:1em 0}td,th{border:1px solid #bbb;padding:2px 6px;text-align:right}
th{background:#eee}img{max-width:100%;border:1px solid #ddd}.missing{color:#888;font-style:italic}
.warning{color:#a40;font-weight:bold}"""
SUMMARY_COLUMNS = (
    "variant", "verified", "fault_free_accuracy", "critical_rate", "critical_ci95", "critical_reduction_pct",
    "fault_sites", "per_bit_relative_rate", "per_bit_relative_ci95", "per_bit_reduction_pct", "fit", "fit_ci95", "LUT",
    "FF", "DSP", "BRAM_18K", "latency_cycles", "LUT_overhead_pct", "DSP_overhead_pct", "macs_overhead_pct",
    "fits_board",
)  # fmt: skip
ESTIMATOR_COLUMNS = (
    "variant", "estimate_method", "LUT", "LUT_analytic", "LUT_yosys_calibrated", "LUT_yosys_over_analytic",
    "estimate_in_domain", "deploy_suggestion",
)  # fmt: skip


def _image(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _table(rows: list[dict], columns: list[str] | tuple[str, ...], caption: str) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(row.get(c, '')))}</td>" for c in columns) + "</tr>" for row in rows
    )
    return f"<table><caption>{html.escape(caption)}</caption><tr>{head}</tr>{body}</table>"


def _missing(what: str, how: str) -> str:
    return f'<p class="missing">No {html.escape(what)} in this run directory ({html.escape(how)}).</p>'


def _figure(png: bytes | None, alt: str, what: str, how: str) -> str:
    return _image(png, alt) if png else _missing(what, how)


def _json(path: Path) -> dict | None:
    """The JSON object in ``path``, None when it is missing; a FlowError naming the file when it is corrupt."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:  # ValueError: JSONDecodeError and UnicodeDecodeError
        raise FlowError(f"report: {path}: not readable JSON ({' '.join(str(exc).split())[:200]}); "
                        "rerun the step that writes it, or remove the file") from None  # fmt: skip
    if not isinstance(data, dict):
        raise FlowError(f"report: {path}: expected a JSON object, got {type(data).__name__}; rerun its step")
    return data


def _ranking(out: Path):
    data = _json(out / "rank" / "ranking.json")
    return ranking_from_dict(data) if data else None


def _compare_rows(out: Path) -> list[ComparisonRow]:
    path = out / "compare" / "table.csv"
    return read_table(path) if path.is_file() else []


def _basis_text(rows: list[ComparisonRow]) -> str:
    basis = basis_of(rows)
    return f"basis {basis.value}: {BASIS_LABELS[basis]}"


def _sections(out: Path) -> list[str]:
    rows = _compare_rows(out)
    compare_hint = "run `ftflow compare CFG --out OUT`"
    parts = ["<h2>Per-layer vulnerability</h2>"]
    parts.append(_figure(report_plots.vulnerability(_ranking(out)), "vulnerability", "ranking", "run the rank step"))
    basis = f" ({_basis_text(rows)})" if rows else ""
    parts.append(f"<h2>Critical failure rate vs hardening cost{html.escape(basis)}</h2>")
    parts.append(_figure(report_plots.critical_vs_cost(rows), "critical vs cost", "selective variants", compare_hint))
    parts.append("<h2>Resource overhead per variant</h2>")
    parts.append(_figure(report_plots.overhead_bars(rows), "overhead", "comparison", compare_hint))
    parts.append(f"<h2>Resilience vs overhead (Pareto front){html.escape(basis)}</h2>")
    front, png = report_plots.pareto_front(rows)
    parts.append(_figure(png, "pareto", "comparison", compare_hint))
    if front:
        parts.append(
            f"<p>On the front (no variant is both cheaper and more resilient): {html.escape(', '.join(front))}</p>"
        )
    parts.append("<h2>Accuracy vs pruning ratio</h2>")
    parts.append(_figure(report_plots.accuracy_vs_pruning(rows), "pruning", "pruned variants", compare_hint))
    parts.append("<h2>Comparison</h2>")
    if rows:
        caption = ("compare/table.csv (all columns there); per fault: critical_rate, critical_reduction_pct; per bit "
                   "(equal per-bit upset rate): per_bit_relative_rate = sites x rate / the baseline's, fit (compare."
                   "fit_per_mbit)")  # fmt: skip
        texts = [cells(row) for row in rows]
        parts.append(_table(texts, SUMMARY_COLUMNS, caption))
        parts.append("<h2>Estimator vs synthesis</h2>")
        caption = ("LUT of the estimate method; the analytic estimate, raw and calibrated to yosys, yosys/analytic; "
                   "estimate_in_domain False: outside the calibration domain (extrapolated)")  # fmt: skip
        parts.append(_table(texts, ESTIMATOR_COLUMNS, caption))
    else:
        parts.append(_missing("comparison table", compare_hint))
    parts += _fault_models(out)
    parts += _run_tables(out)
    return parts


def _fault_models(out: Path) -> list[str]:
    """Critical rate per variant and fault model (compare/faultmodels.csv), when compare.fault_models made it."""
    path = out / "compare" / "faultmodels.csv"
    if not path.is_file():
        return []
    rows = read_table(path, FaultModelRow)
    names, matrix = fault_model_matrix(rows)
    hint = "no variant has sites of these fault models"
    texts = [{"variant": v, **{n: critical_text(by_name.get(n)) for n in names}} for v, by_name in matrix.items()]
    models = {row.fault_model: row for row in rows}
    described = [{"fault_model": n, "space": models[n].space, "model": models[n].model,
                  "activation": models[n].activation or "", "mbu": models[n].mbu, "targets": models[n].targets,
                  "ms per fault": mean_cost(rows, n)} for n in names]  # fmt: skip
    caption = ("critical-SDC rate per fault [95 % Wilson interval] of each variant under each fault model (compare/"
               "faultmodels.csv: per-bit rates vs the baseline too); n/a: no site of it in the variant")  # fmt: skip
    return [
        "<h2>Critical rate per fault model</h2>",
        _figure(report_plots.fault_model_bars(rows), "critical rate per fault model", "fault-model rates", hint),
        _table(texts, ["variant", *names], caption),
        _table(described, list(described[0]), "the fault models (compare.fault_models; the rest is inject.*)"),
    ]


def _run_tables(out: Path) -> list[str]:
    parts = ["<h2>This run</h2>"]
    path = out / "estimate" / "resources.json"
    if path.is_file():
        resources = load_resources(path)
        caption = f"estimate ({resources.method.value}), board {resources.board} ({resources.part})"
        in_domain = "" if resources.in_domain is None else resources.in_domain
        total = {"name": "total", **resources.total, "latency_cycles": resources.latency.cycles, "in_domain": in_domain}
        columns = ("name", "kind", *RESOURCE_KEYS, "latency_cycles", "in_domain")
        parts.append(_table([*(resources.layers or ()), total], columns, caption))
        util = {"name": "% of board", **resources.utilisation_pct, "fits": resources.fits}
        parts.append(_table([util], ("name", *RESOURCE_KEYS, "fits"), "board utilisation"))
        parts += [f'<p class="warning">{html.escape(line)}</p>' for line in resources.warnings]
    else:
        parts.append(_missing("resource estimate", "run the estimate step"))
    verify = _json(out / "verify" / "report.json")
    if verify:
        keys = ("bit_exact", "n_samples", "argmax_agreement", "max_abs_diff")
        parts.append(_table([verify], [k for k in keys if k in verify], "C-sim vs QKeras (verify/report.json)"))
    path = out / "inject" / "summary.json"
    if path.is_file():
        total = load_inject_summary(path).total
        row = {"faults": total.n_faults, **{k: round(getattr(total, k).rate, 5) for k in ("critical", "sdc", "masked")}}
        parts.append(_table([row], list(row), "fault campaign (inject/summary.json)"))
    return parts


def _configured_title(out: Path) -> str | None:
    """``report.title`` of the configuration the run wrote (``<out>/config.yaml``), if any."""
    path = out / "config.yaml"
    if not path.is_file():
        return None
    try:
        data = yaml.safe_load(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError, yaml.YAMLError) as exc:  # ValueError: UnicodeDecodeError, huge integers
        raise FlowError(f"report: {path}: not a readable run configuration ({' '.join(str(exc).split())[:200]}); "
                        "give the title with --title, or rerun the run to rewrite it") from None  # fmt: skip
    section = data.get("report") if isinstance(data, dict) else data  # None: an empty file or no report section
    title = section.get("title") if isinstance(section, dict) else None
    if (section is not None and not isinstance(section, dict)) or (title is not None and not isinstance(title, str)):
        raise FlowError(f"report: {path}: report.title is not a string in a mapping (as ftflow writes it); "
                        "give the title with --title, or rerun the run to rewrite it")  # fmt: skip
    return title


def write_report(out: Path, title: str | None = None) -> Path:
    """Write ``<out>/report/index.html`` from the run directory ``out``; returns its path."""
    out = Path(out)
    if not out.is_dir():
        raise FlowError(f"report: run directory not found: {out}")
    directory = usable_out_dir(out / "report", "report directory")  # before the work of the plots
    title = title or _configured_title(out) or f"ftflow report: {out.resolve().name}"
    page = (
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
        + "\n".join(_sections(out))
        + "</body></html>"
    )
    path = directory / "index.html"
    write_text_atomic(path, page)
    return path
