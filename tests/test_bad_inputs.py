"""Issue 15: every bad input is exit status 2 and one ``error: ...`` line naming the culprit; nothing computed is lost.

One table, one case per line: (name, setup, culprit). ``setup(ctx)`` builds the bad input under ``ctx.tmp`` and
returns the argv and the files that must come out of the failed command byte for byte unchanged."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml

from flow.cli import main

DATA = {"name": "digits", "n_train": 200, "n_test": 20}
MODEL = {"name": "lenet", "input_shape": [8, 8, 1], "filters": [2, 4], "dense_units": 8}
BASE = {"data": DATA, "model": MODEL, "train": {"epochs": 1}, "hls": {"csim_opt": "O0"}, "steps": ["load"]}
KEPT = ("config.yaml", "manifest.json", "load/model.h5", "convert/project.json", "convert/hls_config.json")


@dataclass
class Ctx:
    tmp: Path
    monkeypatch: pytest.MonkeyPatch
    request: pytest.FixtureRequest
    read_only: list[Path]  # directories made read-only, writable again after the case

    @property
    def converted(self) -> Path:
        """A converted run shared by the module (built by the first case that asks)."""
        return self.request.getfixturevalue("converted")


Setup = Callable[[Ctx], tuple[list[str], list[Path]]]


def _cfg(ctx: Ctx, text: str | bytes | None = None, name: str = "cfg.yaml", **sections: object) -> str:
    """Write BASE updated with ``sections`` (or the raw ``text``) as a config file; returns its path."""
    path = ctx.tmp / name
    if text is None:
        path.write_text(yaml.safe_dump({**BASE, **sections}))
    else:
        path.write_bytes(text.encode() if isinstance(text, str) else text)
    return str(path)


def _run(ctx: Ctx, **sections: object) -> tuple[list[str], list[Path]]:
    return ["run", _cfg(ctx, **sections), "--out", str(ctx.tmp / "out")], []


def _file(ctx: Ctx, name: str = "a_file") -> Path:
    path = ctx.tmp / name
    path.write_text("not a directory\n")
    return path


def _read_only_dir(ctx: Ctx, name: str) -> Path:
    """A directory this process cannot write into. Root ignores permission bits: then os.access is made to answer
    as for an unprivileged user on that directory (the under-a-file cases exercise a real OS refusal)."""
    path = ctx.tmp / name
    path.mkdir(exist_ok=True)
    path.chmod(0o555)
    ctx.read_only.append(path)
    probe = path / "probe"
    try:
        probe.write_text("")
        privileged = True
        probe.unlink()
    except PermissionError:
        privileged = False
    if privileged:
        real = os.access
        denied = str(path.absolute())

        def access(p: object, mode: int, **kw: object) -> bool:
            return not (str(Path(p).absolute()).startswith(denied) and mode & os.W_OK) and real(p, mode, **kw)

        ctx.monkeypatch.setattr(os, "access", access)
    return path


def _npz_bytes(ctx: Ctx, content: bytes) -> tuple[list[str], list[Path]]:
    path = ctx.tmp / "data.npz"
    path.write_bytes(content)
    return _run(ctx, data={"name": "npz", "path": str(path)})


def _npz(ctx: Ctx, **arrays: np.ndarray) -> tuple[list[str], list[Path]]:
    path = ctx.tmp / "data.npz"
    np.savez(path, **arrays)
    return _run(ctx, data={"name": "npz", "path": str(path)})


def _npz_xy(ctx: Ctx, y_train: np.ndarray) -> tuple[list[str], list[Path]]:
    """50 training and 20 test images, with the training labels given."""
    return _npz(ctx, x_train=_images(50), y_train=y_train, x_test=_images(20), y_test=_labels(20))


def _shape(ctx: Ctx, shape: list) -> tuple[list[str], list[Path]]:
    return _run(ctx, model={**MODEL, "input_shape": shape})


def _images(n: int) -> np.ndarray:
    return np.random.default_rng(0).uniform(size=(n, 8, 8, 1)).astype(np.float32)


def _labels(n: int, big: int | None = None) -> np.ndarray:
    y = np.arange(n) % 10
    if big is not None:
        y[3] = big
    return y


def _rerun_inject(ctx: Ctx, **inject: object) -> tuple[list[str], list[Path]]:
    """``ftflow inject`` on the converted run with a bad inject.*; the run's artefacts must survive untouched."""
    cfg = _cfg(ctx, inject={"workers": 1, "samples": 10, **inject}, steps=["load", "convert"])
    return ["inject", cfg, "--out", str(ctx.converted)], [ctx.converted / k for k in KEPT]


def _run_dir(ctx: Ctx, config: bytes | str | None = None) -> Path:
    """A run directory for ``ftflow report`` (its config.yaml as given)."""
    out = ctx.tmp / "run"
    (out / "verify").mkdir(parents=True)
    if config is not None:
        (out / "config.yaml").write_bytes(config.encode() if isinstance(config, str) else config)
    return out


def _report_read_only(ctx: Ctx) -> tuple[list[str], list[Path]]:
    out = ctx.tmp / "run"
    out.mkdir()
    (out / "manifest.json").write_text("{}")
    return ["report", str(_read_only_dir(ctx, "run"))], [out / "manifest.json"]


def _report_json(ctx: Ctx) -> tuple[list[str], list[Path]]:
    out = _run_dir(ctx)
    (out / "verify" / "report.json").write_text('{"bit_exact": tr')
    return ["report", str(out)], [out / "verify" / "report.json"]


def _report_dir_is_file(ctx: Ctx) -> tuple[list[str], list[Path]]:
    out = _run_dir(ctx)
    (out / "report").write_text("x")
    return ["report", str(out)], [out / "report"]


def _out_key_is_file(ctx: Ctx) -> tuple[list[str], list[Path]]:
    return ["run", _cfg(ctx, out=str(_file(ctx)))], [ctx.tmp / "a_file"]


def _compare_out_under_file(ctx: Ctx) -> tuple[list[str], list[Path]]:
    return ["compare", _cfg(ctx), "--out", str(_file(ctx) / "sub")], []


def _inject_samples_no_n_test(ctx: Ctx) -> tuple[list[str], list[Path]]:
    data = {"name": "digits"}  # 1797 images, a quarter of them for test: 450
    return ["inject", _cfg(ctx, data=data, inject={"samples": 451}), "--out", str(ctx.tmp / "out")], []


# fmt: off
CASES: list[tuple[str, Setup, str]] = [
    ("config_not_utf8", lambda c: (["run", _cfg(c, b"model: {name: \xff\xfe}\n")], []), "cfg.yaml: not UTF-8"),
    ("huge_int_in_float_key", lambda c: _run(c, train={"learning_rate": 10**400}), "train.learning_rate: got an"),
    ("huge_int_literal", lambda c: (["run", _cfg(c, "seed: 1" + "0" * 5000 + "\n")], []), "4300 digits"),
    ("huge_int_in_int_key", lambda c: _run(c, inject={"count": 10**30}), "inject.count: got an integer of about"),
    ("nan_in_float_key", lambda c: (["run", _cfg(c, "train: {learning_rate: .nan}\n")], []), "learning_rate: got nan"),
    ("input_shape_rank_2", lambda c: _shape(c, [8, 8]), "model.input_shape: got [8, 8]; lenet takes"),
    ("input_shape_rank_4", lambda c: _shape(c, [8, 8, 1, 1]), "model.input_shape: got [8, 8, 1, 1]; lenet takes"),
    ("input_shape_negative", lambda c: _shape(c, [8, -8, 1]), "model.input_shape[1]: got -8, allowed range"),
    ("input_shape_zero", lambda c: _shape(c, [8, 8, 0]), "model.input_shape[2]: got 0, allowed range"),
    ("input_shape_float", lambda c: _shape(c, [8, 8.5, 1]), "model.input_shape[1]: got 8.5, expected an integer"),
    ("input_shape_mlp_rank_2", lambda c: _run(c, model={"name": "mlp", "input_shape": [8, 8]}), "mlp takes [F]"),
    ("out_is_a_file", lambda c: (["run", _cfg(c), "--out", str(_file(c))], [c.tmp / "a_file"]), "is a file"),
    ("out_under_a_file", lambda c: (["run", _cfg(c), "--out", str(_file(c) / "x" / "y")], []), "a_file is a file"),
    ("out_read_only", lambda c: (["run", _cfg(c), "--out", str(_read_only_dir(c, "ro") / "o")], []), "not writable"),
    ("out_key_is_a_file", _out_key_is_file, "out (in"),
    ("inject_out_is_a_file", lambda c: (["inject", _cfg(c), "--out", str(_file(c))], []), "--out"),
    ("compare_out_under_file", _compare_out_under_file, "a_file is a file"),
    ("npz_zero_bytes", lambda c: _npz_bytes(c, b""), "data.npz: not a readable .npz file"),
    ("npz_not_a_zip", lambda c: _npz_bytes(c, b"PK\x03\x04garbage"), "data.npz: not a readable .npz file"),
    ("npz_without_arrays", lambda c: _npz(c), "missing array(s) x_train"),
    ("npz_x_y_lengths", lambda c: _npz_xy(c, _labels(40)), "'y_train' must be 50 non-negative integer labels"),
    ("npz_label_1e6", lambda c: _npz_xy(c, _labels(50, big=10**6)), "'y_train' has label 1000000; allowed"),
    ("report_corrupt_config", lambda c: (["report", str(_run_dir(c, "report: [x\n"))], []), "config.yaml: not a"),
    ("report_config_not_utf8", lambda c: (["report", str(_run_dir(c, b"\xff"))], []), "config.yaml: not a readable"),
    ("report_config_list", lambda c: (["report", str(_run_dir(c, "- 1\n"))], []), "report.title is not"),
    ("report_corrupt_json", _report_json, "verify/report.json: not readable JSON"),
    ("report_read_only", _report_read_only, "report directory"),
    ("report_dir_is_a_file", _report_dir_is_file, "report: is a file"),
    ("export_dest_is_a_file", lambda c: (["export", str(c.converted), "--dest", str(_file(c))], []), "--dest"),
    ("inject_samples_n_test", lambda c: _rerun_inject(c, samples=21), "inject.samples: 21 test images"),
    ("inject_samples_test_set", _inject_samples_no_n_test, "the test set of data 'digits' has 450"),
    ("ber_count_huge", lambda c: _rerun_inject(c, model="ber", count=10**7), "inject.count: 10000000 ber trials"),
    ("ber_flips_huge", lambda c: _rerun_inject(c, model="ber", ber=0.5, count=20000), "inject.ber: 0.5 over"),
]
# fmt: on


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Path:
    """A converted, untrained tiny LeNet (its files matter, not its accuracy); the cases rerunning on it keep it."""
    import contextlib
    import io

    base = tmp_path_factory.mktemp("converted")
    cfg = base / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({**BASE, "steps": ["load", "convert"]}))
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["run", str(cfg), "--out", str(base / "out")]) == 0
    return base / "out"


@pytest.mark.parametrize("name, setup, culprit", CASES, ids=[case[0] for case in CASES])
def test_bad_input(name, setup, culprit, tmp_path, monkeypatch, capsys, request):
    """Exit 2, exactly one stderr line 'error: ...' naming the culprit, the listed files unchanged."""
    ctx = Ctx(tmp_path, monkeypatch, request, [])
    try:
        argv, kept = setup(ctx)
        before = {path: path.read_bytes() for path in kept}
        capsys.readouterr()
        start = time.perf_counter()
        status = main(argv)
    finally:
        for path in ctx.read_only:
            path.chmod(0o755)
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2, err
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert culprit in err[0], err[0]
    assert "unexpected" not in err[0]
    assert time.perf_counter() - start < 30, "refused, but only after real work"
    for path, content in before.items():
        assert path.is_file() and path.read_bytes() == content, f"{path} changed or lost"


def test_ber_bound_per_fault_before_any_fault_is_drawn():
    """The per-fault bound: a big model at ber 0.5 (millions of flips per fault) is refused at once, not listed."""
    from flow.config import config_from_dict
    from flow.errors import FlowError
    from flow.faultlist import build_fault_list

    table = [{"name": "w2", "layer": "conv", "kind": "weight", "length": 1_000_000, "width": 8}]
    cfg = config_from_dict({"inject": {"model": "ber", "ber": 0.5}}).inject
    start = time.perf_counter()
    with pytest.raises(FlowError, match=r"inject\.ber: 0\.5 over 8000000 targeted bits .* at most 10000"):
        build_fault_list(table, cfg, 0)
    assert time.perf_counter() - start < 1


def test_usable_out_dir_keeps_what_is_there(tmp_path):
    """The write probe leaves an existing directory's files as they were and adds none."""
    from flow.outdir import usable_out_dir

    (tmp_path / "earlier.json").write_text("{}")
    assert usable_out_dir(tmp_path / "new" / "deep") == tmp_path / "new" / "deep"
    assert usable_out_dir(tmp_path) == tmp_path
    assert sorted(p.name for p in tmp_path.iterdir()) == ["earlier.json", "new"]
    assert (tmp_path / "earlier.json").read_text() == "{}"
