"""``ftflow export OUT``: copy each chosen variant's hls4ml project out of a run directory as a self-contained
project (our correction header included, board part and clock set in project.tcl) without build products."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from flow.errors import FlowError
from flow.hls import HlsProject
from flow.outdir import usable_out_dir
from flow.rundir import write_text_atomic
from flow.schema import closest
from flow.state import read_manifest

BUILD_PRODUCTS = ("*.so", "*.o", "build_lib.log", "*_prj", "ftflow_build")
BUILD_COMMAND = '{tool} -f build_prj.tcl "reset=1 csim=0 synth=1 cosim=0 validation=0 export=1 vsynth=0"'


def available_projects(out: Path) -> dict[str, Path]:
    """Variant name -> its hls4ml project: every ``compare/<variant>`` run and the run itself (``run``)."""
    projects = {}
    runs = [("run", Path(out))] + [(d.name, d) for d in sorted((Path(out) / "compare").glob("*")) if d.is_dir()]
    for name, directory in runs:
        manifest = read_manifest(directory)
        rel = manifest.get("ip_project") or manifest.get("project")  # with hls.keep_softmax: the softmax head
        if rel and (directory / rel).is_file():
            projects[name] = HlsProject.load(directory / rel).directory  # relative to the json: this run's own
    return projects


def export_projects(out: Path, variants: list[str] | None = None, dest: Path | None = None) -> list[Path]:
    """Copy the chosen variants' projects (default: all) to ``dest/<variant>`` (default ``<out>/export``)."""
    projects = available_projects(out)
    if not projects:
        raise FlowError(f"export: no converted hls4ml project in {out} (run the convert step or ftflow compare)")
    chosen = variants or list(projects)
    for name in chosen:
        if name not in projects:
            raise FlowError(f"export: no variant '{name}' in {out}{closest(name, list(projects))}; "
                            f"available: {', '.join(projects)}")  # fmt: skip
        if not projects[name].is_dir():
            raise FlowError(f"export: variant '{name}': its hls4ml project {projects[name]} is missing; "
                            "run the convert step (or ftflow compare) again")  # fmt: skip
    dest = usable_out_dir(Path(dest) if dest else Path(out) / "export", "--dest" if dest else "export directory")
    written = []
    for name in chosen:
        target = dest / name
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(projects[name], target, ignore=shutil.ignore_patterns(*BUILD_PRODUCTS))
        write_text_atomic(target / "EXPORT.md", _instructions(name, target))
        written.append(target)
    return written


def _instructions(name: str, project: Path) -> str:
    tcl = (project / "project.tcl").read_text()
    setting = {key: re.search(rf"set {key} \"?([^\"\n]+)\"?", tcl) for key in ("project_name", "part", "clock_period")}
    values = {key: match.group(1) if match else "?" for key, match in setting.items()}
    config = (project / "hls4ml_config.yml").read_text() if (project / "hls4ml_config.yml").is_file() else ""
    tool = "vitis_hls" if "Backend: Vitis" in config else "vivado_hls"
    return (
        f"# {name}: hls4ml project exported by ftflow\n\n"
        f"Top function `{values['project_name']}`, part `{values['part']}`, clock {values['clock_period']} ns "
        "(project.tcl). Correction layers use `firmware/nnet_utils/nnet_correction.h` (included).\n\n"
        f"C synthesis and IP export with the project's own script:\n\n    {BUILD_COMMAND.format(tool=tool)}\n\n"
        "C simulation library (g++ only, as ftflow uses it): `bash build_lib.sh`.\n"
        "`*_bridge.cpp` holds ftflow's fault-injection hooks; it is used by build_lib.sh only, never synthesised.\n"
    )
