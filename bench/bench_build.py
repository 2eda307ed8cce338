"""C-sim build times of MLPerf Tiny's ResNet-8 (32x32x3, 8-bit, filters 16/32/64): hls4ml write, g++ per
optimisation level (the split, cached build of flow/build_cache.py, cold and warm cache; with --baseline also
hls4ml's build_lib.sh, one translation unit), C-sim ms per image, the seconds of verify's per-layer trace,
io_parallel and io_stream. Asserts that every build and level gives the same logits as QKeras, bit for bit.

Usage: .venv/bin/python bench/bench_build.py [--out runs/bench_build] [--levels O0,O1,O2,O3] [--baseline]
       [--images 20] [--io io_parallel,io_stream]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CONFIG = {
    "seed": 0,
    "data": {"name": "synthetic", "shape": [32, 32, 3], "classes": 10, "samples": 600},
    "model": {"name": "resnet8", "weight_bits": 8, "act_bits": 8},
    "train": {"epochs": 1},
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/bench_build")
    parser.add_argument("--levels", default="O0,O1,O2,O3")
    parser.add_argument("--baseline", action="store_true", help="also build_lib.sh at every level (slow: minutes)")
    parser.add_argument("--images", type=int, default=20, help="images timed per C-sim library")
    parser.add_argument("--io", default="io_parallel,io_stream")
    args = parser.parse_args()

    import numpy as np

    from flow.build_cache import build_info
    from flow.config import config_from_dict
    from flow.csim import CSimLibrary
    from flow.hardware.boards import resolve_board
    from flow.hls import _run_build_script, _set_script_opt, compile_project, project_of, write_project
    from flow.steps import run
    from flow.training import logits
    from flow.verify import TRACE_OPT, trace_layers

    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    state = run(config_from_dict(CONFIG, "resnet8"), out / "run", ["load", "train"])
    x = state.data.x_test[: args.images]
    expected = logits(state.model, x)
    rows, summary = [], {}

    def csim(project):
        library = CSimLibrary(project)
        library.predict(x[:1])  # loads the weights
        start = time.perf_counter()
        y = library.predict(x).reshape(expected.shape)
        ms = (time.perf_counter() - start) / len(x) * 1000
        if not np.array_equal(y, expected):
            raise SystemExit(f"{project.directory}: C-sim differs from QKeras")
        return ms

    for io in args.io.split(","):
        cfg = config_from_dict({**CONFIG, "hls": {"io_type": io}}, io)
        board = resolve_board(cfg.board)
        for level in args.levels.split(","):
            with tempfile.TemporaryDirectory() as cache:
                os.environ["FTFLOW_CACHE"] = cache  # cold: nothing compiled yet
                directory = out / io / f"split_{level}"
                start = time.perf_counter()
                graph, _ = write_project(state.model, cfg.hls, board, 8, directory)
                write_s = time.perf_counter() - start
                project = project_of(graph, cfg.hls, directory)
                start = time.perf_counter()
                compile_project(project, level)
                cold = time.perf_counter() - start
                units = {u["name"]: u["seconds"] for u in build_info(directory)["units"]}
                again = out / io / f"split_{level}_again"
                graph, _ = write_project(state.model, cfg.hls, board, 8, again)
                start = time.perf_counter()
                compile_project(project_of(graph, cfg.hls, again), level)
                warm = time.perf_counter() - start
                assert build_info(again)["compiled"] == []
                ms = csim(project)
                trace_s = None
                if level == TRACE_OPT:  # a mismatch's trace: built at TRACE_OPT, im2col units from the cache
                    start = time.perf_counter()
                    rows_ = trace_layers(state.model, x[:8], cfg.hls, board, 8, out / io / f"trace_{level}")
                    trace_s = time.perf_counter() - start
                    assert all(r["bit_exact"] for r in rows_)
                rows.append((io, "split", level, write_s, cold, warm, ms, trace_s, units))
                summary[f"{io} split {level}"] = {
                    "write_s": write_s,
                    "gxx_cold_s": cold,
                    "gxx_warm_s": warm,
                    "csim_ms_per_image": ms,
                    "trace_s": trace_s,
                    "units": units,
                }
                print(rows[-1], flush=True)
            if args.baseline:
                directory = out / io / f"build_lib_{level}"
                graph, _ = write_project(state.model, cfg.hls, board, 8, directory)
                project = project_of(graph, cfg.hls, directory)
                _set_script_opt(project, level)
                start = time.perf_counter()
                _run_build_script(project)
                seconds = time.perf_counter() - start
                ms = csim(project)
                rows.append((io, "build_lib.sh", level, None, seconds, None, ms, None, {}))
                summary[f"{io} build_lib.sh {level}"] = {"gxx_s": seconds, "csim_ms_per_image": ms}
                print(rows[-1], flush=True)

    print(f"\nResNet-8 32x32x3 8-bit, {os.cpu_count()} cores, C-sim on {len(x)} images, bit-exact with QKeras: all")
    head = ("io_type", "build", "opt", "write s", "g++ s", "cached s", "ms/image", "trace s")
    print("  ".join(f"{h:>12}" for h in head))
    for row in rows:
        cells = [f"{v:.2f}" if isinstance(v, float) else "-" if v is None else str(v) for v in row[:-1]]
        print("  ".join(f"{c:>12}" for c in cells))
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
