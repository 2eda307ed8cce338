"""hls4ml conversion: an hls4ml config from the QKeras model and the run config, then write + compile."""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from flow.build_cache import build_libraries
from flow.config import HlsConfig
from flow.errors import FlowError
from flow.fi_bridge import append_bridge, array_table
from flow.hardware.boards import Board
from flow.hls_ext import register_correction
from flow.hls_precision import fidelity_report, register_precision_pass
from flow.rundir import write_json
from flow.schema import closest

log = logging.getLogger(__name__)
PRECISION_REPORT = "precision_report.json"  # every layer's types and who set them, written with the project


@dataclass(frozen=True)
class HlsProject:
    """A written and compiled hls4ml project on disk."""

    directory: Path
    project_name: str
    backend: str
    io_type: str
    n_inputs: int
    n_outputs: int

    def save(self, path: Path) -> None:
        """Write ``path``; the directory is stored relative to the file's own directory when it lies under it
        (a copied or moved run directory then uses its own project), else absolute."""
        directory, base = Path(self.directory).resolve(), Path(path).parent.resolve()
        stored = directory.relative_to(base).as_posix() if directory.is_relative_to(base) else str(directory)
        write_json(path, {**self.__dict__, "directory": stored})

    def library(self) -> Path | None:
        """The newest compiled C-sim library ``firmware/<project>-<stamp>.so``, if any."""
        libs = sorted((self.directory / "firmware").glob(f"{self.project_name}-*.so"), key=lambda p: p.stat().st_mtime)
        return libs[-1] if libs else None

    @classmethod
    def load(cls, path: Path) -> HlsProject:
        """Read ``path``; a relative directory is taken from the file's own directory."""
        data = json.loads(path.read_text())
        directory = Path(data["directory"])
        if not directory.is_absolute():
            directory = (Path(path).parent / directory).resolve()
        elif not directory.is_relative_to(Path(path).parent.resolve()):
            log.warning("%s names the project %s outside its directory: a copy of a run made by an older ftflow "
                        "uses the original's files (convert again)", path, directory)  # fmt: skip
        return cls(**{**data, "directory": directory})


def hls_config(model, cfg: HlsConfig, input_frac_bits: int, trace: bool = False) -> dict:
    """hls4ml config at 'name' granularity, with strategy, reuse and per-layer overrides from the run config."""
    import hls4ml  # hls4ml: ~0.3 s to import

    register_correction()
    register_precision_pass()
    config = hls4ml.utils.config_from_keras_model(
        model, granularity="name", backend=cfg.backend.value, default_precision=cfg.default_precision
    )
    config["Model"]["Strategy"] = cfg.strategy.value
    config["Model"]["ReuseFactor"] = cfg.reuse_factor
    layers = config["LayerName"]
    for layer in layers.values():  # granularity 'name' writes ReuseFactor 1 per layer, hiding the model's
        if "ReuseFactor" in layer:
            layer["ReuseFactor"] = cfg.reuse_factor
    input_name = model.layers[0].name
    layers[input_name]["Precision"]["result"] = cfg.input_precision or f"ufixed<{input_frac_bits + 1},1>"
    for name, override in cfg.layers.items():
        if name not in layers:
            raise FlowError(
                f"hls.layers: no layer named '{name}' in the model{closest(name, list(layers))}; "
                f"layers: {', '.join(layers)}"
            )
        layers[name].setdefault("Precision", {}).update(override.precision)
        if override.reuse_factor is not None:
            layers[name]["ReuseFactor"] = override.reuse_factor
        if override.strategy is not None:
            layers[name]["Strategy"] = override.strategy.value
    if trace:
        for layer in layers.values():
            layer["Trace"] = True
    return config


def build_graph(model, cfg: HlsConfig, board: Board, input_frac_bits: int, output_dir: Path, trace: bool = False):
    """Convert to an hls4ml ModelGraph in memory (nothing written but ``<output_dir>.log``, hls4ml's console
    output). Returns (graph, hls4ml config)."""
    import hls4ml  # hls4ml: ~0.3 s to import

    config = hls_config(model, cfg, input_frac_bits, trace)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(output_dir.parent / f"{output_dir.name}.log", "w") as log_file, contextlib.redirect_stdout(log_file):
        try:
            graph = hls4ml.converters.convert_from_keras_model(
                model,
                hls_config=copy.deepcopy(config),
                output_dir=str(output_dir),
                project_name=cfg.project_name,
                backend=cfg.backend.value,
                io_type=cfg.io_type.value,
                part=board.part,
                clock_period=board.clock_period,
            )
        except Exception as exc:  # hls4ml raises bare Exceptions for unsupported input
            raise FlowError(f"hls4ml cannot convert the model: {' '.join(str(exc).split())}") from None
    return graph, config


def write_project(model, cfg: HlsConfig, board: Board, input_frac_bits: int, output_dir: Path, trace: bool = False):
    """Convert to an hls4ml ModelGraph and write the project (no compilation).

    hls4ml's console output goes to ``<output_dir>.log``. Returns (graph, hls4ml config)."""
    graph, config = build_graph(model, cfg, board, input_frac_bits, output_dir, trace)
    output_dir.mkdir(parents=True, exist_ok=True)
    with open(output_dir.parent / f"{output_dir.name}.log", "a") as log_file, contextlib.redirect_stdout(log_file):
        graph.write()
    write_json(output_dir / PRECISION_REPORT, fidelity_report(graph, config))
    project = project_of(graph, cfg, output_dir)
    append_bridge(output_dir, cfg.project_name, array_table(graph), project.n_inputs, project.n_outputs, graph)
    return graph, config


def write_ip_project(model, activation: str, cfg: HlsConfig, board: Board, input_frac_bits: int, output_dir: Path):
    """Write (not compile) the project of ``model`` with the output ``activation`` (softmax/sigmoid) appended: the
    IP users deploy when their model ends in one (hls4ml computes it with lookup tables, not bit-exact)."""
    import tensorflow as tf  # TensorFlow: ~2 s to import

    head = tf.keras.layers.Activation(activation, name=f"{model.name}_{activation}")(model.output)
    with_head = tf.keras.Model(model.inputs, head, name=model.name)
    graph, _ = build_graph(with_head, cfg, board, input_frac_bits, output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    with open(output_dir.parent / f"{output_dir.name}.log", "a") as log_file, contextlib.redirect_stdout(log_file):
        graph.write()
    return project_of(graph, cfg, output_dir)


def compile_project(project: HlsProject, opt_level: str = "O3", cache: bool = True) -> Path:
    """Build the C-simulation library at ``-<opt_level>``; returns the .so.

    The project's own sources, compiled as parallel, cached translation units (``flow/build_cache.py``; what was
    compiled or reused is in ``ftflow_build/build_info.json``); hls4ml's ``build_lib.sh`` is kept (with the level
    set in its CFLAGS, for users who rebuild by hand) and is run instead only when its form is not recognised."""
    return compile_projects([project], opt_level, cache)[0]


def compile_projects(projects: list[HlsProject], opt_level: str = "O3", cache: bool = True) -> list[Path]:
    """``compile_project`` for independent projects at once: one pool of compiler processes over every project's
    units, as many as there are cores (use this rather than threads around ``compile_project``)."""
    for project in projects:
        _set_script_opt(project, opt_level)
    results = build_libraries([p.directory for p in projects], opt_level, cache)
    libraries = []
    for project, result in zip(projects, results, strict=True):
        if result is None:
            _run_build_script(project)
        library = project.library()
        if library is None:
            raise FlowError(f"no C-sim library was built in {project.directory}/firmware (see build_lib.log)")
        libraries.append(library)
    return libraries


def _set_script_opt(project: HlsProject, opt_level: str) -> None:
    script = project.directory / "build_lib.sh"
    text = re.sub(r'CFLAGS="-O\d', f'CFLAGS="-{opt_level}', script.read_text(), count=1)
    if f'CFLAGS="-{opt_level}' not in text:
        raise FlowError(f'{script}: no CFLAGS="-O<n> line to set the optimisation level {opt_level}')
    script.write_text(text)


def _run_build_script(project: HlsProject) -> None:
    result = subprocess.run(
        ["bash", "build_lib.sh"], cwd=project.directory, capture_output=True, text=True, check=False
    )
    (project.directory / "build_lib.log").write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        errors = [line for line in result.stderr.splitlines() if "error" in line.lower()][:3]
        detail = " | ".join(errors) or result.stderr[-300:]
        raise FlowError(f"g++ failed to compile {project.directory} (see build_lib.log): {detail}")


def convert(model, cfg: HlsConfig, board: Board, input_frac_bits: int, output_dir: Path) -> tuple[HlsProject, dict]:
    """Write the hls4ml project (with the fault-injection bridge) and compile its C-simulation library.
    Returns (project, hls4ml config)."""
    graph, config = write_project(model, cfg, board, input_frac_bits, output_dir)
    project = project_of(graph, cfg, output_dir)
    compile_project(project, cfg.csim_opt.value, cfg.csim_cache)
    return project, config


def project_of(graph, cfg: HlsConfig, output_dir: Path) -> HlsProject:
    """Describe a compiled ModelGraph for later steps and runs."""
    return HlsProject(
        directory=output_dir.resolve(),
        project_name=cfg.project_name,
        backend=cfg.backend.value,
        io_type=cfg.io_type.value,
        n_inputs=int(graph.get_input_variables()[0].size()),
        n_outputs=int(graph.get_output_variables()[0].size()),
    )
