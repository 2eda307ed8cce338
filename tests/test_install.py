"""A real install: the wheel built from a copy of the source tree carries the boards, the C++ templates and the
calibration, and a run from a directory that does not see the source tree finds them (board, templates, estimate).
No network: the wheel is built without build isolation (setuptools comes with the dev extra) and installed with
--no-deps into a target directory that only PYTHONPATH points at."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("pyproject.toml", "README.md", "flow", "boards", "hls_templates")  # what the wheel is built from
DATA = ("flow/boards_data/pynq-z2.yaml", "flow/hls_templates/fi_bridge.cpp.in", "flow/hls_templates/nnet_correction.h",
        "flow/hardware/yosys_calibration.json")  # fmt: skip
CONFIG = {
    "seed": 0,
    "data": {"name": "digits", "n_train": 200, "n_test": 20},
    "model": {"name": "lenet", "input_shape": [8, 8, 1], "filters": [2, 4], "dense_units": 8},
    "train": {"epochs": 1},
    "hls": {"csim_opt": "O1"},
}
PROBE = """import json, sys, flow
from flow.package_data import boards_dir, template
print(json.dumps({"flow": flow.__file__, "boards": str(boards_dir()), "header": str(template("nnet_correction.h"))}))
"""


def _pip(*args: str, cwd: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "pip", *args], cwd=cwd, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"pip {' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel of a clean copy of the sources (nothing built in the shared tree)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            src.mkdir(exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    _pip("wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", str(tmp / "dist"), str(src), cwd=tmp)
    (built,) = (tmp / "dist").glob("ftflow-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """The wheel installed with --no-deps into a fresh target directory."""
    target = tmp_path_factory.mktemp("site")
    _pip("install", "--no-deps", "--no-index", "-q", "--target", str(target), str(wheel), cwd=target)
    return target


def _env(target: Path, cache: Path) -> dict[str, str]:
    """Only the installed copy on the path (the editable finder of .venv comes after PYTHONPATH)."""
    return {**os.environ, "PYTHONPATH": str(target), "FTFLOW_CACHE": str(cache), "TF_CPP_MIN_LOG_LEVEL": "2"}


@pytest.mark.slow
def test_the_wheel_ships_boards_templates_and_calibration(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert set(DATA) <= names
    boards = {Path(n).stem for n in names if n.startswith("flow/boards_data/") and n.endswith(".yaml")}
    assert boards == {p.stem for p in (ROOT / "boards").glob("*.yaml")}


@pytest.mark.slow
def test_an_installed_copy_converts_from_another_directory(installed, tmp_path):
    run_dir = tmp_path / "elsewhere"
    run_dir.mkdir()
    env = _env(installed, tmp_path / "cache")
    probe = subprocess.run([sys.executable, "-c", PROBE], cwd=run_dir, env=env, capture_output=True, text=True,
                           check=True)  # fmt: skip
    where = json.loads(probe.stdout.strip().splitlines()[-1])
    for key in ("flow", "boards", "header"):  # the installed copy, not the source tree
        assert Path(where[key]).is_relative_to(installed), (key, where[key])
    (run_dir / "tiny.yaml").write_text(yaml.safe_dump(CONFIG))
    done = subprocess.run([str(installed / "bin" / "ftflow"), "run", "tiny.yaml", "--out", "out", "--steps",
                           "load,train,convert,estimate"], cwd=run_dir, env=env, capture_output=True, text=True,
                          check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    project = run_dir / "out" / "convert" / "hls_project"
    assert "xc7z020" in done.stdout  # pynq-z2 found: its part in the convert summary
    assert "fi_inject" in next(project.glob("*_bridge.cpp")).read_text()  # the FI bridge template
    assert (project / "firmware" / "nnet_utils" / "nnet_correction.h").is_file()  # the registered header
    resources = json.loads((run_dir / "out" / "estimate" / "resources.json").read_text())
    assert resources["board"] == "pynq-z2" and resources["yosys_calibrated"]["LUT"] > 0  # the shipped calibration
