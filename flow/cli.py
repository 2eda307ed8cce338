"""``ftflow``: the command line. It parses arguments, calls the library and prints a short summary."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import yaml

from flow.compare_table import (
    COLUMNS,
    ComparisonRow,
    FaultModelRow,
    cell,
    critical_text,
    fault_model_matrix,
    mean_cost,
    read_table,
)
from flow.config import RunConfig, config_from_dict, config_to_dict, load_config
from flow.config_reference import reference
from flow.errors import FlowError, VerificationError
from flow.hardware.boards import known_boards, load_board
from flow.outdir import usable_out_dir
from flow.rundir import run_lock


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread: the command stops like on Ctrl-C (pools stopped, results kept)."""


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 1 verification failed or unexpected error, 2 bad input,
    130 interrupted, 143 terminated)."""
    parser = _parser()
    args = parser.parse_args(argv)
    _quiet_libraries(args.verbose)
    with _sigterm_raises(), contextlib.ExitStack() as args.held:  # the run-directory locks (_lock) until the end
        return _dispatch(args)


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """SIGTERM raises Terminated (a second one ends the process at once); the old handler is put back after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _dispatch(args: argparse.Namespace) -> int:
    """Run the command; its errors become one line on stderr and an exit status."""
    try:
        return args.func(args)
    except VerificationError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except FlowError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Terminated:
        print("error: terminated (SIGTERM); rerun the same command to resume", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the last line of defence: one line, traceback only with --debug
        if args.debug:
            raise
        print(f"error: unexpected {type(exc).__name__}: {exc} (rerun with --debug for the traceback)", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ftflow", description="Fault-tolerant QKeras CNNs on FPGAs via hls4ml.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show tracebacks")
    common.add_argument("-v", "--verbose", action="store_true", help="log progress of every step")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", parents=[common], help="run the pipeline described by a YAML config")
    run.add_argument("config", help="YAML run configuration")
    run.add_argument("--out", help="output directory (default: the config's 'out')")
    run.add_argument("--steps", help="comma-separated steps to run (default: the config's or all)")
    run.set_defaults(func=_cmd_run)

    rank = sub.add_parser(
        "rank", parents=[common], help="rank filters/neurons by vulnerability (trains first if needed)"
    )
    rank.add_argument("config", help="YAML run configuration")
    rank.add_argument("--out", help="output directory (default: the config's 'out')")
    rank.add_argument("--method", help="override rank.method: l1, l2, gradient, first_order, taylor or fi")
    rank.add_argument("--compare", action="store_true", help="run every method and validate each against fi")
    rank.set_defaults(func=_cmd_rank)

    inject = sub.add_parser("inject", parents=[common], help="run (or resume) the fault campaign of a converted run")
    inject.add_argument("config", help="YAML run configuration")
    inject.add_argument("--out", help="output directory (default: the config's 'out')")
    inject.add_argument("--export", choices=["csv"], help="also write every fault's result to inject/results.csv")
    inject.set_defaults(func=_cmd_inject)

    compare = sub.add_parser("compare", parents=[common], help="the same fault campaign on every hardening variant")
    compare.add_argument("config", help="YAML run configuration (compare.variants, harden.*, inject.*)")
    compare.add_argument("--out", help="output directory (default: the config's 'out')")
    compare.set_defaults(func=_cmd_compare)

    report = sub.add_parser("report", parents=[common], help="write <out>/report/index.html from a run directory")
    report.add_argument("out", help="run directory (of ftflow run or ftflow compare)")
    report.add_argument("--title", help="page title (default: the directory's name)")
    report.set_defaults(func=_cmd_report)

    export = sub.add_parser("export", parents=[common], help="copy variants' hls4ml projects out, ready to build")
    export.add_argument("out", help="run directory (of ftflow run or ftflow compare)")
    export.add_argument("--variant", action="append", help="variant to export (repeatable; default: all)")
    export.add_argument("--dest", help="destination directory (default: <out>/export)")
    export.set_defaults(func=_cmd_export)

    check = sub.add_parser(
        "check", parents=[common], help="what every step will do with each layer of a model, without converting"
    )
    check.add_argument("model", help="a saved QKeras model (.h5 or .keras)")
    check.add_argument("--config", help="YAML run configuration for the hls4ml settings (default: the defaults)")
    check.set_defaults(func=_cmd_check)

    config = sub.add_parser("config", parents=[common], help="a configuration resolved, or the reference of every key")
    config.add_argument("config", nargs="?", help="YAML run configuration to print with every default filled in")
    config.add_argument("--reference", action="store_true", help="print the configuration reference (docs/config.md)")
    config.set_defaults(func=_cmd_config)

    steps = sub.add_parser("steps", parents=[common], help="list the pipeline steps")
    steps.set_defaults(func=_cmd_steps)
    boards = sub.add_parser("boards", parents=[common], help="list the known boards")
    boards.set_defaults(func=_cmd_boards)
    return parser


def _quiet_libraries(verbose: bool) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(name)s: %(message)s")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


def _out_dir(args: argparse.Namespace, default: str) -> Path:
    """--out (or the config's 'out'), checked to be a writable directory before any step runs."""
    return usable_out_dir(args.out or default, "--out" if args.out else f"out (in {args.config})")


def _lock(args: argparse.Namespace, out: Path, create: bool = True) -> None:
    """Be the only ftflow writing into ``out`` until the command ends (flow/rundir.py)."""
    args.held.enter_context(run_lock(out, create))


def _cmd_run(args: argparse.Namespace) -> int:
    from flow.steps import resolve_steps, run  # numpy + the pipeline modules: ~0.2 s, not for --help

    cfg = load_config(args.config)
    steps = resolve_steps(args.steps.split(",") if args.steps else cfg.steps)
    out = _out_dir(args, cfg.out)
    _lock(args, out)
    _print_summary(args.config, out, run(cfg, out, steps))
    return 0


def _cmd_rank(args: argparse.Namespace) -> int:

    from flow.state import read_manifest  # numpy + the pipeline modules: ~0.2 s, not for --help
    from flow.steps import run

    cfg = load_config(args.config)
    overrides = {"compare": args.compare or cfg.rank.compare}
    if args.method:
        overrides["method"] = args.method
    plain = config_to_dict(cfg)
    plain["rank"].update(overrides)
    cfg = config_from_dict(plain, f"{args.config} (with --method/--compare)")
    out = _out_dir(args, cfg.out)
    _lock(args, out)
    steps = ["rank"] if "model" in read_manifest(out) else ["load", "train", "rank"]
    _print_summary(args.config, out, run(cfg, out, steps))
    return 0


def _cmd_inject(args: argparse.Namespace) -> int:
    # numpy + the pipeline modules: ~0.2 s, not for --help
    from flow.campaign import CampaignDB, counted_rows, margin_stop
    from flow.steps import run

    cfg = load_config(args.config)
    out = _out_dir(args, cfg.out)
    _lock(args, out)
    state = run(cfg, out, ["inject"])
    _print_summary(args.config, out, state)
    if args.export == "csv":
        db = CampaignDB(out / "inject" / "campaign.sqlite")
        try:
            cid, icfg = state.summary["inject"]["campaign"], cfg.inject
            stop = margin_stop(icfg.stop_at_margin, icfg.chunk, cfg.seed)
            rows, _ = counted_rows(db, cid, stop, db.n_faults(cid))  # the rows summary.json counts
            path = db.export_csv(cid, out / "inject" / "results.csv", rows)
        finally:
            db.close()
        print(f"  results: {path}")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    # numpy + the pipeline modules: ~0.2 s, not for --help
    from flow.compare import compare, unverified

    cfg = load_config(args.config)
    out = _out_dir(args, cfg.out)
    _lock(args, out)  # and its compare/<variant>/ sub-runs
    rows = compare(cfg, out)
    print(f"ftflow compare: {args.config} -> {out / 'compare'}")
    for line in _compare_table(rows):
        print("  " + line)
    print(f"  tables: {out / 'compare' / 'table.csv'}, {out / 'compare' / 'table.md'} ({len(COLUMNS)} columns)")
    if cfg.compare.fault_models:
        path = out / "compare" / "faultmodels.csv"
        print("  critical-SDC rate per fault [95 % CI] per fault model (compare.fault_models):")
        for line in _fault_model_lines(read_table(path, FaultModelRow)):
            print("  " + line)
        print(f"  fault models: {path}, {path.with_suffix('.md')}")
    failed = unverified(rows)
    if failed:
        print(f"error: {len(failed)} variant(s) failed verification ({', '.join(failed)}): their rates describe a "
              f"C-sim that is not the model; see {out / 'compare' / '<variant>' / 'verify' / 'report.json'}",
              file=sys.stderr)  # fmt: skip
        return 1
    return 0


def _compare_table(rows: list[ComparisonRow]) -> list[str]:
    """The comparison in short, columns aligned: verdict, accuracy, critical-SDC rate per fault with its 95 %
    interval and its reduction, the critical failure rate per bit relative to the baseline (compare.basis), LUT and
    DSP with their overheads vs the baseline (n/a: the baseline has none), latency."""

    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{value:+.1f} %"

    def cells(row: ComparisonRow) -> tuple[str, ...]:
        critical = f"{row.critical_rate:.3f} {cell(row, 'critical_ci95')}"
        per_bit = row.per_bit_relative_rate
        return (row.variant, row.verified, f"{row.fault_free_accuracy:.4f}", critical, pct(row.critical_reduction_pct),
                "n/a" if per_bit is None else f"{per_bit:.3f}", str(row.LUT), pct(row.LUT_overhead_pct), str(row.DSP),
                pct(row.DSP_overhead_pct), f"{row.latency_cycles} cycles")  # fmt: skip

    head = ("variant", "verified", "accuracy", "critical-SDC [95 % CI]", "reduction/fault", "rate/bit", "LUT",
            "LUT ovh", "DSP", "DSP ovh", "latency")  # fmt: skip
    return _aligned([head, *map(cells, rows)], left=2)


def _fault_model_lines(rows: list[FaultModelRow]) -> list[str]:
    """Variant x fault model: the critical rate per fault with its interval; last, each fault model's ms per fault
    (the mean over the cases)."""
    names, matrix = fault_model_matrix(rows)
    lines = [("variant", *names)]
    lines += [(variant, *(critical_text(by_name.get(name)) for name in names)) for variant, by_name in matrix.items()]
    lines.append(("ms per fault", *(mean_cost(rows, name) for name in names)))
    return _aligned(lines, left=1)


def _aligned(lines: list[tuple[str, ...]], left: int) -> list[str]:
    """Rows of cells in columns as wide as their widest cell: the first ``left`` columns flush left, the rest
    flush right."""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return ["  ".join(c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True)))
            for line in lines]  # fmt: skip


def _cmd_report(args: argparse.Namespace) -> int:
    from flow.report import write_report  # numpy + the pipeline modules: ~0.2 s, not for --help

    if Path(args.out).is_dir():  # a read-only run directory: this error, not the lock file's
        usable_out_dir(Path(args.out) / "report", "report directory")
    _lock(args, Path(args.out), create=False)
    print(f"ftflow report: {write_report(Path(args.out), args.title)}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from flow.export import export_projects  # numpy + the pipeline modules: ~0.2 s, not for --help

    _lock(args, Path(args.out), create=False)
    for path in export_projects(Path(args.out), args.variant, Path(args.dest) if args.dest else None):
        print(f"ftflow export: {path} (build: see {path / 'EXPORT.md'})")
    return 0


def _print_summary(config: str, out: Path, state) -> None:
    print(f"ftflow: {config} -> {out}")
    for step, values in state.summary.items():
        print(f"  {step:<8} " + ", ".join(f"{k}={_fmt(v)}" for k, v in values.items()))
    verify = state.summary.get("verify")
    if verify:
        verdict = "yes" if verify["bit_exact"] else "NO"
        print(f"  bit-exact C-sim vs QKeras: {verdict} on {verify['n_samples']} test samples")
        if verify.get("wrap_risks"):
            print(f"  WARNING: {verify['wrap_risks']} accumulator(s) can wrap on other inputs (verify/report.json)")
    print(f"  outputs: {out}/ (report: {out / 'verify' / 'report.json'})" if verify else f"  outputs: {out}/")


def _cmd_check(args: argparse.Namespace) -> int:
    # numpy + the pipeline modules: ~0.2 s, not for --help
    from flow.check import check_model_file, format_checks

    cfg = load_config(args.config) if args.config else RunConfig()
    rows = check_model_file(args.model, cfg)
    print(f"ftflow check: {args.model}")
    for line in format_checks(rows):
        print("  " + line)
    bad = [row for row in rows if not row.supported]
    if bad:
        print(f"error: {len(bad)} layer(s) not supported: " + "; ".join(f"'{r.layer}' {r.problem}" for r in bad),
              file=sys.stderr)  # fmt: skip
        return 2
    print(f"  every layer is supported ({len(rows)} rows)")
    return 0


def _cmd_config(args: argparse.Namespace) -> int:
    if args.reference == bool(args.config):
        raise FlowError("config: give either a YAML run configuration (printed resolved) or --reference")
    if args.reference:
        sys.stdout.write(reference())
    else:
        sys.stdout.write(yaml.safe_dump(config_to_dict(load_config(args.config)), sort_keys=False))
    return 0


def _cmd_steps(args: argparse.Namespace) -> int:
    # numpy + the pipeline modules: ~0.2 s, not for --help
    from flow.steps import DEFAULT_STEPS, STEPS

    for name, func in STEPS.items():
        default = "*" if name in DEFAULT_STEPS else " "
        print(f"{default} {name:<10} {(func.__doc__ or '').strip().splitlines()[0]}")
    return 0


def _cmd_boards(args: argparse.Namespace) -> int:
    for name in known_boards():
        b = load_board(name)
        caps = ", ".join(f"{k} {v}" for k, v in b.capacity.items())
        print(f"{name:<14} {b.part:<22} {b.clock_period:g} ns  {caps}")
    return 0


def _fmt(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def main_exit() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    main_exit()
