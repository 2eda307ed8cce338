"""Cross-check C-sim fault outcomes against the Keras-side bit-exact emulation (flow/emulate.py).

A fault that gives a power-of-two weight an exponent outside its array's ``exact_exponents`` (flow/fi_bridge.py) is
not compared: there hls4ml's shift product truncates or wraps x * 2**e, which no weight value reproduces. Such
faults are counted in the report as ``inexact`` (the key is present only when there are any).

Activation faults (inject.space: activations) are compared by ``crosscheck_activations``.

Kernels, biases and the correction layers' source maps (``src<i>``, words selecting past the stacked channels
read 0 on both sides) are compared; the correction bounds (``lo<i>``, ``hi<i>``) have no Keras twin yet."""

from __future__ import annotations

import re

import numpy as np

from flow.campaign import evaluate, evaluate_act
from flow.csim import FastEvaluator
from flow.emulate import SOURCE_ARRAY, FaultEmulator
from flow.emulate import Fault as KerasFault
from flow.emulate_act import ActivationEmulator, Inexact
from flow.errors import FlowError, VerificationError
from flow.faultlist import Fault
from flow.training import inference_fn

KERAS_ARRAY = {"weight": "kernel", "bias": "bias"}
SOURCE_NAME = re.compile(r"src\d+")  # hls4ml's name of a correction layer's source map (flow/hls_ext.py)


def keras_array(row: dict) -> str | None:
    """The Keras-side array ('kernel', 'bias', 'src') of an array table row, None without a twin."""
    if row["kind"] == "correction":
        return SOURCE_ARRAY if SOURCE_NAME.fullmatch(row["name"]) else None
    return KERAS_ARRAY.get(row["kind"])


def mappable(fault: Fault, rows: dict[str, dict]) -> bool:
    """Whether every bit fault hits a kernel, a bias or a correction source map (the bounds have no twin)."""
    return all(keras_array(rows[b.array]) is not None for b in fault)


def crosscheck(model, lib, table: list[dict], faults: list[Fault], x: np.ndarray, y: np.ndarray) -> dict:
    """Evaluate ``faults`` in C-sim and with Keras emulation; raise VerificationError on any difference."""
    rows = {row["name"]: row for row in table}
    emulator = FaultEmulator(model)
    try:
        for row in table:
            key = (row["layer"], keras_array(row) or "")
            array = emulator.arrays.get(key) or emulator.sources.get(key)
            if array is not None and array.size != row["length"]:
                raise FlowError(f"cross-check: array {row['name']} of layer {row['layer']} is not in Keras order")
        forward = inference_fn(model)
        golden_keras = forward(x).numpy()
        golden_csim = lib.predict(x)
        if not np.array_equal(golden_keras, golden_csim):
            raise VerificationError("cross-check: fault-free C-sim and QKeras outputs differ; run the verify step")
        mismatches, inexact = _compare(emulator, forward, lib, rows, faults, x, y, golden_keras, golden_csim)
    finally:
        emulator.close()
    report = {"checked": len(faults) - inexact, "mismatches": len(mismatches)}
    if inexact:
        report["inexact"] = inexact
    if mismatches:
        raise VerificationError(
            f"cross-check: {len(mismatches)}/{report['checked']} faults give different outcomes in C-sim and Keras "
            f"emulation; first: {mismatches[0]}"
        )
    return report


def _compare(emulator, forward, lib, rows, faults, x, y, golden_keras, golden_csim) -> tuple[list[dict], int]:
    """(mismatches, faults not compared because hls4ml's po2 product is inexact for them)."""
    mismatches, inexact = [], 0
    for fault in faults:
        keras_faults = [
            KerasFault(rows[b.array]["layer"], keras_array(rows[b.array]), b.index, b.bit, b.kind) for b in fault
        ]
        if not _exact(emulator, fault, keras_faults, rows):
            inexact += 1
            continue
        csim = evaluate(lib, fault, x, y, golden_csim)
        with emulator.injected(keras_faults):
            out = forward(x).numpy()
        keras = {
            "n_differ": int(np.any(out != golden_keras, axis=1).sum()),
            "n_critical": int((out.argmax(1) != golden_keras.argmax(1)).sum()),
        }
        if (csim["n_differ"], csim["n_critical"]) != (keras["n_differ"], keras["n_critical"]):
            mismatches.append({"fault": [b.__dict__ for b in fault], "csim": csim, "keras": keras})
    return mismatches, inexact


def _exact(emulator: FaultEmulator, fault: Fault, keras_faults: list[KerasFault], rows: dict[str, dict]) -> bool:
    """Whether every power-of-two word the fault changes keeps an exponent hls4ml multiplies with exactly."""
    pairs = zip(fault, keras_faults, strict=True)
    ranges = {(k.layer, k.array): rows[b.array].get("exact_exponents") for b, k in pairs}
    for key, values in emulator.faulty_values(keras_faults).items():
        if ranges.get(key) is None:
            continue
        lo, hi = ranges[key]
        exponents = np.log2(np.abs(values[values != emulator.quantized[key]]))
        if np.any(exponents < lo) or np.any(exponents > hi):
            return False
    return True


def crosscheck_activations(model, lib, faults: list[Fault], x: np.ndarray, y: np.ndarray) -> dict:
    """Evaluate activation ``faults`` in C-sim (the fast evaluation's hook) and with the Keras-side emulation
    (flow/emulate_act.py) and raise VerificationError on any different outcome. Not compared, and counted:
    ``inexact`` (a faulty element's Keras value is not a word of its hls4ml type) and ``no_twin`` (a tensor of an
    hls4ml node with no Keras layer); the keys are present only when there are any."""
    fast = FastEvaluator(lib, x)
    try:
        emulator = ActivationEmulator(model, fast.tensors())
        golden = emulator.run(x)
        if not np.array_equal(golden, fast.golden):
            raise VerificationError("cross-check: fault-free C-sim and QKeras outputs differ; run the verify step")
        mismatches, counts = [], {"inexact": 0, "no_twin": 0}
        for fault in faults:
            if emulator.twin(fault[0].tensor) is None:
                counts["no_twin"] += 1
                continue
            s = fault[0].sample
            one = slice(None) if s < 0 else slice(s, s + 1)
            try:
                out = emulator.run(x[one], fault)
            except Inexact:
                counts["inexact"] += 1
                continue
            csim = evaluate_act(fast, [fault], y, fast.golden)[0]
            keras = {
                "n_differ": int(np.any(out != golden[one], axis=1).sum()),
                "n_critical": int((out.argmax(1) != golden[one].argmax(1)).sum()),
            }
            if (csim["n_differ"], csim["n_critical"]) != (keras["n_differ"], keras["n_critical"]):
                mismatches.append({"fault": [b.__dict__ for b in fault], "csim": csim, "keras": keras})
    finally:
        fast.close()
    report = {"checked": len(faults) - sum(counts.values()), "mismatches": len(mismatches)}
    report.update({k: v for k, v in counts.items() if v})
    if mismatches:
        raise VerificationError(
            f"cross-check: {len(mismatches)}/{report['checked']} activation faults give different outcomes in C-sim "
            f"and Keras emulation; first: {mismatches[0]}"
        )
    return report
