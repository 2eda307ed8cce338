"""Fault lists over the weight arrays of a compiled hls4ml project: which bits, which fault model, how many."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from flow.config import FaultModel, FaultSampling, InjectConfig
from flow.errors import FlowError
from flow.fixedpoint import FaultKind
from flow.schema import closest
from flow.stats import leveugle_sample_size


@dataclass(frozen=True)
class BitFault:
    array: str  # hls4ml weight array, e.g. "w2"
    index: int
    bit: int
    kind: FaultKind = FaultKind.FLIP


Fault = tuple[BitFault, ...]  # the bit faults present together during one evaluation


def target_arrays(table: list[dict], cfg: InjectConfig) -> list[dict]:
    """Rows of the array table selected by ``cfg.layers`` and ``cfg.targets``."""
    layers = sorted({row["layer"] for row in table})
    for name in cfg.layers or ():
        if name not in layers:
            raise FlowError(
                f"inject.layers: no layer '{name}' with weights{closest(name, layers)}; layers: {', '.join(layers)}"
            )
    kinds = {t.value for t in cfg.targets}
    rows = [r for r in table if r["kind"] in kinds and (cfg.layers is None or r["layer"] in cfg.layers)]
    if not rows:
        raise FlowError(f"inject: no weight array matches targets {sorted(kinds)} in layers {cfg.layers or 'all'}")
    return rows


MAX_BER_FAULTS = 1_000_000  # trials of one ber campaign (inject.count)
MAX_FLIPS_PER_FAULT = 10_000  # expected bit flips in one ber fault (targeted bits x inject.ber)
MAX_FLIPS_TOTAL = 5_000_000  # expected bit flips of the whole ber campaign: each is a Python object and a C call


def targeted_bits(table: list[dict], cfg: InjectConfig) -> int:
    """How many bits ``cfg.layers`` and ``cfg.targets`` select in the array table."""
    return sum(r["length"] * r["width"] for r in target_arrays(table, cfg))


def check_ber_size(cfg: InjectConfig, population: int) -> None:
    """Refuse a ber campaign too big to list or run (before any is drawn), naming the key and the bound."""
    if cfg.count > MAX_BER_FAULTS:
        raise FlowError(f"inject.count: {cfg.count} ber trials; allowed: at most {MAX_BER_FAULTS} per campaign")
    per_fault = population * cfg.ber
    where = f"inject.ber: {cfg.ber:g} over {population} targeted bits gives ~{per_fault:.3g} flips per fault"
    if per_fault > MAX_FLIPS_PER_FAULT:
        raise FlowError(
            f"{where}; allowed: at most {MAX_FLIPS_PER_FAULT} (inject.ber <= {MAX_FLIPS_PER_FAULT / population:.3g} "
            "here, or fewer inject.layers / inject.targets)"
        )
    if per_fault * cfg.count > MAX_FLIPS_TOTAL:
        raise FlowError(
            f"{where}, x inject.count {cfg.count} = ~{per_fault * cfg.count:.3g} in all; allowed: at most "
            f"{MAX_FLIPS_TOTAL} (lower inject.ber or inject.count)"
        )


def build_fault_list(table: list[dict], cfg: InjectConfig, seed: int) -> list[Fault]:
    """Deterministic fault list for the configured model and sampling."""
    rows = target_arrays(table, cfg)
    sizes = np.array([r["length"] * r["width"] for r in rows], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    population = int(offsets[-1])
    rng = np.random.default_rng(seed)

    def bit_fault(position: int, kind: FaultKind) -> BitFault:
        a = int(np.searchsorted(offsets, position, side="right") - 1)
        index, bit = divmod(int(position - offsets[a]), rows[a]["width"])
        return BitFault(rows[a]["name"], index, bit, kind)

    if cfg.model is FaultModel.BER:
        check_ber_size(cfg, population)
        faults = []
        for _ in range(cfg.count):
            k = int(rng.binomial(population, cfg.ber))
            positions = np.sort(rng.choice(population, size=min(k, population), replace=False))
            faults.append(tuple(bit_fault(int(p), FaultKind.FLIP) for p in positions))
        return faults
    kind = FaultKind(cfg.model.value)
    if cfg.sampling is FaultSampling.EXHAUSTIVE:
        n = population
    elif cfg.sampling is FaultSampling.STATISTICAL:
        n = leveugle_sample_size(population, cfg.margin, cfg.confidence, cfg.p)
    else:
        n = min(cfg.count, population)
    positions = np.arange(population) if n == population else np.sort(rng.choice(population, size=n, replace=False))
    return [(bit_fault(int(p), kind),) for p in positions]


def faults_to_json(faults: list[Fault]) -> list[list[dict]]:
    return [[{**asdict(b), "kind": b.kind.value} for b in fault] for fault in faults]


def faults_from_json(data: list[list[dict]]) -> list[Fault]:
    return [tuple(BitFault(b["array"], b["index"], b["bit"], FaultKind(b["kind"])) for b in fault) for fault in data]
