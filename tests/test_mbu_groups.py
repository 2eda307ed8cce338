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
