"""C-sim fault injection: the bridge, fault lists, campaigns with resume, cross-check, errors."""

import csv
import json
import shutil
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

from flow.config import FaultModel, FaultSampling, InjectConfig, Target, config_from_dict
from flow.csim import FaultableLibrary
from flow.errors import FlowError, VerificationError
from flow.faultlist import BitFault, build_fault_list, faults_from_json, faults_to_json
from flow.fixedpoint import FaultKind
from flow.hls import HlsProject
from flow.stats import leveugle_sample_size

pytestmark = [pytest.mark.csim, pytest.mark.slow]


def _lib(fi_runs, name="base"):
    out, _, state = fi_runs[name]
    return FaultableLibrary(HlsProject.load(out / "convert" / "project.json")), state


def test_array_table_covers_every_weight_array(fi_runs):
    lib, _ = _lib(fi_runs, "tmr")
    layers = {row["layer"] for row in lib.arrays}
    assert {"conv1", "conv1_copy1", "conv1_copy2", "logits_copy2", "fc1_correction"} <= layers
    kinds = {row["kind"] for row in lib.arrays}
    assert kinds == {"weight", "bias", "correction"}
    conv1 = next(r for r in lib.arrays if r["layer"] == "conv1" and r["kind"] == "weight")
    assert (conv1["length"], conv1["width"], conv1["signed"]) == (18, 6, True)


@pytest.mark.parametrize("name", ["base", "stream"])
def test_flip_and_restore_leave_outputs_identical(fi_runs, name):
    lib, state = _lib(fi_runs, name)
    x = state.data.x_test[:40]
    golden = lib.predict(x)
    rng = np.random.default_rng(0)
    changed_any = False
    for _ in range(20):
        row = lib.arrays[rng.integers(len(lib.arrays))]
        assert lib.inject(row["name"], int(rng.integers(row["length"])), int(rng.integers(row["width"])))
        changed_any |= not np.array_equal(lib.predict(x), golden)
        lib.restore()
        np.testing.assert_array_equal(lib.predict(x), golden)
    assert changed_any  # the faults were real


def test_stuck_at_a_bit_already_at_that_value_is_masked(fi_runs):
    lib, state = _lib(fi_runs)
    x = state.data.x_test[:40]
    golden = lib.predict(x)
    row = next(r for r in lib.arrays if r["layer"] == "fc1" and r["kind"] == "weight")
    for bit in range(row["width"]):
        was_one = lib.inject(row["name"], 0, bit, FaultKind.STUCK0)  # changes the word only if the bit was 1
        lib.restore()
        same = FaultKind.STUCK1 if was_one else FaultKind.STUCK0
        assert not lib.inject(row["name"], 0, bit, same)
        np.testing.assert_array_equal(lib.predict(x), golden)
        lib.restore()


def test_sign_flip_in_a_vote_hardened_filter_is_masked(fi_runs):
    from flow.campaign import evaluate

    lib, state = _lib(fi_runs, "tmr")
    x, y = state.data.x_test[:40], state.data.y_test[:40]
    golden = lib.predict(x)
    for layer in ("conv1", "conv1_copy1", "conv2_copy2", "logits"):
        row = next(r for r in lib.arrays if r["layer"] == layer and r["kind"] == "weight")
        for index in range(0, row["length"], max(1, row["length"] // 6)):
            fault = (BitFault(row["name"], index, row["width"] - 1),)
            assert evaluate(lib, fault, x, y, golden)["outcome"] == "masked"
    base, _ = _lib(fi_runs, "base")  # the control: the unprotected model is hurt by such faults
    base_golden = base.predict(x)
    outcomes = [
        evaluate(base, (BitFault(r["name"], 0, r["width"] - 1),), x, y, base_golden)["outcome"]
        for r in base.arrays
        if r["kind"] == "weight"
    ]
    assert any(o != "masked" for o in outcomes)


def test_out_of_range_faults_are_clear_errors(fi_runs):
    lib, _ = _lib(fi_runs)
    row = lib.arrays[0]
    with pytest.raises(FlowError, match=r"bit 6 \(0\.\.5\)"):
        lib.inject(row["name"], 0, 6)
    with pytest.raises(FlowError, match=rf"index {row['length']} \(0\.\.{row['length'] - 1}\)"):
        lib.inject(row["name"], row["length"], 0)
    with pytest.raises(FlowError, match="no weight array 'w99'"):
        lib.inject("w99", 0, 0)


def test_fault_lists(fi_runs):
    lib, _ = _lib(fi_runs)
    population = sum(r["length"] * r["width"] for r in lib.arrays if r["kind"] in ("weight", "bias"))
    statistical = build_fault_list(lib.arrays, InjectConfig(margin=0.05), seed=3)
    assert len(statistical) == leveugle_sample_size(population, 0.05, 0.95)
    assert statistical == build_fault_list(lib.arrays, InjectConfig(margin=0.05), seed=3)
    assert statistical != build_fault_list(lib.arrays, InjectConfig(margin=0.05), seed=4)
    exhaustive = build_fault_list(lib.arrays, InjectConfig(sampling=FaultSampling.EXHAUSTIVE), seed=0)
    assert len(exhaustive) == population == len(set(exhaustive))
    only_fc1 = build_fault_list(
        lib.arrays, InjectConfig(layers=("fc1",), targets=(Target.BIAS,), sampling=FaultSampling.EXHAUSTIVE), 0
    )
    assert len(only_fc1) == 8 * 6 and all(f[0].array.startswith("b") for f in only_fc1)
    ber = build_fault_list(lib.arrays, InjectConfig(model=FaultModel.BER, ber=0.01, count=50), seed=1)
    sizes = [len(f) for f in ber]
    assert len(ber) == 50 and abs(np.mean(sizes) - 0.01 * population) < 0.01 * population
    stuck = build_fault_list(
        lib.arrays, InjectConfig(model=FaultModel.STUCK1, sampling=FaultSampling.COUNT, count=7), 0
    )
    assert len(stuck) == 7 and all(f[0].kind is FaultKind.STUCK1 for f in stuck)
    assert faults_from_json(json.loads(json.dumps(faults_to_json(ber)))) == ber


@pytest.mark.parametrize(
    "inject, message",
    [
        ({"ber": 0.0}, r"inject\.ber: got 0\.0, allowed range \(0, 1\]"),
        ({"ber": -1e-3}, r"inject\.ber: got -0\.001"),
        ({"model": "bitflip"}, r"inject\.model: got 'bitflip'"),
        ({"targets": ["weights"]}, r"inject\.targets\[0\]: got 'weights' \(did you mean 'weight'\?\)"),
    ],
)
def test_bad_fault_configs(inject, message):
    with pytest.raises(FlowError, match=message):
        config_from_dict({"inject": inject})


def test_unknown_layer_in_fault_targets(fi_runs):
    lib, _ = _lib(fi_runs)
    with pytest.raises(FlowError, match=r"inject\.layers: no layer 'conv9' with weights"):
        build_fault_list(lib.arrays, InjectConfig(layers=("conv9",)), 0)


def _campaign_rows(out):
    conn = sqlite3.connect(out / "inject" / "campaign.sqlite")
    try:
        return conn.execute(
            "SELECT campaign, fault_id, outcome, n_critical, n_differ, accuracy FROM results ORDER BY fault_id"
        ).fetchall()
    finally:
        conn.close()


def test_killed_campaign_resumes_to_the_same_database(fi_runs, tmp_path):
    """SIGKILL a running campaign halfway, rerun it: the database equals an uninterrupted run's."""
    out, _, _ = fi_runs["base"]
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    for target in (killed, clean):
        shutil.copytree(out, target, ignore=shutil.ignore_patterns("inject"))
    plain = yaml.safe_load((out / "config.yaml").read_text())
    plain["inject"].update({"sampling": "count", "count": 120, "chunk": 4, "workers": 1})
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(plain))
    command = [sys.executable, "-m", "flow.cli", "inject", str(cfg_path), "--out"]
    proc = subprocess.Popen([*command, str(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = killed / "inject" / "campaign.sqlite"
    deadline = time.time() + 120
    while time.time() < deadline:
        if db.exists():
            try:
                if len(_campaign_rows(killed)) >= 20:
                    break
            except sqlite3.OperationalError:
                pass
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    partial = len(_campaign_rows(killed))
    assert 20 <= partial < 120, partial
    assert subprocess.run([*command, str(killed)], capture_output=True).returncode == 0
    assert subprocess.run([*command, str(clean), "--export", "csv"], capture_output=True).returncode == 0
    resumed, uninterrupted = _campaign_rows(killed), _campaign_rows(clean)
    assert len(resumed) == 120 and resumed == uninterrupted
    summary = json.loads((clean / "inject" / "summary.json").read_text())
    total = summary["total"]
    assert total["n_faults"] == 120
    assert sum(total[o]["count"] for o in ("masked", "sdc", "critical")) == 120
    groups = {name: block["n_faults"] for name, block in summary["groups"].items()}
    assert summary["mbu"] == 1 and groups == {"protected": 0, "unprotected": 120, "copy": 0, "correction": 0}
    for outcome in ("masked", "sdc", "critical"):
        lo, hi = total[outcome]["ci95"]
        assert lo <= total[outcome]["rate"] <= hi
    assert (clean / "inject" / "results.csv").read_text().count("\n") == 121


def test_campaign_with_two_workers_equals_one_worker(fi_runs, tmp_path):
    from flow.campaign import CampaignDB, run_campaign

    out, _, state = fi_runs["base"]
    lib, _ = _lib(fi_runs)
    project = HlsProject.load(out / "convert" / "project.json")
    faults = build_fault_list(lib.arrays, InjectConfig(sampling=FaultSampling.COUNT, count=60), 5)
    x, y = state.data.x_test[:30], state.data.y_test[:30]
    results = []
    for workers in (1, 2):
        db = CampaignDB(tmp_path / f"w{workers}.sqlite")
        db.ensure("c", {}, faults, ["x"] * len(faults))
        run_campaign(project, faults, x, y, lib.predict(x), db, "c", workers, chunk=7, progress=False)
        results.append(
            [(r["fault_id"], r["outcome"], r["n_critical"], r["n_differ"], r["accuracy"]) for r in db.rows("c")]
        )
        db.close()
    assert len(results[0]) == 60 and results[0] == results[1]


@pytest.mark.parametrize("name", ["base", "stream", "tmr"])
def test_crosscheck_agrees_with_keras_emulation(fi_runs, name):
    from flow.crosscheck import crosscheck, mappable

    lib, state = _lib(fi_runs, name)
    faults = build_fault_list(lib.arrays, InjectConfig(sampling=FaultSampling.COUNT, count=60), 2)
    rows = {r["name"]: r for r in lib.arrays}
    faults = [f for f in faults if mappable(f, rows)]
    report = crosscheck(state.model, lib, lib.arrays, faults, state.data.x_test[:30], state.data.y_test[:30])
    assert report == {"checked": len(faults), "mismatches": 0}


def test_crosscheck_fails_loudly_on_a_real_difference(fi_runs):
    """Keras emulation on the wrong bit (bit + 1): outcomes differ and the cross-check must say so."""
    from flow.crosscheck import crosscheck

    lib, state = _lib(fi_runs)
    row = next(r for r in lib.arrays if r["layer"] == "logits" and r["kind"] == "bias")
    x, y = state.data.x_test[:30], state.data.y_test[:30]
    faults = [(BitFault(row["name"], i, row["width"] - 1),) for i in range(row["length"])]

    class ShiftedLib:
        """C-sim that flips the bit below the requested one."""

        def __init__(self, inner):
            self.inner = inner

        def inject(self, array, index, bit, kind):
            return self.inner.inject(array, index, bit - 1, kind)

        def __getattr__(self, name):
            return getattr(self.inner, name)

    with pytest.raises(VerificationError, match="give different outcomes in C-sim and Keras"):
        crosscheck(state.model, ShiftedLib(lib), lib.arrays, faults, x, y)


def test_compare_runs_the_same_campaign_and_estimate_on_every_variant(compare_run):
    from flow.cli import main

    path, out, printed = compare_run
    table_path = out / "compare" / "table.csv"
    with open(table_path) as f:
        rows = {row["variant"]: row for row in csv.DictReader(f)}
    assert list(rows) == [
        "baseline", "selective_min_0.3", "selective_min_0.6", "selective_min_budget20", "full_tmr", "pruned_0.5",
        "pruned_l1_0.5", "pruned_hardened_0.5",
    ]  # fmt: skip
    assert all(int(r["faults"]) == 80 for r in rows.values())
    assert all(r["verified"] == "yes" for r in rows.values())  # every variant verified before its campaign
    assert float(rows["full_tmr"]["critical_rate"]) == 0.0  # every weight/bias fault is outvoted
    groups = ("protected", "unprotected", "copy", "correction")  # faults per group sum to the campaign's
    assert all(sum(int(r[f"faults_{g}"]) for g in groups) == 80 for r in rows.values())
    assert [rows["baseline"][f"faults_{g}"] for g in groups] == ["0", "80", "0", "0"]
    tmr = rows["full_tmr"]
    assert int(tmr["faults_protected"]) > 0 and int(tmr["faults_copy"]) > 0 and tmr["faults_correction"] == "0"
    assert float(tmr["critical_rate_protected"]) == 0.0 and tmr["critical_rate_correction"] == ""
    for row in rows.values():  # analytic method: its LUTs are the analytic ones, the yosys-calibrated beside them
        assert row["estimate_method"] == "analytic" and row["LUT_analytic"] == row["LUT"]
        assert int(row["LUT_yosys_calibrated"]) > 0 and row["LUT_yosys_over_analytic"] == ""
    assert float(rows["baseline"]["critical_rate"]) > 0.0
    assert float(rows["full_tmr"]["critical_reduction_pct"]) == 100.0
    assert float(rows["full_tmr"]["macs_overhead_pct"]) == 200.0
    lut = [float(rows[v]["LUT_overhead_pct"]) for v in ("selective_min_0.3", "selective_min_0.6", "full_tmr")]
    assert 0 < lut[0] < lut[1] < lut[2]  # more protection, more LUTs
    assert int(rows["pruned_hardened_0.5"]["macs"]) < int(rows["selective_min_0.3"]["macs"])
    assert int(rows["pruned_0.5"]["macs"]) < int(rows["pruned_hardened_0.5"]["macs"])
    assert float(rows["pruned_0.5"]["LUT_overhead_pct"]) < 0 and float(rows["pruned_l1_0.5"]["LUT_overhead_pct"]) < 0
    assert rows["pruned_hardened_0.5"]["prune_ratio"] == "0.5" and rows["selective_min_0.6"]["harden_ratio"] == "0.6"
    assert all(rows[v]["fits_board"] in ("True", "False") for v in rows)
    budget = rows["selective_min_budget20"]  # greedy over all layers: the copies' MACs stay within 20 %
    assert budget["harden_budget_pct"] == "20.0" and budget["harden_ratio"] == ""
    assert 0 < float(budget["macs_overhead_pct"]) <= 20.0
    assert (out / "compare" / "table.md").read_text().count("\n") == 10
    assert "full_tmr" in printed
    first = table_path.read_text()
    stamp = (out / "compare" / "full_tmr" / "inject" / "summary.json").stat().st_mtime_ns
    assert main(["compare", str(path), "--out", str(out)]) == 0  # finished cases are not rerun
    assert table_path.read_text() == first
    assert (out / "compare" / "full_tmr" / "inject" / "summary.json").stat().st_mtime_ns == stamp


def test_compare_marks_variants_that_fail_verification_and_exits_nonzero(tmp_path, capsys):
    """A user's model whose C-sim cannot match (logits truncated by an hls.layers override): every variant is
    marked, the command exits 1, and the user's trained model is not retrained."""
    from flow.cli import main
    from flow.config import ModelConfig
    from flow.modelio import load_model
    from flow.zoo import build_model

    user = build_model(ModelConfig(filters=(2, 2), dense_units=4), (8, 8, 1), 10)
    user.save(tmp_path / "user.h5")
    cfg = {
        "data": {"name": "digits", "n_train": 200, "n_test": 30}, "model": {"path": str(tmp_path / "user.h5")},
        "hls": {"csim_opt": "O1", "layers": {"logits": {"precision": {"result": "fixed<6,3>"}}}},
        "rank": {"method": "l1"}, "inject": {"sampling": "count", "count": 10, "samples": 10, "workers": 1},
        "verify": {"trace_samples": 2}, "compare": {"variants": ["full_tmr"]},
    }  # fmt: skip
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["compare", str(path), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "2 variant(s) failed verification (baseline, full_tmr)" in err
    with open(tmp_path / "out" / "compare" / "table.csv") as f:
        verdicts = {row["variant"]: row["verified"] for row in csv.DictReader(f)}
    assert set(verdicts) == {"baseline", "full_tmr"}
    assert all(v.startswith("NO: C-sim differs") and "logits" in v for v in verdicts.values()), verdicts
    assert "train" not in json.loads((tmp_path / "out" / "time_per_step.json").read_text())
    kept = load_model(tmp_path / "out" / "load" / "model.h5")
    for a, b in zip(user.get_weights(), kept.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_progress_bar_shows_the_running_critical_rate_with_its_interval():
    from flow.campaign import _Progress
    from flow.stats import wilson_interval

    track = _Progress(10, 2, False)  # resumed at 2 faults; the bar's text is kept even where it is not drawn
    with track.bar:
        track.update([(2, {"outcome": "critical"}), (3, {"outcome": "masked"}), (4, {"outcome": "masked"})])
        lo, hi = wilson_interval(1, 3, 0.95)
        assert track.seen == 3 and track.critical == 1
        assert track.bar.postfix == f"critical=0.3333 [{lo:.4f}, {hi:.4f}]"
