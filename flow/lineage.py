"""What every artefact was computed from. A key hashes the config sections a step reads, the files it reads (a
user's model, an npz) and the keys of its inputs; the manifest keeps the current model's lineage (the model steps
that made it, each with its key) and the keys of the ranking and the project. A rerun compares them with the keys
the current config gives and recomputes what changed, and only that."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from flow.config import PruneCriterion, RunConfig, config_to_dict

KEY_VERSION = 1
MODEL_STEPS = ("load", "train", "prune", "harden")  # steps that replace the current model
STEP_INPUTS: dict[str, tuple[str, ...]] = {  # config values each step's result depends on ("section.key" or section)
    "load": ("seed", "data", "model"),
    "train": ("seed", "data", "train"),
    "rank": ("seed", "data", "rank"),
    "prune": ("seed", "data", "prune"),
    "harden": ("data", "harden"),
    "convert": ("hls", "board", "data.input_frac_bits"),
}
IGNORED = {"data": ("cache_dir",)}  # where a download is cached does not change the data


@dataclass(frozen=True)
class Link:
    """One model step of a lineage: which step, its key, the model file it wrote, the ranking key it used."""

    step: str
    key: str
    model: str  # relative to the run directory
    ranking: str | None = None

    def to_json(self) -> dict:
        return {"step": self.step, "key": self.key, "model": self.model, "ranking": self.ranking}


def step_key(step: str, cfg: RunConfig, *inputs: str | None) -> str:
    """Key of ``step``'s result under ``cfg`` from the keys of its inputs (model, ranking)."""
    payload = {"version": KEY_VERSION, "step": step, "config": _values(cfg, STEP_INPUTS[step]), "inputs": inputs}
    if step == "load":
        payload["files"] = _input_files(cfg)
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:20]


def uses_ranking(step: str, cfg: RunConfig, ranked: bool) -> bool:
    """Whether ``step`` reads the ranking (``ranked``: one is recorded; without one, a step that needs it says so)."""
    if step == "prune":
        return ranked and cfg.prune.criterion is PruneCriterion.VULNERABILITY
    return step == "harden" and ranked


def model_key(link_step: str, cfg: RunConfig, parent: str | None, ranking: str | None) -> str:
    """Key of the model a model step makes from the ``parent`` model (None for load)."""
    return step_key(link_step, cfg) if link_step == "load" else step_key(link_step, cfg, parent, ranking)


def read_lineage(manifest: dict) -> list[Link] | None:
    """The current model's lineage (None when the run directory predates lineages)."""
    rows = manifest.get("lineage")
    return None if rows is None else [Link(**row) for row in rows]


def first_stale(lineage: list[Link], cfg: RunConfig) -> int | None:
    """Index of the first link whose key the current config changes (None: the model is current)."""
    parent: str | None = None
    for i, link in enumerate(lineage):
        ranking = step_key("rank", cfg, parent) if link.ranking is not None else None
        if model_key(link.step, cfg, parent, ranking) != link.key:  # the ranking key is one of its inputs
            return i
        parent = link.key
    return None


def _values(cfg: RunConfig, names: tuple[str, ...]) -> dict:
    plain = config_to_dict(cfg)
    values = {}
    for name in names:
        section, _, key = name.partition(".")
        value = plain[section][key] if key else plain[section]
        if isinstance(value, dict):
            value = {k: v for k, v in value.items() if k not in IGNORED.get(section, ())}
        values[name] = value
    return values


def _input_files(cfg: RunConfig) -> dict[str, str]:
    """Content digests of the files the load step reads (a model file may change under the same name)."""
    paths = {"model.path": cfg.model.path, "model.json": cfg.model.json, "model.weights": cfg.model.weights}
    if cfg.data.path:
        paths["data.path"] = cfg.data.path
    return {key: file_digest(Path(path)) for key, path in paths.items() if path}


def file_digest(path: Path) -> str:
    """SHA-256 of a file, or of every file under a directory (a SavedModel); 'missing' when absent."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path] if path.is_file() else []
    if not files:
        return "missing"
    for file in files:
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
        with open(file, "rb") as f:
            for block in iter(lambda f=f: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
