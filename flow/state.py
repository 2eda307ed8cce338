"""The run state passed from step to step, and its on-disk manifest so a later run can resume."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flow.data import Dataset
from flow.errors import FlowError
from flow.hls import HlsProject
from flow.rundir import read_json, write_json

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class RunState:
    """What the steps have produced so far; steps return an updated copy (``dataclasses.replace``)."""

    out: Path
    data: Dataset | None = None
    model: Any = None  # the current QKeras model (the latest step's)
    project: HlsProject | None = None
    summary: dict[str, dict] = field(default_factory=dict)  # per step, what the CLI prints

    def step_dir(self, step: str) -> Path:
        """``<out>/<step>/``, created."""
        path = self.out / step
        path.mkdir(parents=True, exist_ok=True)
        return path

    def with_summary(self, step: str, **values: Any) -> RunState:
        return dataclasses.replace(self, summary={**self.summary, step: values})

    def record(self, **artefacts: Path | None) -> None:
        """Note artefacts (paths) in the manifest so later runs find them; None forgets one."""
        manifest = read_manifest(self.out)
        for key, value in artefacts.items():
            if value is None:
                manifest.pop(key, None)
            else:
                manifest[key] = str(Path(value).resolve().relative_to(self.out.resolve()))
        write_json(self.out / MANIFEST, manifest)

    def note(self, **values: Any) -> None:
        """Store plain values (keys, the lineage) in the manifest; None forgets one."""
        manifest = read_manifest(self.out)
        for key, value in values.items():
            if value is None:
                manifest.pop(key, None)
            else:
                manifest[key] = value
        write_json(self.out / MANIFEST, manifest)

    def artefact(self, key: str, needed_by: str, made_by: str) -> Path:
        """Path of a recorded artefact, or an error telling which step makes it."""
        rel = read_manifest(self.out).get(key)
        if rel is None or not (self.out / rel).exists():
            raise FlowError(
                f"step '{needed_by}' needs the {key} from step '{made_by}' in {self.out}; run that step first"
            )
        return self.out / rel


def read_manifest(out: Path) -> dict:
    """What earlier runs recorded in ``out``; {} when there is none or it is unreadable (with a warning)."""
    return read_json(Path(out) / MANIFEST) or {}
