"""A result belongs to its design: a rerun with a changed input recomputes what depends on it, and only that."""

from __future__ import annotations

import copy
import json
import shutil

import pytest

from flow.config import config_from_dict
from flow.state import read_manifest
from flow.steps import run

BASE = {
    "seed": 1,
    "data": {"name": "digits", "n_train": 300, "n_test": 60},
    "model": {"name": "lenet", "input_shape": [8, 8, 1], "filters": [2, 4], "dense_units": 8},
    "train": {"epochs": 1},
    "rank": {"method": "l1"},
    "harden": {"ratio": 0.3},
    "hls": {"csim_opt": "O1"},
    "inject": {"sampling": "count", "count": 10, "samples": 20, "workers": 1},
}
PIPELINE = ["load", "train", "rank", "harden"]


def cfg_with(**changes):
    data = copy.deepcopy(BASE)
    for dotted, value in changes.items():
        section, _, key = dotted.partition("__")
        if key:
            data[section][key] = value
        else:
            data[section] = value
    return config_from_dict(data, "test")


def stamps(out) -> dict[str, int]:
    """mtime of every step's main artefact (a recomputed step rewrites its file)."""
    files = {"load": "load/model.h5", "train": "train/model.h5", "rank": "rank/ranking.json",
             "harden": "harden/model.h5", "convert": "convert/project.json"}  # fmt: skip
    return {step: (out / rel).stat().st_mtime_ns for step, rel in files.items() if (out / rel).exists()}


def recomputed(before: dict, after: dict) -> set[str]:
    return {step for step in after if before.get(step) != after[step]}


def extra_channels(out) -> int:
    return json.loads((out / "harden" / "summary.json").read_text())["total"]["extra_channels"]


@pytest.fixture(scope="module")
def hardened_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("fresh") / "run"
    run(cfg_with(), out, PIPELINE)
    return out


@pytest.fixture
def work(hardened_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(hardened_run, out)
    return out


def test_lineage_and_keys_are_recorded(hardened_run):
    manifest = read_manifest(hardened_run)
    assert [link["step"] for link in manifest["lineage"]] == ["load", "train", "harden"]
    assert manifest["lineage"][-1]["ranking"] == manifest["keys"]["ranking"]
    assert manifest["model"] == "harden/model.h5" and manifest["unhardened_model"] == "train/model.h5"


def test_unchanged_config_recomputes_nothing(work):
    before = stamps(work)
    run(cfg_with(), work, ["estimate"])
    assert recomputed(before, stamps(work)) == set()


def test_changed_harden_ratio_rehardens_only(work):
    before, extra = stamps(work), extra_channels(work)
    run(cfg_with(harden__ratio=0.6), work, ["estimate"])
    assert recomputed(before, stamps(work)) == {"harden"}
    assert extra_channels(work) > extra


def test_changed_rank_method_reranks_and_rehardens(work):
    before = stamps(work)
    run(cfg_with(rank__method="l2"), work, ["estimate"])
    assert recomputed(before, stamps(work)) == {"rank", "harden"}
    assert json.loads((work / "rank" / "ranking.json").read_text())["method"] == "l2"


def test_changed_training_retrains_and_everything_after(work):
    before = stamps(work)
    run(cfg_with(train__epochs=2), work, ["estimate"])
    assert recomputed(before, stamps(work)) == {"train", "rank", "harden"}


def test_new_seed_makes_new_data_split_and_retrains(work):
    """The test split of a new seed is never the old model's training data: the model is rebuilt and retrained."""
    before = stamps(work)
    run(cfg_with(seed=7), work, ["estimate"])
    assert recomputed(before, stamps(work)) == {"load", "train", "rank", "harden"}


def test_rerun_of_harden_hardens_the_unhardened_model(work):
    run(cfg_with(harden__ratio=0.6), work, ["harden"])
    lineage = [link["step"] for link in read_manifest(work)["lineage"]]
    assert lineage == ["load", "train", "harden"]  # replaced, not hardened twice


def test_changed_user_model_file_is_reloaded(tmp_path, hardened_run):
    path = tmp_path / "user.h5"
    shutil.copyfile(hardened_run / "train" / "model.h5", path)
    cfg = config_from_dict({**copy.deepcopy(BASE), "model": {"path": str(path)}}, "user")
    out = tmp_path / "run"
    run(cfg, out, ["load"])
    before = stamps(out)
    run(cfg, out, ["estimate"])
    assert recomputed(before, stamps(out)) == set()
    shutil.copyfile(hardened_run / "harden" / "model.h5", path)  # same name, other content
    run(cfg, out, ["estimate"])
    assert recomputed(before, stamps(out)) == {"load"}


@pytest.mark.csim
@pytest.mark.slow
def test_changed_hls_config_reconverts_before_inject(work):
    run(cfg_with(), work, ["convert"])
    before = stamps(work)
    run(cfg_with(), work, ["inject"])
    assert recomputed(before, stamps(work)) == set()
    state = run(cfg_with(hls={"csim_opt": "O1", "io_type": "io_stream"}), work, ["inject"])
    assert recomputed(before, stamps(work)) == {"convert"}
    assert json.loads((work / "convert" / "project.json").read_text())["io_type"] == "io_stream"
    assert state.summary["inject"]["faults"] == 10
    run(cfg_with(harden__ratio=0.6), work, ["inject"])  # a new hardened model needs a new project
    assert recomputed(before, stamps(work)) == {"convert", "harden"}


@pytest.mark.csim
@pytest.mark.slow
def test_compare_rebuilds_its_cases_on_a_changed_base_model(tmp_path):
    from flow.compare import compare

    data = {**copy.deepcopy(BASE), "compare": {"variants": ["full_tmr"]}}
    out = tmp_path / "cmp"
    compare(config_from_dict(data, "cmp"), out)
    case_models = {p.parent.parent.name: p.stat().st_mtime_ns for p in (out / "compare").glob("*/convert/project.json")}
    assert len(case_models) == 2  # baseline and full TMR
    compare(config_from_dict(data, "cmp"), out)  # the same config: nothing is rebuilt
    assert case_models == {
        p.parent.parent.name: p.stat().st_mtime_ns for p in (out / "compare").glob("*/convert/project.json")
    }
    base_model = (out / "train" / "model.h5").stat().st_mtime_ns
    data["train"] = {"epochs": 2}
    compare(config_from_dict(data, "cmp"), out)
    assert (out / "train" / "model.h5").stat().st_mtime_ns != base_model
    rebuilt = {p.parent.parent.name: p.stat().st_mtime_ns for p in (out / "compare").glob("*/convert/project.json")}
    assert all(rebuilt[name] != mtime for name, mtime in case_models.items())
