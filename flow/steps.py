"""The pipeline: plain step functions ``step(state, cfg) -> state`` looked up from one table."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import yaml

from flow.campaign import (
    CampaignDB,
    campaign_id,
    campaign_inputs,
    counted_rows,
    margin_stop,
    run_campaign,
    short_inputs,
    summarize,
)
from flow.config import FaultModel, PruneCriterion, RankMethod, RunConfig, Selection, Space, config_to_dict
from flow.crosscheck import crosscheck, crosscheck_activations, mappable
from flow.csim import CSimLibrary, FaultableLibrary, activation_tensors, record_library
from flow.data import Dataset, fit_to_shape, load_dataset
from flow.errors import FlowError, VerificationError
from flow.faultlist import (
    act_sites,
    build_act_fault_list,
    build_fault_list,
    check_ber_size,
    fault_group,
    fault_sites,
    faults_to_json,
    groups_known,
    targeted_bits,
)
from flow.fi_bridge import TABLE, read_tensors
from flow.freshness import note_keys, refresh_inputs
from flow.harden import harden_model, layer_costs, overhead_summary, select_channels
from flow.hardware.boards import resolve_board
from flow.hardware.resources import estimate_resources
from flow.hardware.rtl import require_simulator, simulate, write_rtl
from flow.hls import PRECISION_REPORT, HlsProject, build_graph, convert, hls_config, write_ip_project
from flow.modelio import check_model, input_shape, load_model, load_user_model, output_size, save_model
from flow.normalize import check_normalization, normalize_model
from flow.prune import fine_tune, prune_model, select_removals
from flow.rank import norm_scores, rank_model
from flow.rank_report import plot_ranking, ranking_from_dict, validate, write_ranking
from flow.records import HardenSummary, InjectSummary, Resources, write_record
from flow.rundir import read_json, write_atomic, write_json, write_text_atomic
from flow.schema import closest
from flow.state import RunState, read_manifest
from flow.training import accuracy, logits, seed_everything, train_model
from flow.verify import compare_logits, first_mismatch, trace_layers
from flow.zoo import build_model

log = logging.getLogger(__name__)


def need_model(state: RunState, step: str) -> RunState:
    """The current model: in memory, or loaded from what an earlier run recorded."""
    if state.model is not None:
        return state
    return dataclasses.replace(state, model=load_model(state.artefact("model", step, "load")))


def need_data(state: RunState, cfg: RunConfig, step: str) -> RunState:
    """The dataset fitted to the current model's input (re-created from the config: cheap and deterministic)."""
    state = need_model(state, step)
    if state.data is not None:
        return state
    return dataclasses.replace(state, data=_dataset_for(state.model, cfg))


def _dataset_for(model, cfg: RunConfig) -> Dataset:
    ds = fit_to_shape(load_dataset(cfg.data, cfg.seed), input_shape(model), cfg.data.input_frac_bits)
    if output_size(model) != ds.classes:
        raise FlowError(
            f"data/model shape mismatch: the model has {output_size(model)} outputs, data '{ds.name}' has "
            f"{ds.classes} classes"
        )
    return ds


def step_load(state: RunState, cfg: RunConfig) -> RunState:
    """Load the data and build the zoo model (or load the user's QKeras model); normalize it (load/normalize.json)
    and check it is convertible."""
    out = state.step_dir("load")
    if cfg.model.path or cfg.model.json:
        original = load_user_model(cfg.model)
        normalized = normalize_model(original)
        model = normalized.model
        check_model(model)
        ds = _dataset_for(model, cfg)
    else:
        raw = load_dataset(cfg.data, cfg.seed)
        shape = tuple(cfg.model.input_shape or raw.shape)
        seed_everything(cfg.seed)
        original = build_model(cfg.model, shape, raw.classes)
        normalized = normalize_model(original)
        model = normalized.model
        check_model(model)
        ds = fit_to_shape(raw, input_shape(model), cfg.data.input_frac_bits)
    report = {**normalized.summary(), "check": check_normalization(original, normalized, ds.x_test)}
    write_json(out / "normalize.json", report)
    if not report["check"]["bit_exact"]:
        raise VerificationError(
            f"normalizing '{original.name}' changed its outputs on {report['check']['n_samples_differing']} test "
            f"samples (a bug: please report it with {out / 'normalize.json'})"
        )
    write_json(out / "data.json", ds.summary())
    state.record(model=save_model(model, out / "model.h5"), unhardened_model=None, ranking=None)
    summary = ds.summary()
    state = dataclasses.replace(state, model=model, data=ds, project=None)
    return state.with_summary(
        "load", model=model.name, params=int(model.count_params()), normalized=len(normalized.actions),
        **{k: summary[k] for k in summary if k != "name"},
    )  # fmt: skip


def step_train(state: RunState, cfg: RunConfig) -> RunState:
    """Train the model deterministically from the config seed."""
    state = need_data(state, cfg, "train")
    out = state.step_dir("train")
    result = train_model(state.model, state.data, cfg.train, cfg.seed)
    write_json(out / "history.json", result)
    state.record(model=save_model(state.model, out / "model.h5"), unhardened_model=None, ranking=None)
    return state.with_summary("train", epochs=cfg.train.epochs, test_accuracy=result["test_accuracy"])


def step_convert(state: RunState, cfg: RunConfig) -> RunState:
    """Convert with hls4ml, write the project and compile the C-sim library into <out>/convert/hls_project."""
    state = need_model(state, "convert")
    board = resolve_board(cfg.board)  # config errors (board, hls.layers) before the old project is removed
    hls_config(state.model, cfg.hls, cfg.data.input_frac_bits)
    out = state.step_dir("convert")
    project_dir = out / "hls_project"
    state.record(project=None, ip_project=None)  # a conversion that fails leaves no removed project on record
    shutil.rmtree(project_dir, ignore_errors=True)
    project, config = convert(state.model, cfg.hls, board, cfg.data.input_frac_bits, project_dir)
    record_library(project)  # its size and SHA-256, checked by every load
    write_json(out / "hls_config.json", config, default=str)
    shutil.copyfile(project_dir / PRECISION_REPORT, out / PRECISION_REPORT)
    project.save(out / "project.json")
    state.record(project=out / "project.json", ip_project=_ip_project(state, cfg, board, out))
    state = dataclasses.replace(state, project=project)
    return state.with_summary(
        "convert", backend=project.backend, io_type=project.io_type, part=board.part, project=str(project_dir)
    )


def _ip_project(state: RunState, cfg: RunConfig, board, out: Path) -> Path | None:
    """With hls.keep_softmax, the project with the output activation load stripped (None when there is none)."""
    normalize = state.out / "load" / "normalize.json"
    activation = json.loads(normalize.read_text()).get("output_activation") if normalize.is_file() else None
    ip_dir = out / "hls_project_ip"
    shutil.rmtree(ip_dir, ignore_errors=True)
    if not cfg.hls.keep_softmax or activation is None:
        return None
    project = write_ip_project(state.model, activation, cfg.hls, board, cfg.data.input_frac_bits, ip_dir)
    project.save(out / "project_ip.json")
    return out / "project_ip.json"


def step_verify(state: RunState, cfg: RunConfig) -> RunState:
    """Compare C-sim and QKeras logits on the test set; trace layers on a mismatch; write verify/report.json."""
    state = need_data(state, cfg, "verify")
    project = state.project or HlsProject.load(state.artefact("project", "verify", "convert"))
    out = state.step_dir("verify")
    n = min(cfg.verify.n_samples or len(state.data.x_test), len(state.data.x_test))
    x, y = state.data.x_test[:n], state.data.y_test[:n]
    keras_logits = logits(state.model, x)
    csim_logits = CSimLibrary(project).predict(x).reshape(keras_logits.shape)
    write_atomic(out / "logits_keras.npy", lambda p: np.save(p, keras_logits))
    write_atomic(out / "logits_csim.npy", lambda p: np.save(p, csim_logits))
    report = {**compare_logits(keras_logits, csim_logits, y), "backend": project.backend, "io_type": project.io_type}
    precisions = project.directory / PRECISION_REPORT
    if precisions.is_file():  # types that cannot be exact (a float BatchNormalization) or can wrap on other inputs
        fidelity = json.loads(precisions.read_text())
        report.update(inexact_layers=fidelity["inexact"], wrap_risks=fidelity["wrap_risks"])
        for risk in fidelity["wrap_risks"]:
            log.warning("layer %s: %s %s can wrap on inputs outside the test set (worst case %s; safe: %d integer "
                        "bits)", risk["layer"], risk["type"], risk["precision"], risk["worst_case"],
                        risk["safe_integer_bits"])  # fmt: skip
    if "unhardened_model" in read_manifest(state.out):  # a hardened model: with no fault = the unhardened one
        baseline = load_model(state.artefact("unhardened_model", "verify", "harden"))
        report["equals_unhardened"] = bool(np.array_equal(csim_logits, logits(baseline, x)))
    if not report["bit_exact"]:
        bad = np.flatnonzero(np.any(keras_logits != csim_logits, axis=1))[: cfg.verify.trace_samples]
        rows = trace_layers(
            state.model, x[bad], cfg.hls, resolve_board(cfg.board), cfg.data.input_frac_bits, out / "trace_project"
        )
        report.update(per_layer=rows, first_mismatch_layer=first_mismatch(rows))
    write_json(out / "report.json", report)
    hidden = ("per_layer", "inexact_layers", "wrap_risks")
    state = state.with_summary("verify", **{k: v for k, v in report.items() if k not in hidden},
                               wrap_risks=len(report.get("wrap_risks", [])))  # fmt: skip
    if not report["bit_exact"] and cfg.verify.require_bit_exact:
        raise VerificationError(
            f"C-sim differs from QKeras on {report['n_samples_differing']}/{n} samples "
            f"(max |diff| {report['max_abs_diff']:g}), first at layer '{report.get('first_mismatch_layer')}'"
            f"{_inexact_note(report)}; see {out / 'report.json'}"
        )
    return state


def _inexact_note(report: dict) -> str:
    layers = report.get("inexact_layers") or []
    return "".join(f" ({row['layer']}.{row['type']}: {row['reason']})" for row in layers[:3])


def step_rank(state: RunState, cfg: RunConfig) -> RunState:
    """Rank every filter and neuron by vulnerability (rank.method; all methods + validation if rank.compare)."""
    state = need_data(state, cfg, "rank")
    out = state.step_dir("rank")
    split = cfg.rank.split.value
    x = getattr(state.data, f"x_{split}")[: cfg.rank.images]
    y = getattr(state.data, f"y_{split}")[: cfg.rank.images]
    methods = list(RankMethod) if cfg.rank.compare else [cfg.rank.method]
    rankings = {}
    for method in methods:
        rankings[method.value] = rank_model(state.model, x, y, method, cfg.rank, cfg.seed)
        write_ranking(rankings[method.value], out / f"ranking_{method.value}.json")
    chosen = rankings[cfg.rank.method.value]
    state.record(ranking=write_ranking(chosen, out / "ranking.json"))
    plot_ranking(chosen, out / "vulnerability.png")
    summary = {
        "method": chosen.method,
        "seconds": round(chosen.seconds, 3),
        "channels": sum(map(len, chosen.scores.values())),
    }
    if cfg.rank.compare:
        report = validate(rankings)
        write_json(out / "validation.json", report)
        summary.update({f"rho_{m}": r["global"]["spearman"] for m, r in report["methods"].items()})
    return state.with_summary("rank", **summary)


def step_harden(state: RunState, cfg: RunConfig) -> RunState:
    """Duplicate the most vulnerable filters/neurons and add correction layers (harden.*).

    Checks that with no fault the hardened model gives exactly the unhardened model's logits on the test set."""
    manifest = read_manifest(state.out)
    if state.model is None and "unhardened_model" in manifest:  # a rerun hardens the same model again
        state = dataclasses.replace(state, model=load_model(state.artefact("unhardened_model", "harden", "load")))
    state = need_data(state, cfg, "harden")
    out = state.step_dir("harden")
    ranking = _recorded_ranking(state)
    policies = None
    if cfg.harden.selection is Selection.PLAN:
        from flow.plan_measure import plan_harden  # it runs measurement runs with this module's run()

        selection, policies = plan_harden(cfg, state, ranking, out / "plan.json")
    else:
        selection = select_channels(state.model, ranking, cfg.harden)
    profile_x = state.data.x_train[: cfg.harden.profile_samples]
    hardened = harden_model(state.model, selection, cfg.harden, profile_x, policies)
    baseline_logits, hardened_logits = logits(state.model, state.data.x_test), logits(hardened, state.data.x_test)
    summary = overhead_summary(state.model, hardened, selection, cfg.harden, policies)
    summary["no_fault_bit_exact"] = bool(np.array_equal(baseline_logits, hardened_logits))
    summary["ranking"] = ranking.method if ranking is not None else None
    record = write_record(out / "summary.json", HardenSummary, summary)
    if not record.no_fault_bit_exact and not cfg.harden.clip:
        raise RuntimeError("hardened model differs from the baseline with no fault (a bug: please report it)")
    state.record(unhardened_model=_unhardened_path(state, manifest), model=save_model(hardened, out / "model.h5"))
    state = dataclasses.replace(state, model=hardened, project=None)
    policy = record.policy.value if record.policy else "per layer"
    return state.with_summary(
        "harden", mode=record.mode.value, policy=policy, extra_channels=record.total.extra_channels,
        macs_overhead_pct=record.total.macs_overhead_pct, no_fault_bit_exact=record.no_fault_bit_exact,
    )  # fmt: skip


def _recorded_ranking(state: RunState):
    """The ranking the rank step recorded for the current model, or None."""
    rel = read_manifest(state.out).get("ranking")
    path = state.out / rel if rel else None
    return ranking_from_dict(json.loads(path.read_text())) if path and path.is_file() else None


def step_prune(state: RunState, cfg: RunConfig) -> RunState:
    """Remove the least vulnerable (or lowest-L1) filters/neurons and fine-tune (prune.*).

    Writes prune/summary.json (parameters, MACs, accuracy before/after, per layer); the ranking is then stale."""
    state = need_data(state, cfg, "prune")
    out = state.step_dir("prune")
    if cfg.prune.criterion is PruneCriterion.L1:
        scores = norm_scores(state.model, 1)
    else:
        ranking = _recorded_ranking(state)
        if ranking is None:
            raise FlowError("prune: criterion 'vulnerability' needs a ranking of this model; run step 'rank' first")
        scores = ranking.scores
    removals = select_removals(state.model, scores, cfg.prune)
    pruned = prune_model(state.model, removals)
    tuning = fine_tune(pruned, state.data, cfg.prune, cfg.seed) if cfg.prune.epochs else {}
    before, after = layer_costs(state.model), layer_costs(pruned)
    layers = {
        name: {
            "channels": b.channels,
            "channels_after": after[name].channels,
            "removed": removals.get(name, []),
            "params": b.params,
            "params_after": after[name].params,
            "macs": b.macs,
            "macs_after": after[name].macs,
        }
        for name, b in before.items()
    }
    totals = {k: sum(row[k] for row in layers.values()) for k in ("params", "params_after", "macs", "macs_after")}
    x, y = state.data.x_test, state.data.y_test
    summary = {
        "criterion": cfg.prune.criterion.value, "ratio": cfg.prune.ratio, "scope": cfg.prune.scope.value,
        "accuracy_before": accuracy(state.model, x, y), "accuracy_after": accuracy(pruned, x, y),
        "fine_tuning": tuning, "total": totals, "layers": layers,
    }  # fmt: skip
    write_json(out / "summary.json", summary)
    state.record(model=save_model(pruned, out / "model.h5"), ranking=None, unhardened_model=None)
    state = dataclasses.replace(state, model=pruned, project=None)
    return state.with_summary(
        "prune", criterion=summary["criterion"], params=f"{totals['params']}->{totals['params_after']}",
        macs=f"{totals['macs']}->{totals['macs_after']}", accuracy_before=summary["accuracy_before"],
        accuracy_after=summary["accuracy_after"],
    )  # fmt: skip


def _unhardened_path(state: RunState, manifest: dict) -> Path:
    """Where the model that was hardened lives: kept from an earlier harden, else the current model's file."""
    return state.out / manifest.get("unhardened_model", manifest["model"])


def check_inject_samples(cfg: RunConfig, n_test: int | None = None) -> None:
    """Refuse inject.samples beyond the test set (``n_test``: its size; None: from data.n_test or the data)."""
    asked, limit = cfg.inject.samples, cfg.data.n_test
    if n_test is None and limit is not None and asked > limit:
        raise FlowError(f"inject.samples: {asked} test images asked, but data.n_test: {limit} keeps at most {limit}; "
                        "allowed: at most the test-set size (lower inject.samples or raise data.n_test)")  # fmt: skip
    size = len(load_dataset(cfg.data, cfg.seed).x_test) if n_test is None else n_test
    if asked > size:
        raise FlowError(f"inject.samples: {asked} test images asked, the test set of data '{cfg.data.name.value}' "
                        f"has {size} (data.n_test: {'null' if limit is None else limit}); allowed: at most {size} "
                        "(lower inject.samples or raise data.n_test)")  # fmt: skip


def _check_campaign_up_front(cfg: RunConfig, out: Path, names: Sequence[str]) -> None:
    """inject.samples against the test set and, unless this run converts again, a ber campaign's size and an
    inject.mbu against the recorded project's words, or activation targets against its tensors (step_inject checks
    them again)."""
    check_inject_samples(cfg)
    rel = read_manifest(out).get("project")
    ber = cfg.inject.model is FaultModel.BER
    activations = cfg.inject.space is Space.ACTIVATIONS
    if not (ber or activations or cfg.inject.mbu > 1) or "convert" in names or not rel or not (out / rel).is_file():
        return
    if activations:  # inject.layers, targets, activation point and mbu against the recorded tensors
        tensors = read_tensors(HlsProject.load(out / rel).directory)
        if tensors and "tensors" in tensors:
            act_sites(tensors["tensors"], cfg.inject, cfg.inject.samples)
        return
    table = HlsProject.load(out / rel).directory / TABLE
    if table.is_file():
        rows = json.loads(table.read_text())
        if ber:
            check_ber_size(cfg.inject, targeted_bits(rows, cfg.inject))
        else:
            fault_sites(rows, cfg.inject)  # refuses an inject.mbu wider than a targeted word


def step_inject(state: RunState, cfg: RunConfig) -> RunState:
    """Fault-injection campaign on the compiled C-sim (inject.*), resumed on rerun.

    Results go to inject/campaign.sqlite as they come; rates with Wilson intervals to inject/summary.json."""
    state = need_data(state, cfg, "inject")
    project = state.project or HlsProject.load(state.artefact("project", "inject", "convert"))
    out = state.step_dir("inject")
    icfg = cfg.inject
    lib = FaultableLibrary(project)
    check_inject_samples(cfg, len(state.data.x_test))
    x, y = state.data.x_test[: icfg.samples], state.data.y_test[: icfg.samples]
    activations = icfg.space is Space.ACTIVATIONS
    if activations:  # sites: (sample,) tensor, element, bit
        targets = activation_tensors(lib)
        faults = build_act_fault_list(targets, icfg, cfg.seed, len(x))
    else:
        targets = lib.arrays
        faults = build_fault_list(targets, icfg, cfg.seed)
    golden = lib.predict(x)
    inputs = campaign_inputs(project, faults, x, cfg.seed)
    cid = campaign_id(inputs)
    write_json(out / "faults.json", {"campaign": cid, "faults": faults_to_json(faults)}, indent=None)
    layer_of = {row["name"]: row["layer"] for row in targets}
    layers = ["+".join(sorted({layer_of[b.tensor if activations else b.array] for b in f})) or "none" for f in faults]
    db = CampaignDB(out / "campaign.sqlite")
    try:
        where = os.path.relpath(project.directory, state.out.resolve())  # the run directory may move
        meta = {"model": icfg.model.value, "samples": len(x), "seed": cfg.seed, "project": where,
                "inputs": short_inputs(inputs)}  # fmt: skip
        db.ensure(cid, meta, faults, layers)
        workers = icfg.workers or os.cpu_count() or 1
        stop = margin_stop(icfg.stop_at_margin, icfg.chunk, cfg.seed)
        timing = run_campaign(project, faults, x, y, golden, db, cid, workers, icfg.chunk,
                              evaluation=icfg.evaluation.value, stop=stop, engine=icfg.engine.value,
                              scheduler=icfg.scheduler)  # fmt: skip
        rows, stopping = counted_rows(db, cid, stop, len(faults))
        by_name = {row["name"]: row for row in targets}
        groups = [fault_group(f, by_name) for f in faults] if activations or groups_known(lib.arrays) else None
        summary = {"campaign": cid, "inputs": short_inputs(inputs), "fault_model": icfg.model.value,
                   "mbu": icfg.mbu, "samples": len(x), **summarize(rows, groups=groups)}  # fmt: skip
        summary["space"] = icfg.space.value
        if activations:
            summary["activation"] = icfg.activation.value
        if groups is None:
            summary["groups"] = "unknown: the array table predates channel layouts; run the convert step again"
    finally:
        db.close()
    summary["golden_accuracy"] = float(np.mean(golden.argmax(axis=1) == y))
    if stopping:
        summary["stop"] = stopping  # why it stopped, after how many faults, the half-width
    summary["engine"] = {"name": timing.pop("engine"), "scheduler": icfg.scheduler, "workers": workers}
    summary["evaluation"] = timing.pop("evaluation")  # the mode that ran (fast/full) and the share stopped early
    summary["timing"] = timing
    if icfg.crosscheck and activations:
        summary["crosscheck"] = _crosscheck_activations(state.model, lib, faults, x, y, icfg.crosscheck, cfg.seed)
    elif icfg.crosscheck:
        summary["crosscheck"] = _crosscheck(state.model, lib, faults, x, y, icfg.crosscheck, cfg.seed)
    record = write_record(out / "summary.json", InjectSummary, summary)
    total = record.total
    return state.with_summary(
        "inject", campaign=cid, faults=total.n_faults, critical_rate=round(total.critical.rate, 5),
        sdc_rate=round(total.sdc.rate, 5), mean_accuracy=total.mean_accuracy,
        per_fault_ms=round(record.timing.per_fault_ms, 3), evaluation=record.evaluation.mode,
        **({"stop": record.stop.reason} if record.stop else {}),
    )  # fmt: skip


def _crosscheck(model, lib, faults, x, y, n: int, seed: int) -> dict:
    rows = {row["name"]: row for row in lib.arrays}
    candidates = [f for f in faults if mappable(f, rows)]
    picks = np.random.default_rng(seed).permutation(len(candidates))[:n]
    return crosscheck(model, lib, lib.arrays, [candidates[i] for i in sorted(picks)], x, y)


def _crosscheck_activations(model, lib, faults, x, y, n: int, seed: int) -> dict:
    picks = np.random.default_rng(seed).permutation(len(faults))[:n]
    return crosscheck_activations(model, lib, [faults[i] for i in sorted(picks)], x, y)


Step = Callable[[RunState, RunConfig], RunState]


def step_rtl(state: RunState, cfg: RunConfig) -> RunState:
    """da4ml RTL of every layer (own Verilog module of unit instances; copies kept apart), simulated
    (rtl.simulator) on test images and compared bit for bit with the C-sim: <out>/rtl/report.json; fails if
    they differ."""
    simulator = require_simulator(cfg.rtl.simulator.value, "step 'rtl'")
    state = need_data(state, cfg, "rtl")
    project = state.project or HlsProject.load(state.artefact("project", "rtl", "convert"))
    out = state.step_dir("rtl")
    graph, _ = build_graph(state.model, cfg.hls, resolve_board(cfg.board), cfg.data.input_frac_bits, out / "graph")
    design = write_rtl(graph, out / "verilog")
    x = state.data.x_test[: cfg.rtl.samples]
    csim = CSimLibrary(project).predict(x).reshape(len(x), -1)
    rtl = simulate(design, x.reshape(len(x), -1), out / "sim", simulator)
    differing = int(np.any(rtl != csim, axis=1).sum())
    report = {
        "bit_exact": differing == 0, "n_samples": len(x), "n_samples_differing": differing,
        "max_abs_diff": float(np.abs(rtl - csim).max()), "simulator": simulator, "top": design.top,
        "files": [str(f.relative_to(out)) for f in design.files],
        "modules": {name: {"input": vars(i), "output": vars(o)} for name, (i, o) in design.modules.items()},
        "units": design.instances,
    }  # fmt: skip
    write_json(out / "report.json", report)
    if differing:
        raise VerificationError(f"RTL and C-sim differ on {differing} of {len(x)} samples (see {out / 'report.json'})")
    return state.with_summary("rtl", bit_exact=True, n_samples=len(x), modules=len(design.modules), simulator=simulator)


def step_estimate(state: RunState, cfg: RunConfig) -> RunState:
    """Resources and latency of the current model (estimate.method) and the board's utilisation:
    <out>/estimate/resources.json."""
    state = need_model(state, "estimate")
    out = state.step_dir("estimate")
    result = write_record(out / "resources.json", Resources, estimate_resources(state.model, cfg, out))
    deploy = {"deploy": result.suggestion.label} if result.suggestion else {}  # when it does not fit
    return state.with_summary(
        "estimate", method=result.method.value, **result.total, latency_cycles=result.latency.cycles,
        board=result.board, fits=result.fits, in_domain=result.in_domain, **deploy,
    )  # fmt: skip


STEPS: dict[str, Step] = {
    "load": step_load,
    "train": step_train,
    "rank": step_rank,
    "prune": step_prune,
    "harden": step_harden,
    "convert": step_convert,
    "verify": step_verify,
    "inject": step_inject,
    "estimate": step_estimate,
    "rtl": step_rtl,
}
DEFAULT_STEPS: tuple[str, ...] = ("load", "train", "rank", "convert", "verify")


def resolve_steps(names: Sequence[str] | None) -> list[str]:
    """Validate step names (None = the default list)."""
    names = list(names) if names else list(DEFAULT_STEPS)
    for name in names:
        if name not in STEPS:
            raise FlowError(f"unknown step '{name}'{closest(name, list(STEPS))}; steps: {', '.join(STEPS)}")
    return names


def run(cfg: RunConfig, out: str | Path | None = None, steps: Sequence[str] | None = None) -> RunState:
    """Run the named steps (default: cfg.steps or DEFAULT_STEPS) into ``out`` (default: cfg.out)."""
    names = resolve_steps(steps or cfg.steps)
    out_dir = Path(out or cfg.out)
    if "inject" in names:  # before anything is written: a bad inject.* loses nothing
        _check_campaign_up_front(cfg, out_dir, names)
    out_dir.mkdir(parents=True, exist_ok=True)
    recorded = {**config_to_dict(cfg), "out": str(out_dir)}  # the directory actually used (--out)
    write_text_atomic(out_dir / "config.yaml", yaml.safe_dump(recorded, sort_keys=False))
    state = RunState(out=out_dir)

    def execute(state: RunState, name: str) -> RunState:
        log.info("step %s", name)
        before, start = read_manifest(out_dir), time.perf_counter()
        try:
            state = STEPS[name](state, cfg)
        finally:
            _record_time(out_dir, name, time.perf_counter() - start)
        note_keys(state, cfg, name, before)
        return state

    for name in names:  # what a step reads is first made current for this config (flow/freshness.py)
        state = execute(refresh_inputs(state, cfg, name, execute), name)
    return state


def _record_time(out: Path, step: str, seconds: float) -> None:
    path = out / "time_per_step.json"
    times = read_json(path) or {}  # unreadable (a kill while writing): warned, started again
    times[step] = round(seconds, 3)
    write_json(path, times)
