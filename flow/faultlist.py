"""Fault lists over the weight arrays (or, with inject.space activations, the layer output tensors) of a compiled
hls4ml project: which bits, which fault model, how many.

A fault site is one word and a start bit b: the fault sets bits b..b+mbu-1 of that word (inject.mbu adjacent bits,
b in 0..width-mbu so every upset stays inside its word), one ``BitFault`` per bit. Exhaustive lists every site,
statistical and count sample sites (the Leveugle population is the number of sites); ber flips independent bits.

Every word belongs to one group (``word_group``): ``protected`` (an original channel that has copies),
``unprotected`` (any other channel or array), ``copy`` (the copies' weights and biases) or ``correction`` (the
correction layers' stored data); a fault whose bits fall in several groups (ber) is ``mixed``, a ber trial without
flips ``none``."""

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


@dataclass(frozen=True)
class ActBit:
    """One bit of one element of a layer's output tensor (space activations), set after the call writing it."""

    tensor: str  # the tensor's C++ name in the tensor table, e.g. "layer2_out"
    element: int  # per sample, channels last
    bit: int
    kind: FaultKind = FaultKind.FLIP
    sample: int = -1  # the one inference it hits (a transient fault), -1: every inference (a permanent one)


Fault = tuple[BitFault, ...] | tuple[ActBit, ...]  # the bit faults present together during one evaluation


class NoTargets(FlowError):
    """inject.targets (and inject.layers) select no array or tensor of this project (e.g. copies of a model that
    has none)."""


def target_arrays(table: list[dict], cfg: InjectConfig) -> list[dict]:
    """Rows of the array table selected by ``cfg.layers`` and ``cfg.targets``."""
    layers = sorted({row["layer"] for row in table})
    for name in cfg.layers or ():
        if name not in layers:
            raise FlowError(
                f"inject.layers: no layer '{name}' with weights{closest(name, layers)}; layers: {', '.join(layers)}"
            )
    kinds = {t.value for t in cfg.targets}
    rows = [r for r in table if _selected(r, kinds) and (cfg.layers is None or r["layer"] in cfg.layers)]
    if not rows:
        raise NoTargets(f"inject: no weight array matches targets {sorted(kinds)} in layers {cfg.layers or 'all'}")
    return rows


def _selected(row: dict, kinds: set[str]) -> bool:
    """Whether inject.targets select an array table row (target copy: every array of a copy layer)."""
    return row["kind"] in kinds or ("copy" in kinds and "copy_of" in row)


def check_mbu(rows: list[dict], mbu: int, what: str = "array") -> None:
    """Refuse an inject.mbu wider than the narrowest targeted word, naming that array (or tensor) and its width."""
    narrowest = min(rows, key=lambda r: r["width"])
    if mbu > narrowest["width"]:
        raise FlowError(
            f"inject.mbu: got {mbu}; allowed: at most {narrowest['width']}, the width of the narrowest targeted "
            f"word ({what} {narrowest['name']} of layer {narrowest['layer']}: {narrowest['width']} bits; or narrow "
            "inject.targets / inject.layers)"
        )


def _site_arrays(table: list[dict], cfg: InjectConfig) -> tuple[list[dict], int, list[int]]:
    """The targeted rows, the upset width (inject.mbu; 1 for ber) and each row's start bits per word."""
    mbu = 1 if cfg.model is FaultModel.BER else cfg.mbu
    rows = target_arrays(table, cfg)
    check_mbu(rows, mbu)
    return rows, mbu, [r["width"] - mbu + 1 for r in rows]


def fault_sites(table: list[dict], cfg: InjectConfig) -> int:
    """How many fault sites (word, start bit) ``cfg`` selects: targeted bits for single-bit faults and ber."""
    rows, _, starts = _site_arrays(table, cfg)
    return sum(r["length"] * s for r, s in zip(rows, starts, strict=True))


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
    rows, mbu, starts = _site_arrays(table, cfg)
    sizes = np.array([r["length"] * s for r, s in zip(rows, starts, strict=True)], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    population = int(offsets[-1])
    rng = np.random.default_rng(seed)

    def site(position: int, kind: FaultKind) -> Fault:
        a = int(np.searchsorted(offsets, position, side="right") - 1)
        index, bit = divmod(int(position - offsets[a]), starts[a])
        return tuple(BitFault(rows[a]["name"], index, bit + j, kind) for j in range(mbu))

    if cfg.model is FaultModel.BER:
        check_ber_size(cfg, population)
        faults = []
        for _ in range(cfg.count):
            k = int(rng.binomial(population, cfg.ber))
            positions = np.sort(rng.choice(population, size=min(k, population), replace=False))
            faults.append(tuple(b for p in positions for b in site(int(p), FaultKind.FLIP)))
        return faults
    kind = FaultKind(cfg.model.value)
    return [site(int(p), kind) for p in sampled_positions(population, cfg, rng)]


def sampled_positions(population: int, cfg: InjectConfig, rng: np.random.Generator) -> np.ndarray:
    """The site positions a campaign evaluates, ascending: all (exhaustive), a Leveugle-sized sample (statistical)
    or ``count`` of them, drawn without replacement."""
    if cfg.sampling is FaultSampling.EXHAUSTIVE:
        n = population
    elif cfg.sampling is FaultSampling.STATISTICAL:
        n = leveugle_sample_size(population, cfg.margin, cfg.confidence, cfg.p)
    else:
        n = min(cfg.count, population)
    return np.arange(population) if n == population else np.sort(rng.choice(population, size=n, replace=False))


def faults_to_json(faults: list[Fault]) -> list[list[dict]]:
    return [[{**asdict(b), "kind": FaultKind(b.kind).value} for b in fault] for fault in faults]


def faults_from_json(data: list[list[dict]]) -> list[Fault]:
    def bit(b: dict) -> BitFault | ActBit:
        if "tensor" in b:
            return ActBit(b["tensor"], b["element"], b["bit"], FaultKind(b["kind"]), b["sample"])
        return BitFault(b["array"], b["index"], b["bit"], FaultKind(b["kind"]))

    return [tuple(bit(b) for b in fault) for fault in data]


# ---- activation faults (inject.space: activations): sites in the tensor table of flow/fi_bridge.py ----


def tensor_kind(row: dict) -> str:
    """What inject.targets calls a tensor: copy (a copy layer's output), correction, or layer (any other)."""
    return "copy" if "copy_of" in row else "correction" if row["class"] == "Correction" else "layer"


def target_tensors(tensors: list[dict], cfg: InjectConfig) -> list[dict]:
    """Rows of the tensor table selected by ``cfg.activation``, ``cfg.layers`` and ``cfg.targets`` (weight or
    bias: the model's own layers' outputs; copy; correction)."""
    names = sorted({r["layer"] for r in tensors} | {r["of"] for r in tensors if "of" in r})
    for name in cfg.layers or ():
        if name not in names:
            raise FlowError(
                f"inject.layers: no layer '{name}' with an output tensor{closest(name, names)}; layers: "
                f"{', '.join(names)}"
            )
    kinds = {"layer" if t.value in ("weight", "bias") else t.value for t in cfg.targets}
    point = cfg.activation.value
    rows = [
        r for r in tensors
        if r["point"] in (point, "both") and tensor_kind(r) in kinds
        and (cfg.layers is None or r["layer"] in cfg.layers or r.get("of") in cfg.layers)
    ]  # fmt: skip
    if not rows:
        raise NoTargets(
            f"inject: no output tensor matches targets {sorted(t.value for t in cfg.targets)} at activation "
            f"'{point}' in layers {cfg.layers or 'all'}"
        )
    return rows


def _act_site_rows(tensors: list[dict], cfg: InjectConfig) -> tuple[list[dict], list[int]]:
    rows = target_tensors(tensors, cfg)
    check_mbu(rows, cfg.mbu, "tensor")
    return rows, [r["width"] - cfg.mbu + 1 for r in rows]


def act_sites(tensors: list[dict], cfg: InjectConfig, n_samples: int) -> int:
    """How many activation fault sites ``cfg`` selects: (sample, tensor, element, start bit) for flip (transient),
    (tensor, element, start bit) for stuck0/stuck1 (permanent)."""
    rows, starts = _act_site_rows(tensors, cfg)
    per = n_samples if cfg.model is FaultModel.FLIP else 1
    return per * sum(r["length"] * s for r, s in zip(rows, starts, strict=True))


def build_act_fault_list(tensors: list[dict], cfg: InjectConfig, seed: int, n_samples: int) -> list[Fault]:
    """Deterministic activation fault list: every site (exhaustive), a Leveugle sample of the sites (statistical)
    or ``count`` of them; a fault sets bits b..b+mbu-1 of one element."""
    if cfg.model is FaultModel.BER:
        raise FlowError("inject.model: 'ber' is not an activation fault model; allowed: flip, stuck0, stuck1")
    rows, starts = _act_site_rows(tensors, cfg)
    transient = cfg.model is FaultModel.FLIP
    per = n_samples if transient else 1
    sizes = np.array([per * r["length"] * s for r, s in zip(rows, starts, strict=True)], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    population = int(offsets[-1])
    kind = FaultKind(cfg.model.value)

    def site(position: int) -> Fault:
        a = int(np.searchsorted(offsets, position, side="right") - 1)
        row = rows[a]
        sample, rest = divmod(int(position - offsets[a]), row["length"] * starts[a])
        element, bit = divmod(rest, starts[a])
        s = sample if transient else -1
        return tuple(ActBit(row["name"], element, bit + j, kind, s) for j in range(cfg.mbu))

    return [site(int(p)) for p in sampled_positions(population, cfg, np.random.default_rng(seed))]


def tensor_group(row: dict, element: int) -> str:
    """The group of element ``element`` of a tensor table row: copy, correction, protected (a channel of a
    hardened layer's output that has copies) or unprotected."""
    kind = tensor_kind(row)
    if kind != "layer":
        return kind
    return "protected" if element % row["channels"] in row.get("protected", ()) else "unprotected"


GROUPS = ("protected", "unprotected", "copy", "correction")  # word groups; "mixed": a fault over several


def word_group(row: dict, index: int) -> str:
    """The group of word ``index`` of an array table row (flow/fi_bridge.py: ``channels``, ``channel_axis``,
    ``protected`` and ``copy_of`` say which output channel a word feeds and which channels have copies)."""
    if row["kind"] == "correction":
        return "correction"
    if "copy_of" in row:
        return "copy"
    if not row.get("protected"):
        return "unprotected"
    return "protected" if word_channel(row, index) in row["protected"] else "unprotected"


def word_channel(row: dict, index: int) -> int:
    """The output channel word ``index`` of a weight or bias row feeds: hls4ml keeps the channel last (flat index
    i: channel i % C), or first after the Resource strategy's transpose (channel i // (length / C))."""
    channels = row["channels"]
    return index // (row["length"] // channels) if row["channel_axis"] == "first" else index % channels


def fault_group(fault: Fault, rows: dict[str, dict]) -> str:
    """The group of a fault's words (``rows``: array table rows by name, or tensor table rows for activation
    faults); ``mixed`` if they span groups, ``none`` for a ber trial without flips."""
    groups = {
        tensor_group(rows[b.tensor], b.element) if isinstance(b, ActBit) else word_group(rows[b.array], b.index)
        for b in fault
    }
    return groups.pop() if len(groups) == 1 else "mixed" if groups else "none"


def groups_known(table: list[dict]) -> bool:
    """Whether the array table records channel layouts (tables written before it did do not)."""
    return any("channels" in row for row in table)
