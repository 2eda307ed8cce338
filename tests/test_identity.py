"""Campaign identity (every input that defines the computed function) and relocatable run directories."""

from __future__ import annotations

import copy
import ctypes
import json
import logging
import shutil
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest

from flow.campaign import campaign_id, campaign_inputs
from flow.config import config_from_dict
from flow.faultlist import BitFault
from flow.hls import HlsProject

TINY = {
    "seed": 1,
    "data": {"name": "digits", "n_train": 300, "n_test": 60},
    "model": {"name": "lenet", "input_shape": [8, 8, 1], "filters": [2, 4], "dense_units": 8},
    "train": {"epochs": 2},
    "hls": {"csim_opt": "O1"},
    "inject": {"sampling": "count", "count": 20, "samples": 20, "workers": 1},
}
WIDER_ACCUM = {"fc1": {"precision": {"accum": "fixed<30,14>"}}}


def _cfg(hls_layers: dict | None = None):
    data = copy.deepcopy(TINY)
    if hls_layers:
        data["hls"]["layers"] = hls_layers
    return config_from_dict(data, "identity")


# ---- campaign inputs on a small hand-written project (no compiler needed) ----


def _fake_project(directory: Path) -> HlsProject:
    files = {
        "firmware/defines.h": "typedef ap_fixed<16,6> accum2_t;",
        "firmware/parameters.h": "struct config2 {};",
        "firmware/myproject.cpp": "void myproject() {}",
        "firmware/nnet_utils/nnet_dense.h": "// dense",
        "firmware/ap_types/ap_fixed.h": "// ap",
        "firmware/weights/w2.txt": "1, 2, 3",
        "firmware/weights/w2.h": "weight2_t w2[3];",
        "myproject_bridge.cpp": "// bridge",
        "fi_arrays.json": "[]",
        "build_lib.sh": 'CFLAGS="-O1 -fPIC"\nLIB_STAMP=1234abcd\n',
        "ftflow_build/build_info.json": json.dumps({"opt": "O1", "library_key": "k1"}),
    }
    for rel, text in files.items():
        (directory / rel).parent.mkdir(parents=True, exist_ok=True)
        (directory / rel).write_text(text)
    return HlsProject(directory, "myproject", "Vivado", "io_parallel", 64, 10)


FAULTS = [(BitFault("w2", 0, 1),), (BitFault("w2", 2, 0),)]
X = np.zeros((4, 64), np.float32)


@pytest.mark.parametrize(
    ("rel", "component"),
    [
        ("firmware/defines.h", "types"),
        ("firmware/parameters.h", "types"),
        ("firmware/myproject.cpp", "firmware"),
        ("firmware/nnet_utils/nnet_dense.h", "firmware"),
        ("firmware/ap_types/ap_fixed.h", "firmware"),
        ("firmware/weights/w2.txt", "weights"),
        ("firmware/weights/w2.h", "weights"),
        ("myproject_bridge.cpp", "bridge"),
        ("fi_arrays.json", "bridge"),
        ("build_lib.sh", "build"),
    ],
)
def test_changing_any_source_changes_the_id_and_names_the_component(tmp_path, rel, component):
    project = _fake_project(tmp_path)
    before = campaign_inputs(project, FAULTS, X, 1)
    (tmp_path / rel).write_text((tmp_path / rel).read_text() + " ")
    after = campaign_inputs(project, FAULTS, X, 1)
    assert campaign_id(after) != campaign_id(before)
    assert {k for k in before if before[k] != after[k]} == {component}


def test_a_new_header_under_firmware_changes_the_id(tmp_path):
    project = _fake_project(tmp_path)
    before = campaign_inputs(project, FAULTS, X, 1)
    (tmp_path / "firmware/nnet_utils/nnet_new.h").write_text("// new")
    assert campaign_inputs(project, FAULTS, X, 1)["firmware"] != before["firmware"]


def test_build_products_and_location_leave_the_id_unchanged(tmp_path):
    project = _fake_project(tmp_path / "a")
    before = campaign_id(campaign_inputs(project, FAULTS, X, 1))
    (tmp_path / "a/firmware/myproject-1234.so").write_bytes(b"\x7fELF")
    (tmp_path / "a/firmware/.myproject-1234.so.9.tmp").write_bytes(b"x")
    script = tmp_path / "a/build_lib.sh"
    script.write_text(script.read_text().replace("LIB_STAMP=1234abcd", "LIB_STAMP=5678ef01"))  # a new convert's
    assert campaign_id(campaign_inputs(project, FAULTS, X, 1)) == before
    shutil.move(tmp_path / "a", tmp_path / "elsewhere")
    moved = HlsProject(tmp_path / "elsewhere", "myproject", "Vivado", "io_parallel", 64, 10)
    assert campaign_id(campaign_inputs(moved, FAULTS, X, 1)) == before


def test_build_info_opt_and_library_key_are_part_of_the_id(tmp_path):
    project = _fake_project(tmp_path)
    info = tmp_path / "ftflow_build/build_info.json"
    ids = {campaign_id(campaign_inputs(project, FAULTS, X, 1))}
    for recorded in ({"opt": "O3", "library_key": "k1"}, {"opt": "O3", "library_key": "k2"}):
        info.write_text(json.dumps(recorded))
        ids.add(campaign_id(campaign_inputs(project, FAULTS, X, 1)))
    info.unlink()  # built by build_lib.sh: its text and the compiler identity
    ids.add(campaign_id(campaign_inputs(project, FAULTS, X, 1)))
    assert len(ids) == 4


def test_faults_samples_and_seed_are_part_of_the_id(tmp_path):
    project = _fake_project(tmp_path)
    base = campaign_inputs(project, FAULTS, X, 1)
    variants = {
        "faults": campaign_inputs(project, FAULTS[:1], X, 1),
        "samples": campaign_inputs(project, FAULTS, X[:3], 1),
        "seed": campaign_inputs(project, FAULTS, X, 2),
    }
    for component, inputs in variants.items():
        assert {k for k in base if base[k] != inputs[k]} == {component}
    x = X.copy()
    x[0, 0] = 0.5
    assert campaign_inputs(project, FAULTS, x, 1)["samples"] != base["samples"]


# ---- project.json ----


def test_project_json_stores_the_directory_relative_to_itself(tmp_path):
    run = tmp_path / "run"
    (run / "convert" / "hls_project").mkdir(parents=True)
    HlsProject(run / "convert" / "hls_project", "myproject", "Vivado", "io_parallel", 64, 10).save(
        run / "convert" / "project.json"
    )
    assert json.loads((run / "convert" / "project.json").read_text())["directory"] == "hls_project"
    shutil.move(run, tmp_path / "moved")
    loaded = HlsProject.load(tmp_path / "moved" / "convert" / "project.json")
    assert loaded.directory == (tmp_path / "moved" / "convert" / "hls_project").resolve()


def test_project_outside_the_json_directory_stays_absolute(tmp_path, caplog):
    (tmp_path / "meta").mkdir()
    project = HlsProject(tmp_path / "elsewhere", "myproject", "Vivado", "io_parallel", 64, 10)
    project.save(tmp_path / "meta" / "project.json")
    stored = json.loads((tmp_path / "meta" / "project.json").read_text())["directory"]
    assert stored == str((tmp_path / "elsewhere").resolve())
    with caplog.at_level(logging.WARNING, logger="flow.hls"):
        assert HlsProject.load(tmp_path / "meta" / "project.json").directory == Path(stored)
    assert "outside its directory" in caplog.text


# ---- on a trained and converted tiny run ----


@pytest.fixture(scope="module")
def base_run(tmp_path_factory) -> Path:
    """load/train/convert of the tiny config (never modified by the tests: they work on copies)."""
    from flow.steps import run

    out = tmp_path_factory.mktemp("identity") / "base"
    run(_cfg(), out, ["load", "train", "convert"])
    return out


def _inject(cfg, out: Path, steps=("inject",)) -> dict:
    from flow.steps import run

    run(cfg, out, list(steps))
    return json.loads((out / "inject" / "summary.json").read_text())


def _rows_per_campaign(out: Path) -> dict[str, int]:
    with sqlite3.connect(out / "inject" / "campaign.sqlite") as conn:
        return dict(conn.execute("SELECT campaign, COUNT(*) FROM results GROUP BY campaign").fetchall())


def _meta(out: Path, cid: str) -> dict:
    with sqlite3.connect(out / "inject" / "campaign.sqlite") as conn:
        return json.loads(conn.execute("SELECT meta FROM campaigns WHERE id = ?", (cid,)).fetchone()[0])


@pytest.mark.csim
@pytest.mark.slow
def test_accumulator_precision_change_makes_a_new_campaign(base_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(base_run, out)
    first = _inject(_cfg(), out)
    with sqlite3.connect(out / "inject" / "campaign.sqlite") as conn:  # as if killed halfway
        conn.execute("DELETE FROM results WHERE campaign = ? AND fault_id >= 10", (first["campaign"],))
    second = _inject(_cfg(WIDER_ACCUM), out, ["convert", "inject"])
    firmware = out / "convert" / "hls_project" / "firmware"
    assert any("30,14" in (firmware / h).read_text() for h in ("defines.h", "parameters.h"))  # really applied
    assert second["campaign"] != first["campaign"]
    assert second["timing"]["evaluated"] == 20  # nothing reused from the old hardware's rows
    assert second["total"]["n_faults"] == 20
    assert _rows_per_campaign(out) == {first["campaign"]: 10, second["campaign"]: 20}
    changed = {k for k in first["inputs"] if first["inputs"][k] != second["inputs"][k]}
    assert "types" in changed and changed <= {"types", "firmware", "bridge", "build"}
    assert _meta(out, second["campaign"])["inputs"] == second["inputs"]
    assert _meta(out, second["campaign"])["project"] == "convert/hls_project"
    back = _inject(_cfg(), out, ["convert", "inject"])  # the old hardware again (a new LIB_STAMP): its campaign
    assert back["campaign"] == first["campaign"] and back["inputs"] == first["inputs"]
    assert back["timing"]["evaluated"] == 10 and back["total"] == first["total"]


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.stat().st_size) for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def loaded_libraries(monkeypatch) -> list[Path]:
    """Every library ctypes loads during the test."""
    loaded, real = [], ctypes.CDLL

    def spy(name, *args, **kwargs):
        loaded.append(Path(name).resolve())
        return real(name, *args, **kwargs)

    monkeypatch.setattr(ctypes, "CDLL", spy)
    return loaded


def _library(out: Path) -> Path:
    library = HlsProject.load(out / "convert" / "project.json").library()
    assert library is not None
    return library


@pytest.mark.csim
@pytest.mark.slow
def test_copied_run_works_with_the_original_gone(base_run, tmp_path, loaded_libraries):
    from flow.export import export_projects
    from flow.steps import run

    original, copied = tmp_path / "original", tmp_path / "copied"
    shutil.copytree(base_run, original)
    shutil.copytree(original, copied)
    built = _library(original).stat().st_mtime_ns
    shutil.rmtree(original)
    start = time.perf_counter()
    state = run(_cfg(), copied, ["verify", "inject"])
    assert state.summary["verify"]["bit_exact"]
    assert state.summary["inject"]["faults"] == 20
    assert loaded_libraries and all(p.is_relative_to(copied.resolve()) for p in loaded_libraries)
    assert _library(copied).stat().st_mtime_ns == built  # its own copied library, not rebuilt
    assert time.perf_counter() - start < 120
    exported = export_projects(copied)
    assert (exported[0] / "firmware" / "myproject.cpp").is_file()


@pytest.mark.csim
@pytest.mark.slow
def test_copied_run_leaves_the_original_alone_and_resumes_after_a_move(base_run, tmp_path, loaded_libraries):
    copied, moved = tmp_path / "copied", tmp_path / "moved"
    shutil.copytree(base_run, copied)
    before = _tree(base_run)
    first = _inject(_cfg(), copied)
    assert _tree(base_run) == before
    assert loaded_libraries and all(p.is_relative_to(copied.resolve()) for p in loaded_libraries)
    shutil.move(copied, moved)
    loaded_libraries.clear()
    again = _inject(_cfg(), moved)
    assert again["campaign"] == first["campaign"]  # paths are not part of the identity
    assert again["timing"]["evaluated"] == 0  # the moved campaign resumes (here: is complete)
    assert again["total"] == first["total"]
    assert loaded_libraries and all(p.is_relative_to(moved.resolve()) for p in loaded_libraries)


@pytest.mark.csim
@pytest.mark.slow
def test_hashing_a_real_project_is_fast(base_run):
    project = HlsProject.load(base_run / "convert" / "project.json")
    n_files = sum(1 for p in (project.directory / "firmware").rglob("*") if p.is_file())
    start = time.perf_counter()
    campaign_inputs(project, [(BitFault("w2", 0, 0),)] * 1000, np.zeros((100, 64), np.float32), 1)
    assert n_files > 50  # nnet_utils and ap_types headers included
    assert time.perf_counter() - start < 1.0
