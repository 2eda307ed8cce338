"""Cross-check C-sim fault outcomes against the Keras-side bit-exact emulation (flow/emulate.py)."""

from __future__ import annotations

import numpy as np

from flow.campaign import evaluate
from flow.emulate import Fault as KerasFault
from flow.emulate import FaultEmulator
from flow.errors import FlowError, VerificationError
from flow.faultlist import Fault

KERAS_ARRAY = {"weight": "kernel", "bias": "bias"}


def mappable(fault: Fault, rows: dict[str, dict]) -> bool:
    """Whether every bit fault hits a kernel or bias (correction data has no Keras twin)."""
    return all(rows[b.array]["kind"] in KERAS_ARRAY for b in fault)


def crosscheck(model, lib, table: list[dict], faults: list[Fault], x: np.ndarray, y: np.ndarray) -> dict:
    """Evaluate ``faults`` in C-sim and with Keras emulation; raise VerificationError on any difference."""
    from flow.training import inference_fn

    rows = {row["name"]: row for row in table}
    emulator = FaultEmulator(model)
    for row in table:
        key = (row["layer"], KERAS_ARRAY.get(row["kind"], ""))
        if key in emulator.arrays and emulator.arrays[key].size != row["length"]:
            raise FlowError(f"cross-check: array {row['name']} of layer {row['layer']} is not in Keras order")
    forward = inference_fn(model)
    golden_keras = forward(x).numpy()
    golden_csim = lib.predict(x)
    if not np.array_equal(golden_keras, golden_csim):
        raise VerificationError("cross-check: fault-free C-sim and QKeras outputs differ; run the verify step")
    mismatches = []
    for fault in faults:
        csim = evaluate(lib, fault, x, y, golden_csim)
        keras_faults = [
            KerasFault(rows[b.array]["layer"], KERAS_ARRAY[rows[b.array]["kind"]], b.index, b.bit, b.kind)
            for b in fault
        ]
        with emulator.injected(keras_faults):
            out = forward(x).numpy()
        keras = {
            "n_differ": int(np.any(out != golden_keras, axis=1).sum()),
            "n_critical": int((out.argmax(1) != golden_keras.argmax(1)).sum()),
        }
        if (csim["n_differ"], csim["n_critical"]) != (keras["n_differ"], keras["n_critical"]):
            mismatches.append({"fault": [b.__dict__ for b in fault], "csim": csim, "keras": keras})
    report = {"checked": len(faults), "mismatches": len(mismatches)}
    if mismatches:
        raise VerificationError(
            f"cross-check: {len(mismatches)}/{len(faults)} faults give different outcomes in C-sim and Keras "
            f"emulation; first: {mismatches[0]}"
        )
    return report
