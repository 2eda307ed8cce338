"""Shared fixtures: trained zoo models and compiled hls4ml projects are built once per session."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest

from flow.config import config_from_dict

TINY = {
    "seed": 1,
    "data": {"name": "digits", "n_train": 300, "n_test": 60},
    "model": {"name": "lenet", "input_shape": [8, 8, 1], "filters": [2, 4], "dense_units": 8},
    "train": {"epochs": 2},
}


SHARED_FIXTURE_GROUPS = {  # test modules that share an expensive session fixture run on the same xdist worker
    "test_csim_harden": "hardened",  # compiled_hardened
    "test_rtl": "hardened",
    "test_inject": "campaigns",  # fi_runs, compare_run
    "test_report": "campaigns",
    "test_basis": "campaigns",
}


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which turns the xdist_group marks into groups
def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (``make test``: -n 2 --dist loadgroup) every module runs on one worker, and modules that
    share a session fixture on the same one, so no compiled fixture is built twice."""
    if not config.pluginmanager.hasplugin("xdist"):
        return
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1]
        item.add_marker(pytest.mark.xdist_group(SHARED_FIXTURE_GROUPS.get(module, module)))


def pytest_collection_finish(session):
    """Under --dist loadgroup every test must carry its group, else each worker builds every shared fixture again
    (pytest 9 with pytest-xdist 3.8 drops the groups silently: pyproject pins pytest 8)."""
    if getattr(session.config.option, "loadgroup", False) and any("@" not in item.nodeid for item in session.items):
        raise pytest.UsageError("pytest-xdist did not group the tests (--dist loadgroup): check the pinned pytest")


@pytest.fixture(scope="session", autouse=True)
def _private_synthesis_cache(tmp_path_factory):
    """C-sim objects and yosys results are cached by content; tests use the session's own cache, never the user's."""
    saved = os.environ.get("FTFLOW_CACHE")
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # one cache for the session's xdist workers (entries are locked and written atomically)
    (root / "ftflow_cache").mkdir(exist_ok=True)
    os.environ["FTFLOW_CACHE"] = str(root / "ftflow_cache")
    yield
    if saved is None:
        os.environ.pop("FTFLOW_CACHE", None)
    else:
        os.environ["FTFLOW_CACHE"] = saved


@pytest.fixture
def tiny_cfg_dict() -> dict:
    """A config that trains and converts in seconds (a fresh copy per test)."""
    import copy

    return copy.deepcopy(TINY)


@pytest.fixture
def tiny_cfg(tiny_cfg_dict):
    return config_from_dict(tiny_cfg_dict, "tiny")


# ---- the C-sim matrix: every zoo model at 4 and 8 bits, io_parallel/io_stream, Vivado/Vitis ----

ZOO_CASES = {  # model -> (data section, model input shape); small shapes keep g++ and training quick
    "lenet": ({"name": "digits", "n_train": 300, "n_test": 40}, [8, 8, 1]),
    "vgg_tiny": ({"name": "synthetic", "shape": [16, 16, 3], "samples": 240, "classes": 5}, [16, 16, 3]),
    "resnet_tiny": ({"name": "synthetic", "shape": [8, 8, 3], "samples": 240, "classes": 5}, [8, 8, 3]),
}
BITS = (4, 8)
IO_TYPES = ("io_parallel", "io_stream")
BACKENDS = ("Vivado", "Vitis")


def zoo_config(model: str, bits: int, io_type: str = "io_parallel", backend: str = "Vivado"):
    data, shape = ZOO_CASES[model]
    return config_from_dict(
        {
            "seed": 2,
            "data": data,
            "model": {"name": model, "input_shape": shape, "weight_bits": bits, "act_bits": bits},
            "train": {"epochs": 1},
            "hls": {"io_type": io_type, "backend": backend, "csim_opt": "O1"},
        },
        f"zoo:{model}:{bits}",
    )


@pytest.fixture(scope="session")
def trained_zoo():
    """(model name, bits) -> (trained QKeras model, dataset), trained once per session."""
    import tempfile
    from pathlib import Path

    from flow.state import RunState
    from flow.steps import need_data, step_load, step_train

    zoo = {}
    with tempfile.TemporaryDirectory() as tmp:
        for model in ZOO_CASES:
            for bits in BITS:
                cfg = zoo_config(model, bits)
                state = RunState(out=Path(tmp) / f"{model}_{bits}")
                state = step_train(step_load(state, cfg), cfg)
                state = need_data(state, cfg, "test")
                zoo[(model, bits)] = (state.model, state.data)
    return zoo


@pytest.fixture(scope="session")
def compiled_zoo(trained_zoo, tmp_path_factory):
    """(model, bits, io_type, backend) -> HlsProject, written one by one and compiled in one pool."""
    from flow.hardware.boards import resolve_board
    from flow.hls import compile_projects, project_of, write_project

    root = tmp_path_factory.mktemp("zoo_projects")
    projects = {}
    for (model, bits), (keras_model, _) in trained_zoo.items():
        for io_type in IO_TYPES:
            for backend in BACKENDS:
                cfg = zoo_config(model, bits, io_type, backend)
                out = root / f"{model}_{bits}_{io_type}_{backend}"
                graph, _ = write_project(keras_model, cfg.hls, resolve_board(cfg.board), 8, out)
                projects[(model, bits, io_type, backend)] = project_of(graph, cfg.hls, out)
    compile_projects(list(projects.values()), "O1")
    return projects


# ---- hardened zoo models in C-sim: every model x every mode/policy, plus io_stream and Vitis variants ----

HARDEN_MODES = (
    ("selective", "min"),
    ("selective", "range"),
    ("selective_tmr", "vote"),
    ("full_dmr", "min"),
    ("full_tmr", "vote"),
)
HARDEN_TARGETS = (  # (model, bits, io_type, backend)
    *((model, 4, "io_parallel", "Vivado") for model in ZOO_CASES),
    ("lenet", 8, "io_stream", "Vitis"),
    ("resnet_tiny", 8, "io_stream", "Vivado"),
    ("vgg_tiny", 8, "io_parallel", "Vitis"),
)
HARDEN_CASES = tuple((*target, mode, policy) for target in HARDEN_TARGETS for mode, policy in HARDEN_MODES)


@pytest.fixture(scope="session")
def compiled_hardened(trained_zoo, tmp_path_factory):
    """case -> (hardened Keras model, HlsProject): hardened by l1 ranking (ratio 0.3), compiled in one pool."""
    from flow.harden import harden_model, select_channels
    from flow.hardware.boards import resolve_board
    from flow.hls import compile_projects, project_of, write_project
    from flow.rank import Ranking, norm_scores

    root = tmp_path_factory.mktemp("hardened_projects")
    built = {}
    for case in HARDEN_CASES:
        model_name, bits, io_type, backend, mode, policy = case
        keras_model, ds = trained_zoo[(model_name, bits)]
        scores = norm_scores(keras_model, 1)
        ranking = Ranking("l1", scores, {name: "x" for name in scores}, 0.0)
        cfg = config_from_dict({"harden": {"mode": mode, "policy": policy}}).harden
        hardened = harden_model(keras_model, select_channels(keras_model, ranking, cfg), cfg, ds.x_train)
        run_cfg = zoo_config(model_name, bits, io_type, backend)
        out = root / "_".join(map(str, case))
        graph, _ = write_project(hardened, run_cfg.hls, resolve_board(run_cfg.board), 8, out)
        built[case] = (hardened, project_of(graph, run_cfg.hls, out))
    compile_projects([project for _, project in built.values()], "O1")
    return built


# ---- fault injection: a tiny LeNet (io_parallel and io_stream) and its vote-hardened twin, compiled once ----


@pytest.fixture(scope="session")
def fi_runs(tmp_path_factory):
    """name -> (run directory, RunConfig, RunState) for 'base', 'stream' and 'tmr' (full TMR, vote)."""
    from flow.hardware.boards import resolve_board
    from flow.hls import compile_projects, project_of, write_project
    from flow.steps import run

    root = tmp_path_factory.mktemp("fi_runs")
    variants = {
        "base": {},
        "stream": {"hls": {"io_type": "io_stream", "csim_opt": "O1"}},
        "tmr": {"steps": ["load", "train", "harden"], "harden": {"mode": "full_tmr"}},
    }
    runs, projects = {}, []
    for name, extra in variants.items():
        data = {**TINY, "hls": {"csim_opt": "O1"}, "inject": {"samples": 40, "workers": 1}, **extra}
        cfg = config_from_dict(data, name)
        out = root / name
        state = run(cfg, out, list(cfg.steps or ["load", "train"]))
        graph, _ = write_project(state.model, cfg.hls, resolve_board(cfg.board), 8, out / "convert" / "hls_project")
        project = project_of(graph, cfg.hls, out / "convert" / "hls_project")
        project.save(out / "convert" / "project.json")
        state.record(project=out / "convert" / "project.json")
        runs[name] = (out, cfg, state)
        projects.append(project)
    compile_projects(projects, "O1")
    return runs


# ---- one small `ftflow compare` run shared by the comparison, report and export tests ----

COMPARE = {
    "seed": 1,
    "data": {"name": "digits", "n_train": 300, "n_test": 40},
    "model": {"name": "lenet", "input_shape": [8, 8, 1], "filters": [2, 4], "dense_units": 8},
    "train": {"epochs": 2},
    "hls": {"csim_opt": "O1"},
    "rank": {"method": "l1"},
    "prune": {"epochs": 1},
    "inject": {"sampling": "count", "count": 80, "samples": 30},
    "compare": {
        "variants": ["selective_min", "full_tmr", "pruned", "pruned_l1", "pruned_hardened"],
        "ratios": [0.3, 0.6],
        "budgets": [20],
        "prune_ratios": [0.5],
    },
}


@pytest.fixture(scope="session")
def compare_run(tmp_path_factory):
    """(config path, run directory, printed output) of ``ftflow compare`` on a tiny LeNet."""
    import contextlib
    import io

    import yaml

    from flow.cli import main

    base = tmp_path_factory.mktemp("compare")
    path = base / "cfg.yaml"
    path.write_text(yaml.safe_dump(COMPARE))
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["compare", str(path), "--out", str(base / "out")]) == 0
    return path, base / "out", printed.getvalue()
