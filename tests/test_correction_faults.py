"""Faults in a correction layer's source map: a word selecting past the stacked channels reads 0, identically in
the full C-sim, the fast evaluation and the Keras emulation (nnet_correction.h, flow/correction.py)."""

from __future__ import annotations

import numpy as np
import pytest
from real_models import small_mlp

from flow.config import HardenConfig, HardenMode, HlsConfig, IOType, OptLevel
from flow.csim import FastEvaluator, FaultableLibrary
from flow.emulate import Fault, FaultEmulator
from flow.faultlist import BitFault
from flow.fixedpoint import FaultKind
from flow.hardware.boards import load_board

PYNQ = load_board("pynq-z2")
CHANNELS = {"fc1": [0, 3, 5], "logits": [2, 7]}  # fc1: 8 + 3 (or 6) stacked channels, logits: 10 + 2 (or 4)
VARIANTS = {  # name -> (harden mode, clip, io_type)
    "dmr_min": (HardenMode.SELECTIVE, False, IOType.PARALLEL),
    "tmr_clip_stream": (HardenMode.SELECTIVE_TMR, True, IOType.STREAM),
}


def hardened_mlp(mode: HardenMode, clip: bool, x: np.ndarray):
    from flow.harden import harden_model

    return harden_model(small_mlp(), CHANNELS, HardenConfig(mode=mode, clip=clip), x)


def samples(n: int = 60) -> np.ndarray:
    return np.random.default_rng(1).integers(0, 257, size=(n, 8, 8, 1)) / 256


@pytest.fixture(scope="module")
def projects(tmp_path_factory):
    """name -> (hardened Keras model, HlsProject)."""
    from flow.hls import convert

    built = {}
    for name, (mode, clip, io_type) in VARIANTS.items():
        model = hardened_mlp(mode, clip, samples(100))
        cfg = HlsConfig(csim_opt=OptLevel.O1, io_type=io_type)
        built[name] = (model, convert(model, cfg, PYNQ, 8, tmp_path_factory.mktemp(name))[0])
    return built


def source_words(lib: FaultableLibrary) -> dict[str, np.ndarray]:
    """The fault-free words of every source map, by array name."""
    words = {}
    for row in (r for r in lib.arrays if r["name"].startswith("src")):
        text = (lib.project.directory / "firmware" / "weights" / f"{row['name']}.txt").read_text()
        words[row["name"]] = np.array(text.replace(",", " ").split(), dtype=float).astype(int)
    return words


def source_faults(lib: FaultableLibrary) -> tuple[list[tuple[BitFault, ...]], int]:
    """Every flip and stuck-at-1 of every source word, then flips of one bit in two neighbouring words (two
    sources of one channel: what a vote cannot mask), and how many single faults select past the stacked
    channels."""
    singles, pairs, outside = [], [], 0
    for name, values in source_words(lib).items():
        n_in_chan = int(values.max()) + 1  # the last copy channel is some row's source
        for index, word in enumerate(values):
            for bit in range(int(values.max()).bit_length()):
                for kind, faulty in ((FaultKind.FLIP, word ^ 1 << bit), (FaultKind.STUCK1, word | 1 << bit)):
                    if faulty != word:
                        singles.append((BitFault(name, index, bit, kind),))
                        outside += faulty >= n_in_chan
                if index + 1 < len(values):
                    pairs.append((BitFault(name, index, bit), BitFault(name, index + 1, bit)))
    return singles + pairs, outside


def keras_fault(lib: FaultableLibrary, b: BitFault) -> Fault:
    return Fault(lib.arrays[lib.index[b.array]]["layer"], "src", b.index, b.bit, b.kind)


@pytest.mark.csim
@pytest.mark.slow
@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_source_fault_is_bit_exact_in_csim_fast_and_keras(projects, name):
    from flow.training import inference_fn

    model, project = projects[name]
    lib = FaultableLibrary(project)
    x = samples().astype(np.float32)
    faults, outside = source_faults(lib)
    assert outside > 0  # the stacked channel counts (11, 12, 14) are no powers of two: words past them exist
    emulator = FaultEmulator(model)
    forward = inference_fn(model)
    golden = lib.predict(x)
    np.testing.assert_array_equal(forward(x).numpy(), golden)
    fast_out, _, _ = FastEvaluator(lib, x).evaluate(faults)
    changed = {1: 0, 2: 0}  # faults that change some output, by number of bits
    for fault, fast in zip(faults, fast_out, strict=True):
        for b in fault:
            lib.inject(b.array, b.index, b.bit, b.kind)
        full = lib.predict(x)
        lib.restore()
        with emulator.injected([keras_fault(lib, b) for b in fault]):
            keras = forward(x).numpy()
        np.testing.assert_array_equal(full, keras, err_msg=str(fault))
        np.testing.assert_array_equal(fast, full, err_msg=str(fault))
        changed[len(fault)] += not np.array_equal(full, golden)
    np.testing.assert_array_equal(forward(x).numpy(), golden)  # restored
    emulator.close()
    if model.get_layer("fc1_correction").policy.value == "vote":
        assert changed[1] == 0 and changed[2] > 0  # one wrong source is outvoted, two are not
    else:
        assert changed[1] > 0 and changed[2] > 0


@pytest.mark.csim
@pytest.mark.slow
def test_an_out_of_range_source_reads_zero(projects):
    """Constructed: logits channel 2's copy source (stacked channel 10) stuck at 15 (past the 12 channels): the
    merge sees the original and 0, so with policy min the logit is min(original, 0)."""
    from flow.crosscheck import crosscheck

    model, project = projects["dmr_min"]
    lib = FaultableLibrary(project)
    x = samples().astype(np.float32)
    correction = model.get_layer("logits_correction")
    row = next(r for r in lib.arrays if r["layer"] == correction.name and r["name"].startswith("src"))
    sources = correction.padded_sources()
    assert sources.shape == (10, 2) and sources[2, 1] == 10 and row["width"] == 4
    golden = lib.predict(x)
    faults = [tuple(BitFault(row["name"], 2 * 2 + 1, bit, FaultKind.STUCK1) for bit in range(4))]
    for b in faults[0]:
        lib.inject(b.array, b.index, b.bit, b.kind)
    out = lib.predict(x)
    lib.restore()
    expected = golden.copy()
    expected[:, 2] = np.minimum(golden[:, 2], 0)
    np.testing.assert_array_equal(out, expected)
    assert np.any(golden[:, 2] > 0)  # the fault shows
    report = crosscheck(model, lib, lib.arrays, faults, x, np.zeros(len(x), int))
    assert report == {"checked": 1, "mismatches": 0}


def test_keras_correction_reads_zero_past_its_inputs():
    import tensorflow as tf

    from flow.correction import Correction

    layer = Correction([[0, 2], [1, 2]], policy="min")
    x = tf.constant([[3.0, -1.0, 5.0]])
    np.testing.assert_array_equal(layer(x).numpy(), [[3.0, -1.0]])
    words = layer.source_variable()
    words.assign([[0, 3], [7, 2]])  # 3 and 7 are past the three channels: 0
    np.testing.assert_array_equal(layer(x).numpy(), [[0.0, 0.0]])
    assert layer.source_width() == 2 and not layer.weights  # untracked: not saved with the model
