"""Run a compiled hls4ml project's C-simulation library through ctypes, without hls4ml or the Keras model."""

from __future__ import annotations

import ctypes

import numpy as np
import numpy.ctypeslib as npc

from flow.errors import FlowError
from flow.hls import HlsProject


class CSimLibrary:
    """The compiled ``firmware/<project>-<stamp>.so`` of one hls4ml project (single input, single output)."""

    def __init__(self, project: HlsProject):
        library = project.library()
        if library is None:
            raise FlowError(f"no compiled C-sim library in {project.directory}/firmware; run the convert step")
        self.project = project
        self.path = library
        self._lib = ctypes.CDLL(str(self.path))
        self._top = getattr(self._lib, f"{project.project_name}_float")
        self._top.restype = None
        self._top.argtypes = [npc.ndpointer(ctypes.c_float, flags="C_CONTIGUOUS")] * 2

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Outputs (N, n_outputs) as float32 for inputs (N, ...)."""
        x = np.ascontiguousarray(x, dtype=np.float32).reshape(len(x), -1)
        if x.shape[1] != self.project.n_inputs:
            raise FlowError(
                f"C-sim input has {x.shape[1]} values per sample, the project expects {self.project.n_inputs}"
            )
        y = np.zeros((len(x), self.project.n_outputs), dtype=np.float32)
        for i in range(len(x)):
            self._top(x[i], y[i])
        return y
