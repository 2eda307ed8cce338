"""Run a compiled hls4ml project's C-simulation library through ctypes, without hls4ml or the Keras model, and
inject faults into its weight arrays in memory (through the bridge of ``flow/fi_bridge.py``)."""

from __future__ import annotations

import ctypes

import numpy as np
import numpy.ctypeslib as npc

from flow.errors import FlowError
from flow.fixedpoint import FaultKind
from flow.hls import HlsProject

KIND_CODES = {FaultKind.FLIP: 0, FaultKind.STUCK0: 1, FaultKind.STUCK1: 2}


class CSimLibrary:
    """The compiled ``firmware/<project>-<stamp>.so`` of one hls4ml project (single input, single output).

    Each process that loads it has its own copy of the weights, so faults never leak between processes."""

    def __init__(self, project: HlsProject):
        library = project.library()
        if library is None:
            raise FlowError(f"no compiled C-sim library in {project.directory}/firmware; run the convert step")
        self.project = project
        self.path = library
        self._lib = ctypes.CDLL(str(self.path))
        floats = npc.ndpointer(ctypes.c_float, flags="C_CONTIGUOUS")
        self._top = getattr(self._lib, f"{project.project_name}_float")
        self._top.restype = None
        self._top.argtypes = [floats, floats]
        self._batch = getattr(self._lib, "fi_batch", None)
        if self._batch is not None:
            self._batch.restype = None
            self._batch.argtypes = [floats, floats, ctypes.c_int]

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Outputs (N, n_outputs) as float32 for inputs (N, ...)."""
        x = np.ascontiguousarray(x, dtype=np.float32).reshape(len(x), -1)
        if x.shape[1] != self.project.n_inputs:
            raise FlowError(
                f"C-sim input has {x.shape[1]} values per sample, the project expects {self.project.n_inputs}"
            )
        y = np.zeros((len(x), self.project.n_outputs), dtype=np.float32)
        if self._batch is not None:
            self._batch(x, y, len(x))
        else:
            for i in range(len(x)):
                self._top(x[i], y[i])
        return y


class FaultableLibrary(CSimLibrary):
    """A C-sim library with the fault-injection bridge: inject bit faults into weight arrays, then restore."""

    def __init__(self, project: HlsProject):
        super().__init__(project)
        from flow.fi_bridge import read_table

        if not hasattr(self._lib, "fi_inject"):
            raise FlowError(f"{self.path} has no fault-injection bridge; convert the model again with this ftflow")
        self.arrays = read_table(project.directory)
        self._lib.fi_inject.restype = ctypes.c_int
        self._lib.fi_inject.argtypes = [ctypes.c_int, ctypes.c_uint, ctypes.c_uint, ctypes.c_int]
        self._lib.fi_restore.restype = None
        for fn in ("fi_array_length", "fi_array_width"):
            getattr(self._lib, fn).restype = ctypes.c_uint
            getattr(self._lib, fn).argtypes = [ctypes.c_int]
        if self._lib.fi_array_count() != len(self.arrays):
            raise FlowError(f"{self.path}: the array table does not match the compiled bridge; convert again")
        for i, row in enumerate(self.arrays):
            if (self._lib.fi_array_length(i), self._lib.fi_array_width(i)) != (row["length"], row["width"]):
                raise FlowError(f"{self.path}: array {row['name']} differs from the table; convert again")
        self.index = {row["name"]: i for i, row in enumerate(self.arrays)}
        self.predict(np.zeros((1, project.n_inputs), np.float32))  # the first call loads the weights from txt

    def inject(self, array: str, index: int, bit: int, kind: FaultKind = FaultKind.FLIP) -> bool:
        """Set one bit of one word; returns whether the bit changed. Stays until ``restore``."""
        if array not in self.index:
            raise FlowError(f"no weight array '{array}' in the project; arrays: {', '.join(self.index)}")
        row = self.arrays[self.index[array]]
        code = self._lib.fi_inject(self.index[array], index, bit, KIND_CODES[FaultKind(kind)])
        if code < 0:
            raise FlowError(
                f"fault out of range for {array} ({row['layer']}): index {index} (0..{row['length'] - 1}), "
                f"bit {bit} (0..{row['width'] - 1})"
            )
        return code == 1

    def restore(self) -> None:
        """Undo every injected fault (in reverse order)."""
        self._lib.fi_restore()
