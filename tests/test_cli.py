"""The CLI end to end and its error paths: exit status 2 and one 'error: ...' line for bad input."""

import json
import subprocess
import sys

import numpy as np
import pytest
import yaml

from flow.cli import main


def _write(tmp_path, data, name="cfg.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def _error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("error: ")
    return err[0]


@pytest.mark.csim
@pytest.mark.slow
def test_run_end_to_end_then_resume(tmp_path, tiny_cfg_dict):
    """Console script runs all steps; a second call reuses the first run's model and project."""
    cfg = _write(tmp_path, tiny_cfg_dict)
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "flow.cli", "run", str(cfg), "--out", str(out)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert "bit-exact C-sim vs QKeras: yes on 60 test samples" in proc.stdout
    report = json.loads((out / "verify" / "report.json").read_text())
    assert report["bit_exact"] is True and report["n_samples"] == 60
    assert report["argmax_agreement"] == 1.0 and report["max_abs_diff"] == 0.0
    for artefact in ["load/model.h5", "load/data.json", "train/model.h5", "train/history.json",
                     "convert/hls_config.json", "convert/project.json", "convert/hls_project/build_lib.sh",
                     "verify/logits_csim.npy", "config.yaml"]:  # fmt: skip
        assert (out / artefact).exists(), artefact
    times = json.loads((out / "time_per_step.json").read_text())
    assert set(times) == {"load", "train", "rank", "convert", "verify"}
    assert yaml.safe_load((out / "config.yaml").read_text())["out"] == str(out)  # the --out actually used
    assert "normalize.json" in {p.name for p in (out / "load").iterdir()}
    keras_logits = np.load(out / "verify" / "logits_keras.npy")

    (out / "verify" / "report.json").unlink()
    assert main(["run", str(cfg), "--out", str(out), "--steps", "verify"]) == 0
    assert json.loads((out / "verify" / "report.json").read_text())["bit_exact"] is True
    np.testing.assert_array_equal(np.load(out / "verify" / "logits_keras.npy"), keras_logits)


def test_steps_and_boards_listing(capsys):
    assert main(["steps"]) == 0
    listing = capsys.readouterr().out
    for step in ("load", "train", "convert", "verify"):
        assert step in listing
    assert main(["boards"]) == 0
    assert "xc7z020clg400-1" in capsys.readouterr().out


HEAVY = ("tensorflow", "qkeras", "hls4ml", "da4ml", "matplotlib", "scipy", "sklearn", "distributed")


@pytest.mark.parametrize("argv", [["--help"], ["config", "--reference"], ["steps"], ["boards"]], ids=" ".join)
def test_help_and_listings_import_no_heavy_library(argv):
    """ftflow --help, config --reference, steps and boards stay light: none of them imports TensorFlow, hls4ml, ..."""
    probe = ("import contextlib, io, sys\nfrom flow.cli import main\nwith contextlib.redirect_stdout(io.StringIO()):\n"
             f"    with contextlib.suppress(SystemExit):\n        main({argv!r})\n"
             f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]", f"ftflow {' '.join(argv)} imported {proc.stdout.strip()}"


def test_missing_config(tmp_path, capsys):
    assert main(["run", str(tmp_path / "none.yaml")]) == 2
    assert "config file not found" in _error_line(capsys)


def test_bad_yaml(tmp_path, capsys):
    path = tmp_path / "broken.yaml"
    path.write_text("model: [lenet\n")
    assert main(["run", str(path)]) == 2
    assert "broken.yaml: not valid YAML" in _error_line(capsys)


def test_unknown_key(tmp_path, capsys, tiny_cfg_dict):
    tiny_cfg_dict["train"]["epoch"] = 3
    assert main(["run", str(_write(tmp_path, tiny_cfg_dict))]) == 2
    assert "unknown key 'train.epoch' (did you mean 'epochs'?)" in _error_line(capsys)


def test_unknown_step(tmp_path, capsys, tiny_cfg_dict):
    assert main(["run", str(_write(tmp_path, tiny_cfg_dict)), "--steps", "load,verfy"]) == 2
    assert "unknown step 'verfy' (did you mean 'verify'?)" in _error_line(capsys)


def test_step_without_its_inputs(tmp_path, capsys, tiny_cfg_dict):
    cfg = _write(tmp_path, tiny_cfg_dict)
    assert main(["run", str(cfg), "--out", str(tmp_path / "empty"), "--steps", "verify"]) == 2
    assert "step 'verify' needs the model from step 'load'" in _error_line(capsys)


def test_unknown_board(tmp_path, capsys, tiny_cfg_dict):
    tiny_cfg_dict["board"] = {"name": "pynqz2"}
    cfg = _write(tmp_path, tiny_cfg_dict)
    assert main(["run", str(cfg), "--out", str(tmp_path / "o"), "--steps", "load,convert"]) == 2
    line = _error_line(capsys)
    assert "board 'pynqz2' is unknown; known boards: alveo-u250, arty-a7-100t, pynq-z2, zcu104" in line
    assert (tmp_path / "o" / "load" / "model.h5").exists()  # what load computed is kept


def _save_user_model(tmp_path, *layers, name="user.h5"):
    import tensorflow as tf

    inp = tf.keras.layers.Input((8, 8, 1), name="img")
    x = inp
    for layer in layers:
        x = layer(x)
    path = tmp_path / name
    tf.keras.Model(inp, x).save(path)
    return path


def _run_user_model(tmp_path, tiny_cfg_dict, path):
    tiny_cfg_dict["model"] = {"path": str(path)}
    return main(["run", str(_write(tmp_path, tiny_cfg_dict)), "--out", str(tmp_path / "o"), "--steps", "load"])


def test_unquantized_user_model(tmp_path, capsys, tiny_cfg_dict):
    import tensorflow as tf

    path = _save_user_model(tmp_path, tf.keras.layers.Flatten(name="flat"), tf.keras.layers.Dense(10, name="head"))
    assert _run_user_model(tmp_path, tiny_cfg_dict, path) == 2
    assert "layer 'head' (Dense) is not quantized: use QDense" in _error_line(capsys)


def test_unsupported_layer_in_user_model(tmp_path, capsys, tiny_cfg_dict):
    import tensorflow as tf

    path = _save_user_model(tmp_path, tf.keras.layers.UpSampling2D(name="grow"))
    assert _run_user_model(tmp_path, tiny_cfg_dict, path) == 2
    assert "layer 'grow' (UpSampling2D) is not supported" in _error_line(capsys)


def test_data_model_shape_mismatch(tmp_path, capsys, tiny_cfg_dict):
    import tensorflow as tf
    from qkeras import QDense, quantized_bits

    q = quantized_bits(6, 0, alpha=1)
    head = QDense(3, kernel_quantizer=q, bias_quantizer=q, name="head")
    path = _save_user_model(tmp_path, tf.keras.layers.Flatten(name="flat"), head)
    assert _run_user_model(tmp_path, tiny_cfg_dict, path) == 2
    assert "data/model shape mismatch: the model has 3 outputs, data 'digits' has 10 classes" in _error_line(capsys)


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(Exception, match="config file not found"):
        main(["run", str(tmp_path / "none.yaml"), "--debug"])
