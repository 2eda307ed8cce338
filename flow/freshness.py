"""Before a step runs, bring what it reads up to date with the config: a model whose lineage the config changes is
recomputed from the first changed step, a ranking or a project of another model (or config) is made again. After a
step, its keys are noted in the manifest (flow/lineage.py says what a key covers)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from flow.config import RunConfig
from flow.lineage import MODEL_STEPS, Link, first_stale, model_key, read_lineage, step_key, uses_ranking
from flow.state import RunState, read_manifest

log = logging.getLogger(__name__)

Execute = Callable[[RunState, str], RunState]  # runs one step (and notes its keys)
NEEDS_PROJECT = ("verify", "inject", "rtl")


def note_keys(state: RunState, cfg: RunConfig, step: str, before: dict) -> None:
    """Record the keys of what ``step`` made; ``before`` is the manifest as the step found it."""
    manifest = read_manifest(state.out)
    keys = dict(manifest.get("keys", {}))
    lineage = read_lineage(before) or []
    if step in MODEL_STEPS:
        parent = lineage[-1].key if lineage else None
        used = uses_ranking(step, cfg, "ranking" in before)
        ranking = before.get("keys", {}).get("ranking") if used else None
        link = Link(step, model_key(step, cfg, parent, ranking), manifest["model"], ranking)
        lineage = [link] if step == "load" else [*lineage, link]
        state.note(lineage=[entry.to_json() for entry in lineage])
    current = lineage[-1].key if lineage else None
    if step == "rank":
        keys["ranking"] = step_key("rank", cfg, current)
    if step == "convert":
        keys["project"] = step_key("convert", cfg, current)
    for artefact in ("ranking", "project"):
        if artefact not in manifest:
            keys.pop(artefact, None)
    state.note(keys=keys)


def refresh_inputs(state: RunState, cfg: RunConfig, step: str, execute: Execute, ranked: bool = False) -> RunState:
    """``state`` with the model, ranking and project ``step`` reads made current for ``cfg`` (``ranked``: the step
    reads a ranking even when none is recorded: a replayed step that used one)."""
    manifest = read_manifest(state.out)
    lineage = read_lineage(manifest)
    if step == "load" or lineage is None:  # nothing recorded yet, or a run directory from before lineages
        return state
    if state.model is None:
        if step in MODEL_STEPS and lineage[-1].step == step:  # a rerun replaces the step's earlier result
            lineage = _truncate(state, lineage, len(lineage) - 1)
        state = _refresh_model(state, cfg, lineage, execute)
    manifest = read_manifest(state.out)  # as the refresh left it
    current, keys = read_lineage(manifest)[-1].key, manifest.get("keys", {})
    ranked = ranked or "ranking" in manifest
    if uses_ranking(step, cfg, ranked) and keys.get("ranking") != step_key("rank", cfg, current):
        log.warning("step %s: the recorded ranking is of another model or rank config; ranking again", step)
        state = execute(state, "rank")
    if step in NEEDS_PROJECT and "project" in manifest and keys.get("project") != step_key("convert", cfg, current):
        log.warning("step %s: the recorded hls4ml project is of another model or hls/board config; converting", step)
        state = execute(state, "convert")
    return state


def _refresh_model(state: RunState, cfg: RunConfig, lineage: list[Link], execute: Execute) -> RunState:
    stale = first_stale(lineage, cfg)
    if stale is None:
        return state
    while stale > 0 and not (state.out / lineage[stale - 1].model).is_file():  # start from a model still there
        stale -= 1
    replay = lineage[stale:]
    log.warning("the config changed what made the model: recomputing %s", ", ".join(link.step for link in replay))
    _truncate(state, lineage, stale)
    for link in replay:
        if link.step != "load":
            state = refresh_inputs(state, cfg, link.step, execute, ranked=link.ranking is not None)
        state = execute(state, link.step)
    return state


def _truncate(state: RunState, lineage: list[Link], length: int) -> list[Link]:
    """Make the first ``length`` links the current model's lineage (its model and, after harden, the unhardened)."""
    kept = lineage[:length]
    if not kept:
        state.note(lineage=None)
        state.record(model=None, unhardened_model=None)
        return kept
    state.note(lineage=[link.to_json() for link in kept])
    unhardened = state.out / kept[-2].model if kept[-1].step == "harden" and len(kept) > 1 else None
    state.record(model=state.out / kept[-1].model, unhardened_model=unhardened)
    return kept


def is_current(state: RunState, cfg: RunConfig, steps: list[str]) -> bool:
    """Whether ``steps`` (model steps and rank) already made the recorded model and ranking under ``cfg``."""
    manifest = read_manifest(state.out)
    lineage = read_lineage(manifest)
    made = [step for step in steps if step in MODEL_STEPS]
    if not lineage or [link.step for link in lineage] != made or first_stale(lineage, cfg) is not None:
        return False
    if not (state.out / lineage[-1].model).is_file():
        return False
    if "rank" in steps:
        ranking = manifest.get("ranking")
        if not ranking or not (state.out / ranking).is_file():
            return False
        return manifest.get("keys", {}).get("ranking") == step_key("rank", cfg, lineage[-1].key)
    return True
