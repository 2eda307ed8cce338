"""``ftflow report OUT``: one self-contained HTML page (images embedded as base64 PNG) from what a run directory
holds: ranking, comparison table, resource estimate, verification and fault campaign summaries."""

from __future__ import annotations

import base64
import csv
import html
import json
from pathlib import Path

from flow import report_plots
from flow.errors import FlowError

STYLE = """body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;font-size:12px;margin:1em 0}td,th{border:1px solid #bbb;padding:2px 6px;text-align:right}
th{background:#eee}img{max-width:100%;border:1px solid #ddd}.missing{color:#888;font-style:italic}"""
SUMMARY_COLUMNS = (
    "variant", "verified", "fault_free_accuracy", "critical_rate", "critical_ci95", "critical_reduction_pct", "LUT",
    "FF", "DSP", "BRAM_18K", "latency_cycles", "LUT_overhead_pct", "DSP_overhead_pct", "macs_overhead_pct",
    "fits_board",
)  # fmt: skip
ESTIMATOR_COLUMNS = (
    "variant", "estimate_method", "LUT", "LUT_analytic", "LUT_yosys_calibrated", "LUT_yosys_over_analytic",
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
    return json.loads(path.read_text()) if path.is_file() else None


def _ranking(out: Path):
    from flow.rank_report import ranking_from_dict

    data = _json(out / "rank" / "ranking.json")
    return ranking_from_dict(data) if data else None


def _compare_rows(out: Path) -> list[dict]:
    path = out / "compare" / "table.csv"
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _sections(out: Path) -> list[str]:
    rows = _compare_rows(out)
    compare_hint = "run `ftflow compare CFG --out OUT`"
    parts = ["<h2>Per-layer vulnerability</h2>"]
    parts.append(_figure(report_plots.vulnerability(_ranking(out)), "vulnerability", "ranking", "run the rank step"))
    parts.append("<h2>Critical-SDC rate vs hardening ratio</h2>")
    parts.append(_figure(report_plots.critical_vs_ratio(rows), "critical vs ratio", "selective variants", compare_hint))
    parts.append("<h2>Resource overhead per variant</h2>")
    parts.append(_figure(report_plots.overhead_bars(rows), "overhead", "comparison", compare_hint))
    parts.append("<h2>Resilience vs overhead (Pareto front)</h2>")
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
        parts.append(_table(rows, SUMMARY_COLUMNS, "compare/table.csv (all columns there)"))
        parts.append("<h2>Estimator vs synthesis</h2>")
        caption = "LUT of the estimate method; the analytic estimate, raw and calibrated to yosys, and yosys/analytic"
        parts.append(_table(rows, ESTIMATOR_COLUMNS, caption))
    else:
        parts.append(_missing("comparison table", compare_hint))
    parts += _run_tables(out)
    return parts


def _run_tables(out: Path) -> list[str]:
    parts = ["<h2>This run</h2>"]
    resources = _json(out / "estimate" / "resources.json")
    if resources:
        caption = f"estimate ({resources['method']}), board {resources['board']} ({resources['part']})"
        total = {"name": "total", **resources["total"], "latency_cycles": resources["latency"]["cycles"]}
        layers = resources.get("layers", [])
        parts.append(
            _table([*layers, total], ("name", "kind", "LUT", "FF", "DSP", "BRAM_18K", "latency_cycles"), caption)
        )
        util = {"name": "% of board", **resources.get("utilisation_pct", {}), "fits": resources.get("fits")}
        parts.append(_table([util], ("name", "LUT", "FF", "DSP", "BRAM_18K", "fits"), "board utilisation"))
    else:
        parts.append(_missing("resource estimate", "run the estimate step"))
    verify = _json(out / "verify" / "report.json")
    if verify:
        keys = ("bit_exact", "n_samples", "argmax_agreement", "max_abs_diff")
        parts.append(_table([verify], [k for k in keys if k in verify], "C-sim vs QKeras (verify/report.json)"))
    inject = _json(out / "inject" / "summary.json")
    if inject:
        total = inject["total"]
        row = {"faults": total["n_faults"], **{k: round(total[k]["rate"], 5) for k in ("critical", "sdc", "masked")}}
        parts.append(_table([row], list(row), "fault campaign (inject/summary.json)"))
    return parts


def _configured_title(out: Path) -> str | None:
    """``report.title`` of the configuration the run wrote (``<out>/config.yaml``), if any."""
    import yaml

    path = out / "config.yaml"
    data = yaml.safe_load(path.read_text()) if path.is_file() else None
    return ((data or {}).get("report") or {}).get("title")


def write_report(out: Path, title: str | None = None) -> Path:
    """Write ``<out>/report/index.html`` from the run directory ``out``; returns its path."""
    out = Path(out)
    if not out.is_dir():
        raise FlowError(f"report: run directory not found: {out}")
    title = title or _configured_title(out) or f"ftflow report: {out.resolve().name}"
    page = (
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
        + "\n".join(_sections(out))
        + "</body></html>"
    )
    path = out / "report" / "index.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page)
    return path
