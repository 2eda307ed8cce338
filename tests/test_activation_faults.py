"""Faults in the datapath (inject.space: activations): the fast evaluation's hook sets bits of one element of one
layer's output tensor, for one sample (flip: transient) or every sample (stuck0/stuck1: permanent). Checked: the
hook changes nothing unarmed and is not in the exported IP; known outcomes (a sign flip at the output changes
exactly that element by exactly that bit's weight; in a TMR copy or original it is outvoted); C-sim and Keras
emulation agree; sampling, groups and campaign identity; bad specs are clear errors."""

from __future__ import annotations

import dataclasses
import filecmp
import json

import numpy as np
import pytest

from flow.campaign import NOT_SOURCES, evaluate_act, summarize
from flow.config import (
    ActivationPoint,
    FaultModel,
    FaultSampling,
    InjectConfig,
    Space,
    Target,
    config_from_dict,
)
from flow.csim import FastEvaluator, FaultableLibrary
from flow.errors import FlowError
from flow.faultlist import (
    ActBit,
    act_sites,
    build_act_fault_list,
    fault_group,
    faults_from_json,
    faults_to_json,
    target_tensors,
)
from flow.fixedpoint import FaultKind, FixedFormat
from flow.hls import HlsProject
from flow.stats import leveugle_sample_size

ACT = {"space": Space.ACTIVATIONS}

# a hand-written tensor table: a hardened Dense (channel 1 of 3 protected), its copy, its correction, the relu
TENSORS = [
    {"id": 2, "name": "t_fc", "layer": "fc", "class": "Dense", "length": 3, "channels": 3, "width": 8,
     "integer": 4, "signed": True, "type": "fc_t", "point": "before", "protected": [1]},
    {"id": 3, "name": "t_copy", "layer": "fc_copy1", "class": "Dense", "length": 1, "channels": 1, "width": 8,
     "integer": 4, "signed": True, "type": "c_t", "point": "before", "copy_of": "fc"},
    {"id": 4, "name": "t_corr", "layer": "fc_correction", "class": "Correction", "length": 3, "channels": 3,
     "width": 8, "integer": 4, "signed": True, "type": "k_t", "point": "before"},
    {"id": 1, "name": "t_relu", "layer": "relu", "class": "Activation", "length": 3, "channels": 3, "width": 4,
     "integer": 2, "signed": False, "type": "r_t", "point": "after", "of": "fc"},
]  # fmt: skip
ALL = (Target.WEIGHT, Target.COPY, Target.CORRECTION)


def _cfg(**kw) -> InjectConfig:
    return InjectConfig(**{**ACT, "targets": ALL, **kw})


# ---- configuration and fault lists (no compiler) ----


def test_bad_activation_configs_are_clear_errors():
    with pytest.raises(FlowError, match=r"model: got 'ber' with space 'activations'; allowed with activations: flip"):
        config_from_dict({"inject": {"space": "activations", "model": "ber"}})
    with pytest.raises(FlowError, match=r"evaluation: got 'full' with space 'activations'; allowed .*: fast"):
        config_from_dict({"inject": {"space": "activations", "evaluation": "full"}})
    with pytest.raises(FlowError, match=r"inject\.space: got 'activation'.*activations"):
        config_from_dict({"inject": {"space": "activation"}})
    with pytest.raises(FlowError, match=r"inject\.mbu: got 0, allowed range \[1, 64\]"):
        config_from_dict({"inject": {"space": "activations", "mbu": 0}})
    with pytest.raises(FlowError, match=r"inject\.layers: no layer 'fcc'.*did you mean 'fc'.*layers: fc, "):
        build_act_fault_list(TENSORS, _cfg(layers=("fcc",)), 0, 5)
    with pytest.raises(FlowError, match=r"inject\.mbu: got 5; allowed: at most 4, .*tensor t_relu of layer relu: 4"):
        build_act_fault_list(TENSORS, _cfg(mbu=5), 0, 5)
    with pytest.raises(FlowError, match=r"no output tensor matches targets \['correction'\] at activation 'after' "
                       r"in layers \('relu',\)"):  # fmt: skip
        target_tensors(TENSORS, _cfg(targets=(Target.CORRECTION,), layers=("relu",)))


def test_the_activation_point_and_targets_select_tensors():
    def names(**kw):
        return [r["name"] for r in target_tensors(TENSORS, _cfg(**kw))]

    assert names() == ["t_relu"]
    assert names(activation=ActivationPoint.BEFORE) == ["t_fc", "t_copy", "t_corr"]
    assert names(targets=(Target.BIAS,)) == ["t_relu"]  # weight or bias: the model's own layers
    assert names(targets=(Target.COPY,), activation=ActivationPoint.BEFORE) == ["t_copy"]
    assert names(layers=("fc",), targets=(Target.WEIGHT,)) == ["t_relu"]  # the activation of fc is fc's "after"


@pytest.mark.parametrize("model", [FaultModel.FLIP, FaultModel.STUCK0, FaultModel.STUCK1])
def test_exhaustive_lists_every_site_once(model):
    mbu, samples = 2, 3
    faults = build_act_fault_list(TENSORS, _cfg(model=model, mbu=mbu, sampling=FaultSampling.EXHAUSTIVE), 0, samples)
    rows = target_tensors(TENSORS, _cfg())
    per = samples if model is FaultModel.FLIP else 1
    assert len(faults) == act_sites(TENSORS, _cfg(model=model, mbu=mbu), samples)
    assert len(faults) == per * sum(r["length"] * (r["width"] - mbu + 1) for r in rows)
    assert len({f[0] for f in faults}) == len(faults)
    for fault in faults:
        assert [b.bit for b in fault] == [fault[0].bit, fault[0].bit + 1]
        assert len({(b.tensor, b.element, b.sample, b.kind) for b in fault}) == 1
        assert (fault[0].sample >= 0) == (model is FaultModel.FLIP) and fault[0].kind == FaultKind(model.value)


def test_statistical_sampling_is_leveugle_sized_and_seeded():
    cfg = _cfg(margin=0.05)
    population = act_sites(TENSORS, cfg, 20)
    faults = build_act_fault_list(TENSORS, cfg, 4, 20)
    assert len(faults) == leveugle_sample_size(population, 0.05, 0.95, 0.5) < population
    assert faults == build_act_fault_list(TENSORS, cfg, 4, 20)
    assert faults != build_act_fault_list(TENSORS, cfg, 5, 20)
    assert faults_from_json(json.loads(json.dumps(faults_to_json(faults)))) == faults


def test_activation_groups():
    rows = {r["name"]: r for r in TENSORS}
    group = {(t, e): fault_group((ActBit(t, e, 0),), rows) for t, r in rows.items() for e in range(r["length"])}
    assert group[("t_fc", 1)] == "protected" and group[("t_fc", 0)] == group[("t_fc", 2)] == "unprotected"
    assert group[("t_copy", 0)] == "copy" and group[("t_corr", 1)] == "correction"
    assert {group[("t_relu", e)] for e in range(3)} == {"unprotected"}  # after the vote


# ---- on the compiled tiny LeNets (io_parallel, io_stream, full TMR) ----

csim = pytest.mark.csim


def _fast(fi_runs, name, n=30):
    out, _, state = fi_runs[name]
    lib = FaultableLibrary(HlsProject.load(out / "convert" / "project.json"))
    return lib, FastEvaluator(lib, state.data.x_test[:n]), state


def _rows(fast) -> dict[str, dict]:
    return {r["layer"]: r for r in fast.tensors()}


@csim
@pytest.mark.parametrize("name", ["base", "stream", "tmr"])
def test_the_unarmed_hook_changes_nothing(fi_runs, name):
    """Capture equals the top function; of a stuck-at-0 and a stuck-at-1 of one bit, exactly one leaves the bit as
    it is: that one runs no call and gives the fault-free outputs exactly, on every tensor; nothing is left behind
    (the top function and a new capture give the same outputs)."""
    lib, fast, state = _fast(fi_runs, name)
    x = state.data.x_test[:30]
    assert np.array_equal(fast.golden, lib.predict(x))
    pairs = [
        tuple((ActBit(row["name"], e, bit, kind, s),) for kind in (FaultKind.STUCK0, FaultKind.STUCK1))
        for row in fast.tensors()
        for e, bit, s in ((0, 0, 0), (row["length"] - 1, row["width"] - 1, 29), (row["length"] // 2, 1, 11))
    ]
    out, early, calls = fast.evaluate_act([f for pair in pairs for f in pair])
    for k in range(len(pairs)):
        unchanged = [j for j in (2 * k, 2 * k + 1) if calls[j] == 0 and early[j]]  # the bit had that value
        assert len(unchanged) == 1, f"stuck-at 0 and 1 of {pairs[k][0]}: {len(unchanged)} left the bit as it was"
        assert np.array_equal(out[unchanged[0]], fast.golden)
    assert np.array_equal(lib.predict(x), fast.golden)
    fast.close()
    assert np.array_equal(FastEvaluator(lib, x).golden, fast.golden)  # a new capture: the same batch


@csim
def test_the_hook_is_not_in_the_exported_ip(fi_runs, tmp_path):
    """firmware/ written with the bridge (and the hook) is byte-identical to hls4ml's own, written without it."""
    from flow.hardware.boards import resolve_board
    from flow.hls import build_graph

    out, cfg, state = fi_runs["base"]
    plain = tmp_path / "plain"
    graph, _ = build_graph(state.model, cfg.hls, resolve_board(cfg.board), 8, plain)
    graph.write()
    ours = HlsProject.load(out / "convert" / "project.json").directory / "firmware"
    compared = filecmp.dircmp(plain / "firmware", ours)
    files = [p.relative_to(plain / "firmware") for p in (plain / "firmware").rglob("*") if p.is_file()]
    assert files
    for rel in files:
        assert (ours / rel).read_bytes() == (plain / "firmware" / rel).read_bytes(), rel
    assert not compared.left_only
    extra = [p.relative_to(ours) for p in ours.rglob("*") if p.is_file()]
    extra = [p for p in extra if not (plain / "firmware" / p).exists()]
    assert all(p.suffix in NOT_SOURCES for p in extra), extra  # only the compiled library


@csim
@pytest.mark.parametrize("name", ["base", "stream"])
def test_a_sign_flip_at_the_output_changes_exactly_that_element(fi_runs, name):
    _, fast, _ = _fast(fi_runs, name)
    row = _rows(fast)["logits"]
    fmt = FixedFormat(row["width"], row["integer"], row["signed"])
    s, e, sign = 4, 3, row["width"] - 1
    out, _, _ = fast.evaluate_act([(ActBit(row["name"], e, sign, FaultKind.FLIP, s),)])
    expected = fast.golden.copy()
    expected[s, e] = fmt.inject(fast.golden[s, e], sign)
    np.testing.assert_array_equal(out[0], expected)
    # permanent stuck-at-1 of the sign bit: every sample whose value was >= 0 changes at e, nothing else
    out, _, _ = fast.evaluate_act([(ActBit(row["name"], e, sign, FaultKind.STUCK1, -1),)])
    expected = fast.golden.copy()
    expected[:, e] = fmt.inject(fast.golden[:, e], sign, FaultKind.STUCK1)
    np.testing.assert_array_equal(out[0], expected)
    fast.close()


@csim
def test_a_sign_flip_in_a_tmr_copy_or_original_is_outvoted(fi_runs):
    """Full TMR (vote): the sign bit of any element of any original or copy layer's output is masked; the same in
    the correction's output (after the vote) or in the unhardened baseline is not."""
    _, fast, _ = _fast(fi_runs, "tmr")
    rows = _rows(fast)
    faults, where = [], []
    for layer in ("conv1", "conv1_copy2", "fc1", "fc1_copy1", "logits", "logits_copy2"):
        row = rows[layer]
        assert row.get("protected") == list(range(row["channels"])) or "copy_of" in row
        for s in (0, 7):
            for e in range(row["length"]):
                faults.append((ActBit(row["name"], e, row["width"] - 1, FaultKind.FLIP, s),))
                where.append(layer)
    out, _, _ = fast.evaluate_act(faults)
    assert not np.any(out != fast.golden[None]), "a fault in a TMR channel was not outvoted"
    groups = {fault_group(f, {r["name"]: r for r in rows.values()}) for f in faults}
    assert groups == {"protected", "copy"}
    corr = rows["logits_correction"]
    out, _, _ = fast.evaluate_act([(ActBit(corr["name"], 2, corr["width"] - 1, FaultKind.FLIP, 7),)])
    assert np.argwhere(out[0] != fast.golden).tolist() == [[7, 2]]
    fast.close()
    _, base, _ = _fast(fi_runs, "base")
    row = _rows(base)["conv1"]
    out, _, _ = base.evaluate_act([(ActBit(row["name"], e, row["width"] - 1, FaultKind.FLIP, 7),) for e in range(8)])
    assert any(np.any(o != base.golden) for o in out)  # unprotected: the flips show
    base.close()


@csim
def test_transient_rows_count_the_one_sample(fi_runs):
    _, fast, state = _fast(fi_runs, "base")
    y = state.data.y_test[:30]
    row = _rows(fast)["logits"]
    s = 5
    e = int(fast.golden[s].argmax())  # the top-1 logit gets -2**(integer-1) added: the top-1 changes
    fault = (ActBit(row["name"], e, row["width"] - 1, FaultKind.FLIP, s),)
    out, _, _ = fast.evaluate_act([fault])
    (r,) = evaluate_act(fast, [fault], y, fast.golden)
    assert (r["outcome"], r["n_critical"], r["n_differ"]) == ("critical", 1, 1)
    assert r["accuracy"] == float(out[0, s].argmax() == y[s])
    fast.close()


@csim
@pytest.mark.parametrize("name", ["base", "stream", "tmr"])
@pytest.mark.parametrize("point", ["after", "before"])
def test_csim_and_keras_emulation_agree(fi_runs, name, point):
    from flow.crosscheck import crosscheck_activations

    out, _, state = fi_runs[name]
    lib = FaultableLibrary(HlsProject.load(out / "convert" / "project.json"))
    x, y = state.data.x_test[:20], state.data.y_test[:20]
    fast = FastEvaluator(lib, x)
    tensors = fast.tensors()
    fast.close()
    faults = []
    for model, mbu in ((FaultModel.FLIP, 1), (FaultModel.STUCK0, 1), (FaultModel.STUCK1, 2), (FaultModel.FLIP, 3)):
        cfg = InjectConfig(**ACT, model=model, mbu=mbu, activation=ActivationPoint(point), targets=ALL,
                           sampling=FaultSampling.COUNT, count=12)  # fmt: skip
        faults += build_act_fault_list(tensors, cfg, 3, len(x))
    report = crosscheck_activations(state.model, lib, faults, x, y)
    keras = {layer.name for layer in state.model.layers}
    rows = {r["name"]: r for r in tensors}
    no_twin = sum(rows[f[0].tensor]["layer"] not in keras for f in faults)  # io_stream: hls4ml's zero padding
    assert report == {"checked": len(faults) - no_twin, "mismatches": 0, **({"no_twin": no_twin} if no_twin else {})}
    assert report["checked"] >= 24


@csim
def test_crosscheck_catches_a_wrong_element(fi_runs, monkeypatch):
    """The Keras side hitting the next element: outcomes differ and the cross-check says so."""
    from flow import emulate_act
    from flow.crosscheck import crosscheck_activations
    from flow.errors import VerificationError

    out, _, state = fi_runs["base"]
    lib = FaultableLibrary(HlsProject.load(out / "convert" / "project.json"))
    x, y = state.data.x_test[:20], state.data.y_test[:20]
    apply = emulate_act.ActivationEmulator._apply

    def shifted(self, value, fault):
        return apply(self, value, tuple(dataclasses.replace(b, element=b.element + 1) for b in fault))

    monkeypatch.setattr(emulate_act.ActivationEmulator, "_apply", shifted)
    row = json.loads((lib.project.directory / "fi_tensors.json").read_text())["tensors"]
    logits = next(r for r in row if r["layer"] == "logits")
    faults = [(ActBit(logits["name"], 0, logits["width"] - 1, FaultKind.FLIP, s),) for s in range(5)]
    with pytest.raises(VerificationError, match="activation faults give different outcomes"):
        crosscheck_activations(state.model, lib, faults, x, y)


@csim
def test_bad_activation_fault_specs_are_clear_errors(fi_runs):
    _, fast, _ = _fast(fi_runs, "base", n=10)
    row = _rows(fast)["relu1"]
    name = row["name"]
    with pytest.raises(FlowError, match=r"no tensor 'nope'; tensors: .*layer2_out \(conv1\)"):
        fast.evaluate_act([(ActBit("nope", 0, 0),)])
    with pytest.raises(FlowError, match=rf"element {row['length']} of tensor {name} \(relu1\); allowed: 0\.\."):
        fast.evaluate_act([(ActBit(name, row["length"], 0),)])
    with pytest.raises(FlowError, match=rf"bit 6 of tensor {name} \(relu1\); allowed: 0\.\.5"):
        fast.evaluate_act([(ActBit(name, 0, 6),)])
    with pytest.raises(FlowError, match=r"sample 10; allowed: 0\.\.9, or -1"):
        fast.evaluate_act([(ActBit(name, 0, 0, FaultKind.FLIP, 10),)])
    with pytest.raises(FlowError, match=r"must hit one tensor and one sample"):
        fast.evaluate_act([(ActBit(name, 0, 0, FaultKind.FLIP, 1), ActBit(name, 0, 1, FaultKind.FLIP, 2))])
    fast.close()


# ---- the inject step ----


@csim
def test_inject_step_runs_resumes_and_recomputes_on_a_changed_key(fi_runs, tmp_path):
    import shutil

    from flow.steps import step_inject

    out, cfg, state = fi_runs["base"]
    run = tmp_path / "run"
    shutil.copytree(out, run, symlinks=True)
    state = dataclasses.replace(state, out=run)
    inject = {**ACT, "sampling": FaultSampling.COUNT, "count": 60, "samples": 20, "workers": 1, "crosscheck": 10}
    cfg = dataclasses.replace(cfg, inject=InjectConfig(**inject))
    step_inject(state, cfg)
    summary = json.loads((run / "inject" / "summary.json").read_text())
    assert summary["space"] == "activations" and summary["activation"] == "after"
    assert summary["total"]["n_faults"] == 60 and summary["evaluation"]["mode"] == "fast"
    assert summary["crosscheck"]["mismatches"] == 0 and summary["crosscheck"]["checked"] == 10
    assert sum(summary["groups"][g]["n_faults"] for g in summary["groups"]) == 60
    assert set(summary["layers"]) <= {"relu1", "pool1", "relu2", "pool2", "relu3", "logits"}
    first = summary["campaign"]
    step_inject(state, cfg)  # resumed: nothing left to evaluate
    again = json.loads((run / "inject" / "summary.json").read_text())
    assert again["campaign"] == first and again["timing"]["evaluated"] == 0
    assert {k: again[k] for k in ("total", "layers", "groups")} == {
        k: summary[k] for k in ("total", "layers", "groups")
    }
    before = dataclasses.replace(cfg, inject=InjectConfig(**inject, activation=ActivationPoint.BEFORE))
    step_inject(state, before)
    changed = json.loads((run / "inject" / "summary.json").read_text())
    assert changed["campaign"] != first and changed["timing"]["evaluated"] == 60
    weights = dataclasses.replace(cfg, inject=InjectConfig(sampling=FaultSampling.COUNT, count=60, samples=20))
    step_inject(state, weights)
    assert json.loads((run / "inject" / "summary.json").read_text())["space"] == "weights"


def test_summary_groups_of_activation_faults_sum_to_the_total():
    cfg = _cfg(sampling=FaultSampling.EXHAUSTIVE, activation=ActivationPoint.BEFORE)
    faults = build_act_fault_list(TENSORS, cfg, 0, 2)
    rows = {r["name"]: r for r in TENSORS}
    groups = [fault_group(f, rows) for f in faults]
    assert set(groups) == {"protected", "unprotected", "copy", "correction"}
    results = [{"fault_id": i, "layer": "x", "outcome": "masked", "n_critical": 0, "n_differ": 0, "accuracy": 1.0}
               for i in range(len(faults))]  # fmt: skip
    summary = summarize(results, groups=groups)
    assert sum(summary["groups"][g]["n_faults"] for g in ("protected", "unprotected", "copy", "correction")) == len(
        faults
    )


@pytest.fixture(scope="module")
def selective(tmp_path_factory):
    """A selectively TMR-hardened MLP (tests/test_mbu_groups.py tmr_mlp), its project and test images."""
    from test_mbu_groups import images, tmr_mlp

    from flow.config import HlsConfig, OptLevel
    from flow.hardware.boards import load_board
    from flow.hls import convert

    model = tmr_mlp()
    project, _ = convert(model, HlsConfig(csim_opt=OptLevel.O1), load_board("pynq-z2"), 8, tmp_path_factory.mktemp("s"))
    return model, project, images(40)


@csim
def test_selective_tmr_outvotes_protected_channels_only(selective):
    from test_mbu_groups import PROTECTED

    _, project, x = selective
    fast = FastEvaluator(FaultableLibrary(project), x)
    rows = _rows(fast)
    assert rows["fc1"]["protected"] == PROTECTED["fc1"] and rows["logits"]["protected"] == PROTECTED["logits"]
    assert rows["fc1"]["point"] == rows["fc1_copy1"]["point"] == rows["fc1_correction"]["point"] == "before"
    by_name = {r["name"]: r for r in rows.values()}
    for layer in ("fc1", "logits"):
        row = rows[layer]
        for c in range(row["channels"]):
            fault = (ActBit(row["name"], c, row["width"] - 1, FaultKind.FLIP, -1),)  # every sample's sign bit
            out, _, _ = fast.evaluate_act([fault])
            protected = c in PROTECTED[layer]
            assert fault_group(fault, by_name) == ("protected" if protected else "unprotected")
            if protected:
                assert np.array_equal(out[0], fast.golden), f"{layer} channel {c}: not outvoted"
            elif layer == "logits":
                assert np.array_equal(np.unique(np.argwhere(out[0] != fast.golden)[:, 1]), [c])  # that element
            else:
                assert np.any(out[0] != fast.golden), f"{layer} channel {c}: an unprotected sign flip is masked"
    fast.close()


@csim
@pytest.mark.parametrize("point", ["after", "before"])
def test_selective_tmr_csim_and_keras_agree(selective, point):
    from flow.crosscheck import crosscheck_activations

    model, project, x = selective
    lib = FaultableLibrary(project)
    fast = FastEvaluator(lib, x)
    tensors = fast.tensors()
    fast.close()
    cfg = InjectConfig(**ACT, activation=ActivationPoint(point), targets=ALL, sampling=FaultSampling.COUNT, count=40)
    faults = build_act_fault_list(tensors, cfg, 1, len(x))
    faults += build_act_fault_list(tensors, dataclasses.replace(cfg, model=FaultModel.STUCK1, mbu=2), 1, len(x))
    y = np.zeros(len(x), dtype=int)
    assert crosscheck_activations(model, lib, faults, x, y) == {"checked": len(faults), "mismatches": 0}
