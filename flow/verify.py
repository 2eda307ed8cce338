"""Bit-exact comparison of C-sim and QKeras logits, with a per-layer trace to locate the first mismatch."""

from __future__ import annotations

import contextlib
import ctypes
from pathlib import Path

import numpy as np

from flow.config import HlsConfig
from flow.hardware.boards import Board
from flow.hls import build_graph, compile_project, project_of
from flow.training import model_outputs


def compare_logits(keras_logits: np.ndarray, csim_logits: np.ndarray, labels: np.ndarray | None = None) -> dict:
    """Bit-exactness, argmax agreement and max |diff| of two (N, classes) arrays."""
    diff = np.abs(keras_logits.astype(np.float64) - csim_logits.astype(np.float64))
    report = {
        "bit_exact": bool(np.array_equal(keras_logits, csim_logits)),
        "n_samples": len(keras_logits),
        "argmax_agreement": float(np.mean(keras_logits.argmax(1) == csim_logits.argmax(1))),
        "max_abs_diff": float(diff.max()) if diff.size else 0.0,
        "n_samples_differing": int(np.any(diff > 0, axis=1).sum()),
    }
    if labels is not None:
        report["keras_accuracy"] = float(np.mean(keras_logits.argmax(1) == labels))
        report["csim_accuracy"] = float(np.mean(csim_logits.argmax(1) == labels))
    return report


def keras_layer_outputs(model, x: np.ndarray) -> dict[str, np.ndarray]:
    """Output of every non-input layer of a Keras model, by layer name."""
    import tensorflow as tf  # TensorFlow: ~2 s to import

    layers = [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]
    probe = tf.keras.Model(model.inputs, [layer.output for layer in layers])
    outputs = model_outputs(probe, x)
    outputs = outputs if isinstance(outputs, list) else [outputs]
    return {layer.name: np.asarray(out) for layer, out in zip(layers, outputs, strict=True)}


TRACE_OPT = "O1"  # -O0 compiles the top function ~15 % faster but runs ~25x slower (ResNet-8: 5.5 s per image)


def trace_layers(model, x: np.ndarray, cfg: HlsConfig, board: Board, input_frac_bits: int, workdir: Path) -> list:
    """Per-layer max |C-sim - QKeras| in model order, from a trace-enabled copy of the project in ``workdir``.

    The copy is written once with hls4ml's trace code and built at ``TRACE_OPT`` through the C-sim cache (the
    convolutions' im2col units are the converted project's, so usually only the top function compiles); hls4ml's
    ``ModelGraph.trace`` then runs on that library instead of rewriting the project and running build_lib.sh -O3."""
    graph, _ = build_graph(model, cfg, board, input_frac_bits, workdir, trace=True)
    graph.config.trace_output = True
    workdir.mkdir(parents=True, exist_ok=True)
    with open(workdir.parent / f"{workdir.name}.log", "a") as log_file, contextlib.redirect_stdout(log_file):
        graph.write()
    library = compile_project(project_of(graph, cfg, workdir), TRACE_OPT, cfg.csim_cache)
    graph._top_function_lib = ctypes.cdll.LoadLibrary(str(library))  # what ModelGraph._compile would load
    graph.compile = lambda: None  # built and loaded: hls4ml's trace must not write and build it again
    with open(workdir.parent / "trace.log", "w") as log_file, contextlib.redirect_stdout(log_file):
        _, hls_trace = graph.trace(np.ascontiguousarray(x, dtype=np.float32))
    keras_trace = keras_layer_outputs(model, x)
    rows = []
    for name, k_out in keras_trace.items():
        if name not in hls_trace:
            continue
        h_out = np.asarray(hls_trace[name]).reshape(len(x), -1)
        k_out = k_out.reshape(len(x), -1)
        if h_out.shape != k_out.shape:
            continue
        diff = float(np.abs(h_out.astype(np.float64) - k_out).max())
        rows.append({"layer": name, "max_abs_diff": diff, "bit_exact": diff == 0.0})
    return rows


def first_mismatch(rows: list) -> str | None:
    """Name of the first layer (in model order) whose traced outputs differ."""
    return next((r["layer"] for r in rows if not r["bit_exact"]), None)
