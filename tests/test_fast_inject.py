"""Fast fault evaluation (inject.evaluation: fast): from the faulty layer on, on the cached fault-free tensors,
stopped once masked; its rows equal those of the full C-sim batch per fault."""

from __future__ import annotations

import dataclasses
import json
import shutil
import sqlite3

import numpy as np
import pytest

from flow.campaign import CampaignDB, run_campaign
from flow.config import FaultModel, FaultSampling, InjectConfig, Target, config_from_dict
from flow.csim import FastEvaluator, FaultableLibrary
from flow.errors import FlowError
from flow.faultlist import BitFault, build_fault_list
from flow.hls import HlsProject

HARDENED = ("lenet", 4, "io_parallel", "Vivado", "selective", "range")  # copies + a correction layer


def _faults(lib: FaultableLibrary, count: int, seed: int) -> list:
    """Flips, stuck-at faults and multi-bit (ber) faults over weights, biases and correction data (source words
    selecting past the stacked channels included: they read 0, tests/test_correction_faults.py)."""
    targets = tuple(Target)
    flips = InjectConfig(sampling=FaultSampling.COUNT, count=count, targets=targets)
    stuck = InjectConfig(model=FaultModel.STUCK1, sampling=FaultSampling.COUNT, count=count // 3, targets=targets)
    ber = InjectConfig(model=FaultModel.BER, ber=0.004, count=count // 6)
    faults = [f for cfg in (flips, stuck, ber) for f in build_fault_list(lib.arrays, cfg, seed)]
    return faults + _past_the_channels(lib)


def _past_the_channels(lib: FaultableLibrary) -> list:
    """Up to three flips per correction source array that select past its stacked channels (they read 0)."""
    faults = []
    for row in (r for r in lib.arrays if r["name"].startswith("src")):
        path = lib.project.directory / "firmware" / "weights" / f"{row['name']}.txt"
        words = np.array(path.read_text().replace(",", " ").split(), dtype=float).astype(int)
        outside = [(i, bit) for i, w in enumerate(words) for bit in range(row["width"]) if w ^ 1 << bit > words.max()]
        faults += [(BitFault(row["name"], i, bit),) for i, bit in outside[:3]]
    return faults


def _rows(project: HlsProject, faults, x, y, golden, tmp_path, mode: str, workers: int = 1) -> tuple[list, dict]:
    db = CampaignDB(tmp_path / f"{mode}_{workers}.sqlite")
    db.ensure("c", {}, faults, ["x"] * len(faults))
    result = run_campaign(project, faults, x, y, golden, db, "c", workers, 16, False, mode)
    rows = [(r["fault_id"], r["outcome"], r["n_critical"], r["n_differ"], r["accuracy"]) for r in db.rows("c")]
    db.close()
    return rows, result["evaluation"]


def _check_identical(project: HlsProject, x, y, tmp_path, count: int = 90) -> dict:
    """full and fast campaigns give the same rows; returns fast's evaluation report."""
    lib = FaultableLibrary(project)
    faults = _faults(lib, count, 7)
    golden = lib.predict(x)
    full, full_report = _rows(project, faults, x, y, golden, tmp_path, "full")
    fast, report = _rows(project, faults, x, y, golden, tmp_path, "fast")
    assert full_report["mode"] == "full" and report == {**report, "requested": "fast", "mode": "fast"}
    assert len(full) == len(faults) and fast == full
    outcomes = {row[1] for row in full}
    assert "masked" in outcomes and outcomes & {"sdc", "critical"}  # real faults, some of them harmful
    return report


def _fi(fi_runs, name: str):
    out, _, state = fi_runs[name]
    project = HlsProject.load(out / "convert" / "project.json")
    return project, state.data.x_test[:40], state.data.y_test[:40]


@pytest.mark.csim
@pytest.mark.slow
@pytest.mark.parametrize("name", ["base", "stream"])
def test_tiny_lenet_rows_equal_full(fi_runs, tmp_path, name):
    report = _check_identical(*_fi(fi_runs, name), tmp_path)
    assert report["stopped_early"] > 0 and report["stopped_early_share"] < 1


@pytest.mark.csim
@pytest.mark.slow
def test_full_tmr_rows_equal_full_and_vote_stops_early(fi_runs, tmp_path):
    project, x, y = _fi(fi_runs, "tmr")
    assert _past_the_channels(FaultableLibrary(project))
    report = _check_identical(project, x, y, tmp_path)
    assert report["stopped_early_share"] > 0.5  # a single fault is outvoted right after its layer


@pytest.mark.csim
@pytest.mark.slow
@pytest.mark.parametrize("io_type", ["io_parallel", "io_stream"])
def test_resnet_tiny_with_add_rows_equal_full(compiled_zoo, trained_zoo, tmp_path, io_type):
    """Faults before the Add: the skip branch's fault-free tensor comes from the cache."""
    _, ds = trained_zoo[("resnet_tiny", 4)]
    project = compiled_zoo[("resnet_tiny", 4, io_type, "Vivado")]
    _check_identical(project, ds.x_test[:30], ds.y_test[:30], tmp_path, count=60)


@pytest.mark.csim
@pytest.mark.slow
def test_selectively_hardened_rows_equal_full(compiled_hardened, trained_zoo, tmp_path):
    _, ds = trained_zoo[HARDENED[:2]]
    _, project = compiled_hardened[HARDENED]
    assert _past_the_channels(FaultableLibrary(project))
    _check_identical(project, ds.x_test[:30], ds.y_test[:30], tmp_path)


@pytest.mark.csim
@pytest.mark.slow
def test_fast_outputs_equal_predict_under_each_fault(fi_runs):
    """Not only the rows: every output value, also on the faults that stopped early."""
    project, x, _ = _fi(fi_runs, "base")
    lib = FaultableLibrary(project)
    faults = _faults(lib, 60, 3)
    fast = FastEvaluator(lib, x)
    out, early, calls = fast.evaluate(faults)
    for fault, outputs in zip(faults, out, strict=True):
        for b in fault:
            lib.inject(b.array, b.index, b.bit, b.kind)
        full = lib.predict(x)
        lib.restore()
        np.testing.assert_array_equal(outputs, full)
    assert early.any() and not early.all() and 0 < calls.max() <= fast.n_calls


@pytest.mark.csim
@pytest.mark.slow
def test_a_fault_in_the_last_layer_runs_only_that_layer(fi_runs):
    project, x, _ = _fi(fi_runs, "base")
    lib = FaultableLibrary(project)
    fast = FastEvaluator(lib, x)
    bias = next(r for r in lib.arrays if r["layer"] == "logits" and r["kind"] == "bias")
    first = next(r for r in lib.arrays if r["layer"] == "conv1" and r["kind"] == "weight")
    faults = [(BitFault(bias["name"], 0, bias["width"] - 1),), (BitFault(first["name"], 0, first["width"] - 1),)]
    out, early, calls = fast.evaluate(faults)
    assert calls[0] == 1 and not early[0] and not np.array_equal(out[0], fast.golden)
    assert calls[1] > 1


@pytest.mark.csim
@pytest.mark.slow
def test_one_campaign_id_for_both_modes_and_the_summary_says_which_ran(fi_runs, tmp_path):
    """The identity ignores inject.evaluation; summary.json records the mode, the early stops; cross-check runs."""
    from flow.steps import run

    out, cfg, _ = fi_runs["base"]
    summaries = {}
    for mode in ("full", "fast"):
        copy = tmp_path / mode
        shutil.copytree(out, copy, ignore=shutil.ignore_patterns("inject"))
        icfg = dataclasses.replace(cfg.inject, sampling=FaultSampling.COUNT, count=40, crosscheck=8,
                                   evaluation=cfg.inject.evaluation.__class__(mode))  # fmt: skip
        run(dataclasses.replace(cfg, inject=icfg), copy, ["inject"])
        summaries[mode] = json.loads((copy / "inject" / "summary.json").read_text())
        with sqlite3.connect(copy / "inject" / "campaign.sqlite") as conn:
            summaries[mode]["rows"] = conn.execute("SELECT * FROM results ORDER BY fault_id").fetchall()
    full, fast = summaries["full"], summaries["fast"]
    assert full["campaign"] == fast["campaign"] and full["rows"] == fast["rows"] and len(fast["rows"]) == 40
    assert full["evaluation"] == {"requested": "full", "mode": "full", "stopped_early": 0, "stopped_early_share": 0}
    assert fast["evaluation"]["mode"] == "fast" and 0 < fast["evaluation"]["stopped_early"] < 40
    assert fast["crosscheck"]["mismatches"] == 0 and fast["crosscheck"]["checked"] == 8


@pytest.mark.csim
@pytest.mark.slow
def test_fast_on_two_workers_equals_full(fi_runs, tmp_path):
    project, x, y = _fi(fi_runs, "base")
    lib = FaultableLibrary(project)
    faults = _faults(lib, 60, 11)
    golden = lib.predict(x)
    full, _ = _rows(project, faults, x, y, golden, tmp_path, "full")
    fast, report = _rows(project, faults, x, y, golden, tmp_path, "fast", workers=2)
    assert fast == full and report["mode"] == "fast"


@pytest.mark.csim
@pytest.mark.slow
def test_without_fast_evaluation_the_campaign_falls_back_to_full(fi_runs, tmp_path, monkeypatch):
    project, x, y = _fi(fi_runs, "base")
    lib = FaultableLibrary(project)
    faults = _faults(lib, 30, 5)
    golden = lib.predict(x)
    full, _ = _rows(project, faults, x, y, golden, tmp_path, "full")
    monkeypatch.setattr(FaultableLibrary, "fast_problem", lambda self: "its top function is not understood (x)")
    rows, report = _rows(project, faults, x, y, golden, tmp_path, "fast")
    assert rows == full
    assert report["mode"] == "full" and "not understood (x)" in report["fallback"]
    with pytest.raises(FlowError, match=r"fast evaluation is not available for .*not understood"):
        FastEvaluator(lib, x)


@pytest.mark.csim
@pytest.mark.slow
def test_evaluator_errors(fi_runs):
    project, x, _ = _fi(fi_runs, "base")
    lib = FaultableLibrary(project)
    row = lib.arrays[0]
    fast = FastEvaluator(lib, x)
    with pytest.raises(FlowError, match=rf"index {row['length']} \(0\.\.{row['length'] - 1}\)"):
        fast.evaluate([(BitFault(row["name"], 0, 1),), (BitFault(row["name"], row["length"], 0),)])
    with pytest.raises(FlowError, match="no weight array 'w99'"):
        fast.evaluate([(BitFault("w99", 0, 0),)])
    np.testing.assert_array_equal(lib.predict(x), fast.golden)  # nothing left injected
    FastEvaluator(lib, x[:5])  # a new batch on the same library replaces this one's
    with pytest.raises(FlowError, match="released or replaced"):
        fast.evaluate([(BitFault(row["name"], 0, 1),)])
    with pytest.raises(FlowError, match="samples of 64 values"):
        FastEvaluator(lib, np.zeros((3, 5), np.float32))


def test_evaluation_key_is_checked():
    assert InjectConfig().evaluation.value == "fast"
    with pytest.raises(FlowError, match=r"inject\.evaluation: got 'quick'.*allowed: fast, full"):
        config_from_dict({"inject": {"evaluation": "quick"}})


def test_run_campaign_refuses_an_unknown_mode(tmp_path):
    db = CampaignDB(tmp_path / "c.sqlite")
    with pytest.raises(FlowError, match=r"inject\.evaluation: got 'quick', allowed: fast, full"):
        run_campaign(None, [], np.zeros((1, 1)), np.zeros(1), np.zeros((1, 1)), db, "c", 1, 1, False, "quick")
    db.close()


def test_unknown_top_function_gets_a_stub_saying_why(tmp_path):
    from flow.fi_bridge import FAST_MARKER, TEMPLATE, fast_code
    from flow.package_data import template

    firmware = tmp_path / "firmware"
    firmware.mkdir()
    layers = "// hls-fpga-machine-learning insert layers"
    (firmware / "p.cpp").write_text(
        f"void p(input_t x[4], result_t y[2]) {{\n{layers}\n    layer2_t t[4];\n"
        "    for (int i = 0; i < 4; i++) t[i] = x[i];\n    nnet::dense<layer2_t, result_t, config3>(t, y, w3, b3);\n}\n"
    )
    text = template(TEMPLATE).read_text()
    table = [{"name": "w3"}, {"name": "b3"}]
    stub = fast_code(tmp_path, "p", table, text[text.index(FAST_MARKER) :], 4, 2)
    assert "fi_fast_unsupported" in stub and "statement 'for (int i = 0" in stub and "fi_fast_group" not in stub
    loop = "    for (int i = 0; i < 4; i++) t[i] = x[i];\n"
    relu = "    nnet::relu<input_t, layer2_t, relu_config2>(x, t);\n"
    (firmware / "p.cpp").write_text((firmware / "p.cpp").read_text().replace(loop, relu))
    code = fast_code(tmp_path, "p", table, text[text.index(FAST_MARKER) :], 4, 2)
    assert "fi_fast_group" in code and "inputs[] = {0, 2, -1}" in code  # relu reads x, dense reads t
    assert "array_at[] = {0, 0, 2}, arrays[] = {0, 1, -1}" in code  # relu names no array, dense names w3 and b3
