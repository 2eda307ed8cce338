"""inject.engine: dask on a LocalCluster of 2 workers: the same rows as the local engine, one library load per
worker, a SIGKILLed client resumed to the uninterrupted database, and inject.stop_at_margin stopping at the same
fault after a resume (rows arriving in any order)."""

from __future__ import annotations

import json
import logging
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from processes import alive, descendants, stored_rows

from flow.campaign import CampaignDB, MarginStop, counted_rows, half_width, run_campaign
from flow.config import FaultSampling, InjectConfig, config_from_dict
from flow.csim import FaultableLibrary
from flow.errors import FlowError
from flow.faultlist import build_fault_list
from flow.hls import HlsProject

pytestmark = [pytest.mark.csim, pytest.mark.slow]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """A tiny lenet run up to convert: (run directory, its config as a dict, project, x, y, golden, library)."""
    from conftest import TINY

    from flow.data import load_dataset
    from flow.steps import run

    data = {**TINY, "hls": {"csim_opt": "O1"}, "inject": {"samples": 40, "workers": 1}}
    out = tmp_path_factory.mktemp("dask") / "run"
    cfg = config_from_dict(data, "tiny")
    run(cfg, out, ["load", "train", "convert"])
    test = load_dataset(cfg.data, cfg.seed)
    x, y = test.x_test[:40], test.y_test[:40]
    project = HlsProject.load(out / "convert" / "project.json")
    lib = FaultableLibrary(project)
    return out, yaml.safe_load((out / "config.yaml").read_text()), project, x, y, lib.predict(x), lib


@pytest.fixture(scope="module")
def scheduler():
    """The address of a LocalCluster of 2 single-thread worker processes on localhost."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None, host="127.0.0.1",
                      silence_logs=logging.ERROR) as cluster:  # fmt: skip
        yield cluster.scheduler_address


def _campaign(converted, path: Path, faults, **kw) -> tuple[list[tuple], dict]:
    """(rows, run_campaign's report) of a campaign on ``faults`` in a new database at ``path``."""
    _, _, project, x, y, golden, _ = converted
    db = CampaignDB(path)
    try:
        db.ensure("c", {}, faults, ["x"] * len(faults))
        report = run_campaign(project, faults, x, y, golden, db, "c", kw.pop("workers", 1), kw.pop("chunk", 20),
                              progress=False, **kw)  # fmt: skip
        return [tuple(r[k] for k in ("fault_id", "outcome", "n_critical", "n_differ", "accuracy")) for r in
                db.rows("c")], report  # fmt: skip
    finally:
        db.close()


def _worker_info(address: str) -> dict:
    from distributed import Client

    from flow.dask_engine import worker_info

    with Client(address) as client:
        return client.run(worker_info)


@pytest.mark.parametrize("evaluation", ["fast", "full"])
def test_dask_rows_equal_the_local_engine_and_each_worker_loads_once(converted, scheduler, tmp_path, evaluation):
    lib = converted[-1]
    faults = build_fault_list(lib.arrays, InjectConfig(sampling=FaultSampling.COUNT, count=200), 3)
    local, _ = _campaign(converted, tmp_path / "local.sqlite", faults)
    before = _worker_info(scheduler)
    rows, report = _campaign(converted, tmp_path / "dask.sqlite", faults, workers=2, chunk=10,
                             evaluation=evaluation, engine="dask", scheduler=scheduler)  # fmt: skip
    after = _worker_info(scheduler)
    assert len(rows) == 200 and rows == local
    assert report["engine"] == "dask" and report["evaluation"]["mode"] == evaluation
    loads = [after[w]["loads"] - before[w]["loads"] for w in after]
    assert sorted(loads) == [1, 1], loads  # 20 tasks, both workers used, each loaded the library once
    assert {info["mode"] for info in after.values()} == {evaluation}  # fast evaluation ran on the workers


def test_sigkilled_client_reruns_to_the_uninterrupted_database(converted, tmp_path):
    from flow.steps import run

    out, plain, *_ = converted
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    for target in (killed, clean):
        shutil.copytree(out, target, ignore=shutil.ignore_patterns("inject"))
    # 40 tasks: the kill once 2 are stored always lands in the middle (38 more cannot finish within a poll)
    plain["inject"].update({"sampling": "count", "count": 800, "chunk": 20, "workers": 2, "engine": "dask"})
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(plain))
    command = [sys.executable, "-m", "flow.cli", "inject", str(cfg), "--out", str(killed)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, workers = time.time() + 120, []
    while time.time() < deadline and len(stored_rows(killed)) < 40 and proc.poll() is None:
        workers = descendants(proc.pid) or workers
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = stored_rows(killed)
    assert 40 <= len(partial) < 800, len(partial)
    gone = time.time() + 20  # the LocalCluster's worker processes exit once their parent is gone
    while time.time() < gone and any(alive(pid) for pid in workers):
        time.sleep(0.1)
    assert workers and not any(alive(pid) for pid in workers)
    rerun = subprocess.run(command, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    plain["inject"].update({"engine": "local", "workers": 1})  # the uninterrupted reference: this process, serial
    run(config_from_dict(plain, "clean"), clean, ["inject"])
    resumed, uninterrupted = stored_rows(killed), stored_rows(clean)
    assert len(resumed) == 800 and resumed == uninterrupted and set(partial) < set(resumed)
    summary = json.loads((killed / "inject" / "summary.json").read_text())
    assert summary["engine"]["name"] == "dask" and summary["total"]["n_faults"] == 800
    assert summary["timing"]["evaluated"] == 800 - len(partial)  # the stored rows were not evaluated again


def test_stop_at_margin_stops_at_the_same_fault_after_a_resume_on_dask(converted, scheduler, tmp_path):
    lib = converted[-1]
    faults = build_fault_list(lib.arrays, InjectConfig(sampling=FaultSampling.COUNT, count=800), 3)
    stop = MarginStop(0.06, 20, 1)
    rows, report = _campaign(converted, tmp_path / "whole.sqlite", faults, stop=stop)
    db = CampaignDB(tmp_path / "whole.sqlite")
    counted, why = counted_rows(db, "c", stop, len(faults))
    db.close()
    n = why["faults"]
    assert why["stopped"] and 20 <= n < 800 and n % 20 == 0 and report["evaluated"] == len(rows) == n
    assert {r["fault_id"] for r in counted} == set(stop.order(800)[:n])
    k = {r[0]: r[1] == "critical" for r in rows}
    prefix = [k[i] for i in stop.order(800)[:n]]
    assert why["half_width"] == half_width(sum(prefix), n) <= 0.06 < half_width(sum(prefix[:-20]), n - 20)
    assert why["reason"] == f"stopped at margin 0.06 after {n} faults, half-width {why['half_width']:.4f}"
    # an interrupted run: every other stored row, and rows past the stop point, stored out of order
    whole = _campaign(converted, tmp_path / "all.sqlite", faults)[0]
    keep = [r for r in whole if r[0] % 2 or r[0] not in set(stop.order(800)[:n])]
    db = CampaignDB(tmp_path / "resumed.sqlite")
    db.ensure("c", {}, faults, ["x"] * len(faults))
    db.add("c", [(r[0], dict(zip(("outcome", "n_critical", "n_differ", "accuracy"), r[1:], strict=True)))
                 for r in keep[::-1]])  # fmt: skip
    db.close()
    _campaign_on(converted, tmp_path / "resumed.sqlite", faults, stop=stop, workers=2, chunk=20, engine="dask",
                 scheduler=scheduler)  # fmt: skip
    db = CampaignDB(tmp_path / "resumed.sqlite")
    again, why_again = counted_rows(db, "c", stop, len(faults))
    db.close()
    assert why_again == why and again == counted  # past the stop point: stored, not counted


def _campaign_on(converted, path: Path, faults, **kw) -> dict:
    """run_campaign on an existing database (campaign 'c')."""
    _, _, project, x, y, golden, _ = converted
    db = CampaignDB(path)
    try:
        return run_campaign(project, faults, x, y, golden, db, "c", kw.pop("workers"), kw.pop("chunk"),
                            progress=False, **kw)  # fmt: skip
    finally:
        db.close()


def test_unreachable_scheduler_and_missing_scheduler_file_name_the_key(converted, tmp_path, monkeypatch):
    import socket

    from flow import dask_engine

    monkeypatch.setattr(dask_engine, "CONNECT_TIMEOUT", 1)
    with socket.socket() as s:  # a free localhost port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    lib = converted[-1]
    faults = build_fault_list(lib.arrays, InjectConfig(sampling=FaultSampling.COUNT, count=4), 3)
    for where, message in ((f"tcp://127.0.0.1:{port}", "cannot reach the Dask scheduler"),
                           (str(tmp_path / "none.json"), "does not exist")):  # fmt: skip
        with pytest.raises(FlowError, match=f"inject.scheduler: .*{message}"):
            _campaign(converted, tmp_path / "c.sqlite", faults, engine="dask", scheduler=where)


def test_compare_gives_every_variant_the_same_engine():
    from flow.compare import case_config, cases

    cfg = config_from_dict({"inject": {"engine": "dask", "scheduler": "tcp://127.0.0.1:8786", "stop_at_margin": 0.05},
                            "compare": {"ratios": [0.25, 0.5], "prune_ratios": [0.5]}})  # fmt: skip
    variants = cases(cfg)
    assert len(variants) > 5
    assert all(case_config(cfg, case)[0].inject == cfg.inject for case in variants)
