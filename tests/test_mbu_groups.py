"""Multi-bit upsets (inject.mbu: k adjacent bits of one stored word) and fault groups (faults in protected channels,
unprotected channels, the copies and the correction data), on hand-written array tables and on a tiny selectively
TMR-hardened MLP compiled twice (Latency and Resource strategy: channels last and first in the weight arrays)."""

from __future__ import annotations

import numpy as np
import pytest

from flow.campaign import campaign_id, campaign_inputs, summarize
from flow.config import FaultModel, FaultSampling, InjectConfig, Target, config_from_dict
from flow.errors import FlowError
from flow.faultlist import (
    GROUPS,
    BitFault,
    build_fault_list,
    fault_group,
    fault_sites,
    word_channel,
    word_group,
)
from flow.fixedpoint import FaultKind
from flow.hls import HlsProject
from flow.stats import leveugle_sample_size

# a hand-written table: a hardened Dense (4 -> 3, channel 1 protected), its copy, its correction source map
TABLE = [
    {"name": "w2", "layer": "fc", "kind": "weight", "length": 12, "width": 6, "channels": 3,
     "channel_axis": "last", "protected": [1]},
    {"name": "b2", "layer": "fc", "kind": "bias", "length": 3, "width": 8, "channels": 3, "channel_axis": "last",
     "protected": [1]},
    {"name": "w3", "layer": "fc_copy1", "kind": "weight", "length": 4, "width": 6, "channels": 1,
     "channel_axis": "last", "copy_of": "fc"},
    {"name": "src4", "layer": "fc_correction", "kind": "correction", "length": 6, "width": 2},
]  # fmt: skip
ALL = (Target.WEIGHT, Target.BIAS, Target.CORRECTION)


def _cfg(**kw) -> InjectConfig:
    return InjectConfig(**{"targets": ALL, **kw})


# ---- configuration and fault lists (no compiler) ----


def test_bad_mbu_specs_are_clear_errors():
    with pytest.raises(FlowError, match=r"inject\.mbu: got 0, allowed range \[1, 64\]"):
        config_from_dict({"inject": {"mbu": 0}})
    with pytest.raises(FlowError, match=r"inject\.mbu: got 2 with model 'ber'; allowed with ber: 1"):
        config_from_dict({"inject": {"mbu": 2, "model": "ber"}})
    assert config_from_dict({"inject": {"mbu": 3, "model": "stuck1"}}).inject.mbu == 3
    with pytest.raises(FlowError, match=r"inject\.mbu: got 3; allowed: at most 2, .*array src4 of layer "
                       r"fc_correction: 2 bits"):  # fmt: skip
        build_fault_list(TABLE, _cfg(mbu=3, sampling=FaultSampling.EXHAUSTIVE), 0)
    # without the 2-bit correction words, 6 bits fit
    assert len(build_fault_list(TABLE, _cfg(mbu=6, targets=(Target.WEIGHT,), sampling=FaultSampling.EXHAUSTIVE), 0))


@pytest.mark.parametrize("kind", [FaultModel.FLIP, FaultModel.STUCK0, FaultModel.STUCK1])
def test_exhaustive_mbu_lists_every_word_and_start_bit_once(kind):
    k = 2
    faults = build_fault_list(TABLE, _cfg(mbu=k, model=kind, sampling=FaultSampling.EXHAUSTIVE), 0)
    widths = {r["name"]: r["width"] for r in TABLE}
    expected = {(r["name"], i, b) for r in TABLE for i in range(r["length"]) for b in range(r["width"] - k + 1)}
    starts = [(f[0].array, f[0].index, f[0].bit) for f in faults]
    assert len(starts) == len(set(starts)) and set(starts) == expected
    for fault in faults:
        a, i, b = fault[0].array, fault[0].index, fault[0].bit
        assert fault == tuple(BitFault(a, i, b + j, FaultKind(kind.value)) for j in range(k))
        assert b + k <= widths[a]  # inside the word
    assert fault_sites(TABLE, _cfg(mbu=k)) == len(expected) == 12 * 5 + 3 * 7 + 4 * 5 + 6 * 1


def test_statistical_and_count_sample_mbu_sites_deterministically():
    cfg = _cfg(mbu=2, margin=0.1)
    faults = build_fault_list(TABLE, cfg, 5)
    assert len(faults) == leveugle_sample_size(fault_sites(TABLE, cfg), 0.1, 0.95, 0.5)
    assert faults == build_fault_list(TABLE, cfg, 5) != build_fault_list(TABLE, cfg, 6)
    assert all(len(f) == 2 and f[1].bit == f[0].bit + 1 and f[1].index == f[0].index for f in faults)
    counted = build_fault_list(TABLE, _cfg(mbu=3, targets=(Target.WEIGHT,), sampling=FaultSampling.COUNT,
                                           count=30), 1)  # fmt: skip
    assert len(counted) == 30 and len(set(counted)) == 30 and all(len(f) == 3 for f in counted)


def test_mbu_1_is_the_single_bit_list():
    single = build_fault_list(TABLE, _cfg(sampling=FaultSampling.EXHAUSTIVE), 0)
    assert [(f[0].array, f[0].index, f[0].bit) for f in single] == [
        (r["name"], i, b) for r in TABLE for i in range(r["length"]) for b in range(r["width"])
    ]
    assert all(len(f) == 1 for f in single)


def test_the_campaign_id_changes_with_mbu(tmp_path):
    project = HlsProject(tmp_path, "myproject", "Vivado", "io_parallel", 4, 3)
    x = np.zeros((2, 4), np.float32)
    ids = {mbu: campaign_id(campaign_inputs(project, build_fault_list(TABLE, _cfg(mbu=mbu, sampling=FaultSampling.COUNT,
                                                                                  count=20), 3), x, 3))
           for mbu in (1, 2)}  # fmt: skip
    assert ids[1] != ids[2]


# ---- groups ----


def test_word_groups_follow_the_channel_layout():
    w, b, copy, src = TABLE
    assert [word_group(w, i) for i in range(6)] == ["unprotected", "protected", "unprotected"] * 2
    assert [word_group(b, i) for i in range(3)] == ["unprotected", "protected", "unprotected"]
    assert {word_group(copy, i) for i in range(4)} == {"copy"} and word_group(src, 0) == "correction"
    first = {**w, "channel_axis": "first"}  # hls4ml's Resource strategy: (channels, fan-in)
    assert [word_channel(first, i) for i in range(12)] == [0] * 4 + [1] * 4 + [2] * 4
    assert word_group({**w, "protected": []}, 1) == "unprotected"
    rows = {r["name"]: r for r in TABLE}
    assert fault_group((BitFault("w2", 1, 0), BitFault("w2", 1, 1)), rows) == "protected"
    assert fault_group((BitFault("w2", 1, 0), BitFault("w3", 0, 0)), rows) == "mixed"
    assert fault_group((), rows) == "none"


def test_target_copy_selects_the_copy_layers_arrays():
    faults = build_fault_list(TABLE, _cfg(targets=(Target.COPY,), sampling=FaultSampling.EXHAUSTIVE), 0)
    assert {f[0].array for f in faults} == {"w3"} and len(faults) == 4 * 6
    with_weights = build_fault_list(TABLE, _cfg(targets=(Target.WEIGHT,), sampling=FaultSampling.EXHAUSTIVE), 0)
    assert {f[0].array for f in with_weights} == {"w2", "w3"}


def test_summary_groups_sum_to_the_total():
    faults = build_fault_list(TABLE, _cfg(sampling=FaultSampling.EXHAUSTIVE, mbu=2), 0)
    rows_by_name = {r["name"]: r for r in TABLE}
    groups = [fault_group(f, rows_by_name) for f in faults]
    outcomes = ["masked", "sdc", "critical"]
    rows = [{"fault_id": i, "layer": "fc", "outcome": outcomes[i % 3], "accuracy": 1.0} for i in range(len(faults))]
    summary = summarize(rows, groups=groups)
    assert list(summary["groups"]) == list(GROUPS)
    assert sum(g["n_faults"] for g in summary["groups"].values()) == summary["total"]["n_faults"] == len(faults)
    # by hand: channel 1 of w2 (4 words) and b2 (1 word), 5 and 7 start bits; the copy 4 x 5; src 6 x 1
    expected = {"protected": 4 * 5 + 7, "unprotected": 8 * 5 + 2 * 7, "copy": 4 * 5, "correction": 6}
    assert {g: summary["groups"][g]["n_faults"] for g in GROUPS} == expected
    for g in GROUPS:
        assert summary["groups"][g]["critical"]["count"] == sum(
            r["outcome"] == "critical" for r, group in zip(rows, groups, strict=True) if group == g
        )


# ---- on a compiled selectively TMR-hardened MLP ----

PROTECTED = {"fc1": [0, 2, 4, 6], "logits": [1, 3, 5, 7, 9]}  # ratio 0.5 of each layer's channels
STRATEGIES = ("Latency", "Resource")  # Resource: hls4ml transposes the kernels (channel first)


def tmr_mlp():
    """4x4x1 image -> flatten -> QDense(8) -> quantized_relu(6,2) -> QDense(10) logits, PROTECTED by TMR (vote)."""
    import tensorflow as tf
    from qkeras import QActivation, QDense, quantized_bits, quantized_relu

    from flow.config import HardenConfig, HardenMode
    from flow.harden import harden_model

    tf.keras.utils.set_random_seed(3)
    q = quantized_bits(6, 0, alpha=1)
    x = tf.keras.Input((4, 4, 1), name="image")
    h = QDense(8, kernel_quantizer=q, bias_quantizer=q, name="fc1")(tf.keras.layers.Flatten(name="flatten")(x))
    h = QActivation(quantized_relu(6, 2), name="relu1")(h)
    model = tf.keras.Model(x, QDense(10, kernel_quantizer=q, bias_quantizer=q, name="logits")(h))
    return harden_model(model, PROTECTED, HardenConfig(mode=HardenMode.SELECTIVE_TMR))


def images(n: int = 40) -> np.ndarray:
    return (np.random.default_rng(2).integers(0, 257, size=(n, 4, 4, 1)) / 256).astype(np.float32)


@pytest.fixture(scope="module")
def hardened(tmp_path_factory):
    """(Keras model, strategy -> HlsProject)."""
    from flow.config import HlsConfig, OptLevel, Strategy
    from flow.hardware.boards import load_board
    from flow.hls import convert

    model = tmr_mlp()
    projects = {}
    for strategy in STRATEGIES:
        cfg = HlsConfig(csim_opt=OptLevel.O1, strategy=Strategy(strategy))
        projects[strategy] = convert(model, cfg, load_board("pynq-z2"), 8, tmp_path_factory.mktemp(strategy))[0]
    return model, projects


def _independent_group(model, row: dict, index: int) -> str:
    """A word's group from the Keras model (not the array table's channel fields): copy layers by name, channel
    from the kernel shape and hls4ml's layout (Resource: kernel transposed to (channels, fan-in))."""
    from flow.harden import copy_name

    if row["kind"] == "correction":
        return "correction"
    if any(row["layer"] == copy_name(name, n) for name in PROTECTED for n in (1, 2)):
        return "copy"
    if row["layer"] not in PROTECTED:
        return "unprotected"
    fan_in, channels = model.get_layer(row["layer"]).kernel.shape
    first = row["kind"] == "weight" and row["strategy"] == "Resource"
    channel = index // fan_in if first else index % channels
    protected = [c for c, s in enumerate(model.get_layer(f"{row['layer']}_correction").sources) if len(s) > 1]
    return "protected" if channel in protected else "unprotected"


@pytest.mark.csim
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_summary_groups_match_an_independent_count(hardened, tmp_path, strategy):
    from flow.campaign import CampaignDB, run_campaign
    from flow.csim import FaultableLibrary

    model, projects = hardened
    lib = FaultableLibrary(projects[strategy])
    x = images()
    y = np.zeros(len(x), int)
    cfg = InjectConfig(targets=(*ALL, Target.COPY), sampling=FaultSampling.COUNT, count=240, mbu=2)
    faults = build_fault_list(lib.arrays, cfg, 4)
    rows = {r["name"]: {**r, "strategy": strategy} for r in lib.arrays}
    db = CampaignDB(tmp_path / "c.sqlite")
    db.ensure("c", {}, faults, ["x"] * len(faults))
    run_campaign(projects[strategy], faults, x, y, lib.predict(x), db, "c", 1, 60, False, "fast")
    summary = summarize(db.rows("c"), groups=[fault_group(f, rows) for f in faults])
    db.close()
    independent = {g: 0 for g in GROUPS}
    for fault in faults:
        (group,) = {_independent_group(model, rows[b.array], b.index) for b in fault}
        independent[group] += 1
    assert {g: summary["groups"][g]["n_faults"] for g in GROUPS} == independent
    assert sum(independent.values()) == summary["total"]["n_faults"] == 240
    assert all(independent.values())  # every group drawn
    assert summary["groups"]["protected"]["masked"]["count"] == independent["protected"]  # TMR masks them all


@pytest.mark.csim
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_high_bit_upset_is_outvoted_only_in_a_protected_channel(hardened, strategy):
    """The sign bit (and an MBU of the 3 top bits) of every original weight and bias word of fc1 and logits: in a
    TMR-protected channel always masked, in an unprotected one a logits bias always shows, weights often."""
    from flow.csim import FaultableLibrary

    _, projects = hardened
    lib = FaultableLibrary(projects[strategy])
    x = images()
    golden = lib.predict(x)
    changed = {(g, row["layer"], row["kind"]): [] for g in ("protected", "unprotected") for row in lib.arrays}
    for row in (r for r in lib.arrays if r["layer"] in PROTECTED):
        top = row["width"] - 1
        for index in range(row["length"]):
            for bits in ([top], [top - 2, top - 1, top]):
                for bit in bits:
                    lib.inject(row["name"], index, bit)
                out = lib.predict(x)
                lib.restore()
                changed[word_group(row, index), row["layer"], row["kind"]].append(not np.array_equal(out, golden))
    protected = [v for (g, _, _), values in changed.items() if g == "protected" for v in values]
    assert len(protected) == 2 * (16 * 4 + 4 + 8 * 5 + 5) and not any(protected)
    assert len(changed["unprotected", "logits", "bias"]) == 2 * 5 and all(changed["unprotected", "logits", "bias"])
    assert any(changed["unprotected", "fc1", "weight"]) and any(changed["unprotected", "logits", "weight"])


@pytest.mark.csim
def test_mbu_faults_agree_in_full_and_fast_csim_and_keras(hardened):
    """MBU flips (3 bits) and stuck-at-1 (2 bits) over weights, biases, copies and source maps: the full C-sim
    batch, the fast evaluation and the Keras emulation give the same outputs bit for bit; inject.crosscheck too."""
    from flow.crosscheck import crosscheck, keras_array, mappable
    from flow.csim import FastEvaluator, FaultableLibrary
    from flow.emulate import Fault, FaultEmulator
    from flow.training import inference_fn

    model, projects = hardened
    lib = FaultableLibrary(projects["Latency"])
    x = images()
    rows = {r["name"]: r for r in lib.arrays}
    targets = (*ALL, Target.COPY)
    flips = InjectConfig(targets=targets, sampling=FaultSampling.COUNT, count=60, mbu=3)
    stuck = InjectConfig(model=FaultModel.STUCK1, targets=targets, sampling=FaultSampling.COUNT, count=30, mbu=2)
    faults = [f for cfg in (flips, stuck) for f in build_fault_list(lib.arrays, cfg, 9) if mappable(f, rows)]
    assert len(faults) > 60 and {fault_group(f, rows) for f in faults} == set(GROUPS)
    emulator, forward = FaultEmulator(model), inference_fn(model)
    golden = lib.predict(x)
    np.testing.assert_array_equal(forward(x).numpy(), golden)
    fast, _, _ = FastEvaluator(lib, x).evaluate(faults)
    shown = 0
    for fault, fast_out in zip(faults, fast, strict=True):
        for b in fault:
            lib.inject(b.array, b.index, b.bit, b.kind)
        full = lib.predict(x)
        lib.restore()
        keras_faults = [Fault(rows[b.array]["layer"], keras_array(rows[b.array]), b.index, b.bit, b.kind)
                        for b in fault]  # fmt: skip
        with emulator.injected(keras_faults):
            keras = forward(x).numpy()
        np.testing.assert_array_equal(full, keras, err_msg=str(fault))
        np.testing.assert_array_equal(fast_out, full, err_msg=str(fault))
        shown += not np.array_equal(full, golden)
    emulator.close()
    assert shown > 0  # some of them are real
    report = crosscheck(model, lib, lib.arrays, faults[:20], x, np.zeros(len(x), int))
    assert report == {"checked": 20, "mismatches": 0}
