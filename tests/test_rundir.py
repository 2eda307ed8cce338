"""Run directories that cannot be corrupted: one writer at a time, atomic artefacts, damaged files named (not a
crash, not mixed in), SIGTERM like Ctrl-C, config errors of convert before anything is removed."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from processes import alive, descendants, stored_rows

from flow.cli import main
from flow.errors import FlowError
from flow.rundir import run_lock, write_atomic, write_json

HOLD = """import sys
from flow.rundir import run_lock
with run_lock(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.read()
"""


@contextlib.contextmanager
def _held_by_another_process(directory: Path):
    """Another process holds ``directory``'s lock for the block; yields its pid."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(directory)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)  # fmt: skip
    try:
        assert proc.stdout.readline().strip() == "held"
        yield proc.pid
    finally:
        proc.communicate("")


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("error: ")
    return err[0]


@pytest.mark.parametrize("command", ["run", "rank", "inject", "compare", "report", "export"])
def test_a_second_writer_exits_at_once_naming_the_holder(tmp_path, capsys, tiny_cfg_dict, command):
    out = tmp_path / "out"
    out.mkdir()
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(tiny_cfg_dict))
    argv = [command, str(out)] if command in ("report", "export") else [command, str(cfg), "--out", str(out)]
    with _held_by_another_process(out) as pid:
        start = time.perf_counter()
        assert main(argv) == 2
        assert time.perf_counter() - start < 5
        line = _error_line(capsys)
        assert line.startswith(f"error: {out} is in use by pid {pid} (started 20"), line
    if command == "report":  # released: the same command works
        assert main(argv) == 0
        assert (out / "report" / "index.html").is_file()


def test_a_comparison_and_its_variant_runs_exclude_each_other(tmp_path, capsys):
    variant = tmp_path / "compare" / "baseline"
    variant.mkdir(parents=True)
    (tmp_path / "manifest.json").write_text("{}")
    with _held_by_another_process(tmp_path) as pid:  # ftflow compare on tmp_path
        assert main(["report", str(variant)]) == 2
        assert f"{tmp_path} is in use by pid {pid}" in _error_line(capsys)
    with (
        _held_by_another_process(variant) as pid,  # ftflow run --out tmp_path/compare/baseline, then compare
        pytest.raises(FlowError, match=f"in use by pid {pid}"),
        run_lock(tmp_path),
    ):
        pass
    with run_lock(tmp_path), run_lock(tmp_path), run_lock(variant):  # re-entrant in one process
        assert (variant / ".ftflow.lock").is_file()


def test_artefacts_are_replaced_whole_or_not_at_all(tmp_path):
    path = tmp_path / "summary.json"
    write_json(path, {"old": 1})
    with pytest.raises(TypeError):
        write_json(path, {"new": 1, "bad": object()})  # fails halfway through
    seen = []

    def failing_writer(tmp: Path) -> None:
        seen.append(tmp)
        tmp.write_text("half a mod")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(tmp_path / "model.h5", failing_writer)
    assert seen[0].parent == tmp_path and seen[0].suffix == ".h5"  # beside it, the writer's format kept
    assert json.loads(path.read_text()) == {"old": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]  # no temporary file left


def test_no_artefact_is_written_in_place():
    """Artefacts go through flow/rundir.py (a grep guard against new in-place writes)."""
    in_place = re.compile(r"^(?!\s*tmp\w*\.).*(\.write_text\((json\.dumps|yaml\.safe_dump)|model\.save\(path)")
    package = Path(__file__).resolve().parent.parent / "flow"
    sources = sorted(package.rglob("*.py"))
    assert package / "hardware" / "rtl.py" in sources  # the subpackages too
    for source in sources:
        bad = [line.strip() for line in source.read_text().splitlines() if in_place.match(line)]
        assert not bad, f"{source.relative_to(package)}: {bad}"


def test_truncated_manifest_and_times_warn_and_count_as_missing(tmp_path, caplog):
    from flow.state import RunState, read_manifest
    from flow.steps import _record_time

    (tmp_path / "manifest.json").write_text('{"model": "train/mod')
    (tmp_path / "time_per_step.json").write_text('{"load": 1.')
    state = RunState(out=tmp_path)
    with caplog.at_level(logging.WARNING):
        assert read_manifest(tmp_path) == {}
        with pytest.raises(FlowError, match=r"needs the model from step 'load'.*run that step first"):
            state.artefact("model", "convert", "load")
        _record_time(tmp_path, "train", 2.5)
    warned = [r.getMessage() for r in caplog.records]
    assert any(str(tmp_path / "manifest.json") in m and "treating it as missing" in m for m in warned), warned
    assert any(str(tmp_path / "time_per_step.json") in m for m in warned), warned
    assert json.loads((tmp_path / "time_per_step.json").read_text()) == {"train": 2.5}
    state.record(model=tmp_path / "manifest.json")  # the next record writes a sound manifest again
    assert read_manifest(tmp_path) == {"model": "manifest.json"}


def test_damaged_campaign_database_is_refused(tmp_path):
    from flow.campaign import CampaignDB

    path = tmp_path / "campaign.sqlite"
    db = CampaignDB(path)
    with db.conn:
        db.conn.executemany("INSERT INTO results VALUES ('c', ?, 'masked', 0, 0, 1.0)", [(i,) for i in range(5000)])
    db.close()
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # killed while the disk filled up, say
    with pytest.raises(FlowError, match=f"{path} is not a readable campaign database.*delete it to start"):
        CampaignDB(path)
    path.write_bytes(b"not sqlite" * 100)
    with pytest.raises(FlowError, match="file is not a database"):
        CampaignDB(path)


# ---- on a converted tiny run ----


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """A tiny lenet run up to convert (the C-sim compiled): (run directory, its config as a dict)."""
    from conftest import TINY

    from flow.config import config_from_dict
    from flow.steps import run

    data = {**TINY, "hls": {"csim_opt": "O1"}, "inject": {"samples": 40, "workers": 1}}
    out = tmp_path_factory.mktemp("rundir") / "run"
    run(config_from_dict(data, "tiny"), out, ["load", "train", "convert"])
    return out, yaml.safe_load((out / "config.yaml").read_text())


def _copy(converted, tmp_path: Path) -> tuple[Path, dict]:
    out, plain = converted
    target = tmp_path / "run"
    shutil.copytree(out, target)
    return target, json.loads(json.dumps(plain))


@pytest.mark.csim
@pytest.mark.slow
def test_truncated_or_changed_library_is_refused_not_a_crash(converted, tmp_path):
    from flow.csim import LIBRARY_RECORD, CSimLibrary
    from flow.hls import HlsProject

    out, _ = _copy(converted, tmp_path)
    project = HlsProject.load(out / "convert" / "project.json")
    assert project.directory == (out / "convert" / "hls_project").resolve()
    library = project.library()
    assert json.loads((project.directory / LIBRARY_RECORD).read_text())["size"] == library.stat().st_size
    data = library.read_bytes()
    library.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # same size, other content
    with pytest.raises(FlowError, match=f"{library} is changed since it was built.*run the convert step again"):
        CSimLibrary(project)
    (project.directory / LIBRARY_RECORD).unlink()  # no record (an older run): the ELF headers still tell
    library.write_bytes(data[: len(data) // 2])
    with pytest.raises(FlowError, match=f"{library} is truncated .*run the convert step again"):
        CSimLibrary(dataclasses.replace(project))


COLUMNS = "fault_id, outcome, n_critical, n_differ, accuracy"  # a row, as the campaign stored it


def _terminate_after(command: list[str], out: Path, rows: int) -> tuple[int, str, list[int]]:
    """Start ``command``, send SIGTERM once the campaign holds ``rows`` rows: (exit status, stderr, its workers)."""
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and len(stored_rows(out, COLUMNS)) < rows and proc.poll() is None:
        time.sleep(0.05)
    workers = descendants(proc.pid)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err, workers


@pytest.mark.csim
@pytest.mark.slow
def test_sigterm_stops_a_campaign_like_ctrl_c_and_it_resumes(converted, tmp_path):
    out, plain = _copy(converted, tmp_path)
    # every bit of the model: a campaign far longer than the test, so SIGTERM always lands in the middle of it
    plain["inject"].update({"sampling": "count", "count": 10**6, "chunk": 2, "workers": 2})
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(plain))
    command = [sys.executable, "-m", "flow.cli", "inject", str(cfg), "--out", str(out)]
    status, err, workers = _terminate_after(command, out, 10)
    assert status == 143, err
    assert err.strip().splitlines() == ["error: terminated (SIGTERM); rerun the same command to resume"]
    gone = time.time() + 10  # the pool's workers and multiprocessing's resource tracker end right after it
    while time.time() < gone and any(alive(pid) for pid in workers):
        time.sleep(0.1)
    assert workers and not any(alive(pid) for pid in workers)  # the pool was stopped, no orphan
    kept = set(stored_rows(out, COLUMNS))
    assert len(kept) >= 10
    status, err, _ = _terminate_after(command, out, len(kept) + 10)  # the rerun goes on from where it stopped
    assert status == 143, err
    resumed = stored_rows(out, COLUMNS)
    assert len(resumed) == len(set(resumed)) and len({r[0] for r in resumed}) == len(resumed)  # no fault twice
    assert kept < set(resumed)


@pytest.mark.csim
@pytest.mark.slow
@pytest.mark.parametrize(
    ("change", "message"),
    [({"board": {"name": "pynqz3"}}, "board 'pynqz3' is unknown"),
     ({"hls": {"csim_opt": "O1", "layers": {"conv9": {"reuse_factor": 2}}}}, "hls.layers: no layer named 'conv9'")],
)  # fmt: skip
def test_config_error_of_convert_keeps_the_old_project(converted, tmp_path, capsys, change, message):
    from flow.state import read_manifest

    out, plain = _copy(converted, tmp_path)
    before = read_manifest(out)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({**plain, **change}))
    assert main(["run", str(cfg), "--out", str(out), "--steps", "convert"]) == 2
    assert message in _error_line(capsys)
    assert read_manifest(out)["project"] == before["project"] == "convert/project.json"
    assert (out / "convert" / "project.json").is_file()
    assert list((out / "convert" / "hls_project" / "firmware").glob("*.so"))
    assert main(["export", str(out)]) == 0  # what export crashed on before
    assert (out / "export" / "run" / "EXPORT.md").is_file()
