"""Run a compiled hls4ml project's C-simulation library through ctypes, without hls4ml or the Keras model, and
inject faults into its weight arrays in memory (through the bridge of ``flow/fi_bridge.py``)."""

from __future__ import annotations

import ctypes
import hashlib
import struct
from pathlib import Path

import numpy as np
import numpy.ctypeslib as npc

from flow.errors import FlowError
from flow.fi_bridge import TENSORS, read_table, read_tensors
from flow.fixedpoint import FaultKind
from flow.hls import HlsProject
from flow.rundir import read_json, write_json

KIND_CODES = {FaultKind.FLIP: 0, FaultKind.STUCK0: 1, FaultKind.STUCK1: 2}
LIBRARY_RECORD = "ftflow_build/library.json"  # name, size and SHA-256 of the library the convert step built
PT_LOAD = 1
PHDR = struct.Struct("<IIQQQQQQ")  # an ELF64 program header: type, flags, offset, vaddr, paddr, filesz, ...


def record_library(project: HlsProject) -> Path | None:
    """Note the size and SHA-256 of the project's compiled library, which every load checks."""
    library = project.library()
    if library is None:
        return None
    record = project.directory / LIBRARY_RECORD
    record.parent.mkdir(exist_ok=True)
    size, digest = _digest(library)
    return write_json(record, {"name": library.name, "size": size, "sha256": digest})


def check_library(path: Path, record: Path) -> None:
    """Refuse a library that is truncated (shorter than its ELF headers say: loading it would end the process
    with SIGBUS) or is not the one that was built (size or SHA-256 differ from ``record``, when there is one)."""
    problem = _elf_problem(path) or _record_problem(path, record)
    if problem:
        raise FlowError(f"C-sim library {path} is {problem}; run the convert step again to rebuild it")


def _digest(path: Path) -> tuple[int, str]:
    with open(path, "rb") as f:
        return path.stat().st_size, hashlib.file_digest(f, "sha256").hexdigest()


def _elf_problem(path: Path) -> str | None:
    """Why ``path`` is not a whole ELF file (its loadable segments and section headers inside it), or None."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(64)
        if len(head) < 64 or head[:4] != b"\x7fELF":
            return f"not a shared library ({size} bytes, no ELF header)"
        if head[4:6] != b"\x02\x01":  # not 64-bit little-endian: left to the loader
            return None
        phoff, shoff = struct.unpack_from("<QQ", head, 32)
        phentsize, phnum, shentsize, shnum = struct.unpack_from("<HHHH", head, 54)
        f.seek(phoff)
        table = f.read(phnum * phentsize)
    end = max(shoff + shnum * shentsize, phoff + phnum * phentsize)
    if phentsize == PHDR.size:  # a short table is caught by ``end`` already
        segments = PHDR.iter_unpack(table[: len(table) // PHDR.size * PHDR.size])
        end = max([end] + [offset + filesz for kind, _, offset, _, _, filesz, _, _ in segments if kind == PT_LOAD])
    return f"truncated ({size} bytes, its ELF headers need {end})" if size < end else None


def _record_problem(path: Path, record: Path) -> str | None:
    """How ``path`` differs from what its build recorded, or None (also when nothing was recorded for it)."""
    built = read_json(record)
    if not built or built.get("name") != path.name:
        return None
    if path.stat().st_size != built.get("size"):
        return f"truncated or changed ({path.stat().st_size} bytes, {built.get('size')} when built)"
    return None if _digest(path)[1] == built.get("sha256") else "changed since it was built (its SHA-256 differs)"


class CSimLibrary:
    """The compiled ``firmware/<project>-<stamp>.so`` of one hls4ml project (single input, single output).

    Each process that loads it has its own copy of the weights, so faults never leak between processes."""

    def __init__(self, project: HlsProject):
        library = project.library()
        if library is None:
            raise FlowError(f"no compiled C-sim library in {project.directory}/firmware; run the convert step")
        self.project = project
        self.path = library
        check_library(library, project.directory / LIBRARY_RECORD)
        try:
            self._lib = ctypes.CDLL(str(self.path))
        except OSError as exc:
            raise FlowError(f"C-sim library {library} cannot be loaded ({exc}); run the convert step again") from None
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

    def fast_problem(self) -> str | None:
        """Why ``FastEvaluator`` cannot run on this library, or None."""
        unsupported = getattr(self._lib, "fi_fast_unsupported", None)
        if unsupported is not None:
            unsupported.restype = ctypes.c_char_p
            return f"its top function is not understood ({unsupported().decode()})"
        if not hasattr(self._lib, "fi_fast_group"):
            return "the library has no fast-evaluation entry points (built by an older ftflow or by build_lib.sh)"
        return None


def activation_tensors(lib: FaultableLibrary) -> list[dict]:
    """The tensor table of a library's project (the sites of activation faults), or a clear error saying why
    activation faults cannot run on it."""
    problem = lib.fast_problem()
    if problem:
        raise FlowError(f"activation faults need the fast evaluation, not available for {lib.path.name}: {problem}")
    table = read_tensors(lib.project.directory)
    if table is None or not hasattr(lib._lib, "fi_fast_act_group"):
        raise FlowError(f"{lib.project.directory} has no tensor table ({TENSORS}) or activation-fault hook: it was "
                        "converted by an older ftflow; run the convert step again")  # fmt: skip
    if "unsupported" in table:
        raise FlowError(f"activation faults need the fast evaluation: {table['unsupported']}")
    return table["tensors"]


class FastEvaluator:
    """Faults evaluated on a fixed batch from the first layer that reads a changed array onward, layer by layer,
    stopping once no tensor still needed differs from the fault-free run (``<project>_fi_fast.cpp``, generated by
    flow/fi_bridge.py). The fault-free tensors of the batch are captured once, from the C-sim; every fault's
    outputs equal those of ``predict`` under it. The batch lives in the loaded library (one per process): a newer
    evaluator on the same library replaces it, and the older one then refuses to run."""

    def __init__(self, lib: FaultableLibrary, x: np.ndarray):
        problem = lib.fast_problem()
        if problem:
            raise FlowError(f"fast evaluation is not available for {lib.path.name}: {problem}")
        self.lib, self._c = lib, lib._lib
        ints, uints = npc.ndpointer(np.int32, flags="C_CONTIGUOUS"), npc.ndpointer(np.uint32, flags="C_CONTIGUOUS")
        floats = npc.ndpointer(np.float32, flags="C_CONTIGUOUS")
        self._c.fi_fast_capture.argtypes = [floats, ctypes.c_int, floats]
        sizes = [ctypes.c_int, ctypes.c_int]  # the capture's generation, the number of faults
        self._c.fi_fast_group.argtypes = [*sizes, ints, ints, uints, uints, ints, floats, ints, ints]
        self._c.fi_fast_release.restype = None
        self._c.fi_fast_act_group.argtypes = [*sizes, ints, ints, ints, uints, uints, ints, floats, ints, ints]
        self._c.fi_fast_tensor.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_uint), ctypes.POINTER(ctypes.c_int)]
        self.n_calls = int(self._c.fi_fast_calls())
        x = np.ascontiguousarray(x, dtype=np.float32).reshape(len(x), -1)
        if len(x) == 0 or x.shape[1] != lib.project.n_inputs:
            raise FlowError(f"fast evaluation needs samples of {lib.project.n_inputs} values, got shape {x.shape}")
        self.golden = np.zeros((len(x), lib.project.n_outputs), np.float32)
        self._generation = self._c.fi_fast_capture(x, len(x), self.golden)  # one batch per loaded library
        if self._generation < 0:
            raise FlowError(f"{lib.path.name}: a layer wrote a different number of stream words for some sample")
        if not np.array_equal(self.golden, lib.predict(x)):
            raise FlowError(f"{lib.path.name}: the layer-by-layer outputs differ from the top function's")

    def evaluate(self, faults: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For G faults (tuples of bit faults, each injected alone and restored): the outputs (G, N, n_outputs),
        whether each stopped before the network's last layer (or had no bit to change), and the calls it ran."""
        bits = [b for fault in faults for b in fault]
        for b in bits:
            if b.array not in self.lib.index or b.index < 0 or b.bit < 0:
                self._raise_out_of_range((b,))  # FaultableLibrary.inject's error, naming the arrays or ranges
        bit_at = np.cumsum([0, *map(len, faults)], dtype=np.int32)
        array = np.array([self.lib.index[b.array] for b in bits] or [0], np.int32)
        index = np.array([b.index for b in bits] or [0], np.uint32)
        bit = np.array([b.bit for b in bits] or [0], np.uint32)
        kind = np.array([KIND_CODES[FaultKind(b.kind)] for b in bits] or [0], np.int32)
        out = np.zeros((len(faults), *self.golden.shape), np.float32)
        status, calls = np.zeros(len(faults), np.int32), np.zeros(len(faults), np.int32)
        done = self._c.fi_fast_group(self._generation, len(faults), bit_at, array, index, bit, kind, out, status, calls)
        if done == -1:
            raise FlowError(f"{self.lib.path.name}: this evaluator's batch was released or replaced by another's")
        if done < 0:
            raise FlowError(f"{self.lib.path.name}: a layer wrote a different number of stream words under a fault")
        if done < len(faults):
            self._raise_out_of_range(faults[done])
        out[(status & 1) == 0] = self.golden
        return out, (status & 2) != 0, calls

    def tensors(self) -> list[dict]:
        """The rows of the project's tensor table (flow/fi_bridge.py ``tensor_table``), checked against the compiled
        tensors (elements per sample, bits per element); a clear error when the project has none."""
        if getattr(self, "_tensors", None) is not None:
            return self._tensors
        table = activation_tensors(self.lib)
        for row in table:
            elements, width = ctypes.c_uint(0), ctypes.c_int(0)
            self._c.fi_fast_tensor(row["id"], ctypes.byref(elements), ctypes.byref(width))
            if (elements.value, width.value) != (row["length"], row["width"]):
                raise FlowError(
                    f"{self.lib.path.name}: tensor {row['name']} ({row['layer']}) has {elements.value} elements of "
                    f"{width.value} bits in C, {row['length']} of {row['width']} in its table; convert again"
                )
        self._tensors = table
        return self._tensors

    def evaluate_act(self, faults: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``evaluate`` for activation faults (tuples of ``ActBit`` of one tensor and one sample, -1 = every
        sample): each set after the layer call writing its tensor, evaluated from the next call on."""
        rows = {row["name"]: row for row in self.tensors()}
        bits = [b for fault in faults for b in fault]
        for fault in faults:
            check_act_fault(fault, rows, len(self.golden))
        bit_at = np.cumsum([0, *map(len, faults)], dtype=np.int32)
        tensor = np.array([rows[b.tensor]["id"] for b in bits] or [0], np.int32)
        sample = np.array([b.sample for b in bits] or [0], np.int32)
        element = np.array([b.element for b in bits] or [0], np.uint32)
        bit = np.array([b.bit for b in bits] or [0], np.uint32)
        kind = np.array([KIND_CODES[FaultKind(b.kind)] for b in bits] or [0], np.int32)
        out = np.zeros((len(faults), *self.golden.shape), np.float32)
        status, calls = np.zeros(len(faults), np.int32), np.zeros(len(faults), np.int32)
        args = (bit_at, tensor, sample, element, bit, kind, out, status, calls)
        done = self._c.fi_fast_act_group(self._generation, len(faults), *args)
        if done == -1:
            raise FlowError(f"{self.lib.path.name}: this evaluator's batch was released or replaced by another's")
        if done < 0:
            raise FlowError(f"{self.lib.path.name}: a layer wrote a different number of stream words under a fault")
        if done < len(faults):
            raise FlowError(f"{self.lib.path.name}: activation fault {faults[done]} refused by the C side")
        out[(status & 1) == 0] = self.golden
        return out, (status & 2) != 0, calls

    def _raise_out_of_range(self, fault) -> None:
        """Raise ``FaultableLibrary.inject``'s error for a fault the C side refused."""
        try:
            for b in fault:
                self.lib.inject(b.array, b.index, b.bit, b.kind)
        finally:
            self.lib.restore()
        raise FlowError(f"fault {fault} is out of range")

    def close(self) -> None:
        """Free the captured tensors."""
        self._c.fi_fast_release()


def check_act_fault(fault: tuple, rows: dict[str, dict], n_samples: int) -> None:
    """Refuse an activation fault naming what is wrong: an unknown tensor (listing the tensors and their layers),
    an element, bit or sample out of range, or bits on several tensors or samples."""
    if not fault:
        raise FlowError("activation fault without bits")
    for b in fault:
        row = rows.get(b.tensor)
        if row is None:
            names = ", ".join(f"{r['name']} ({r['layer']})" for r in rows.values())
            raise FlowError(f"activation fault: no tensor '{b.tensor}'; tensors: {names}")
        where = f"tensor {b.tensor} ({row['layer']})"
        if not 0 <= b.element < row["length"]:
            raise FlowError(f"activation fault: element {b.element} of {where}; allowed: 0..{row['length'] - 1}")
        if not 0 <= b.bit < row["width"]:
            raise FlowError(f"activation fault: bit {b.bit} of {where}; allowed: 0..{row['width'] - 1}")
        if not -1 <= b.sample < n_samples:
            raise FlowError(f"activation fault: sample {b.sample}; allowed: 0..{n_samples - 1}, or -1 (every sample)")
        if (b.tensor, b.sample) != (fault[0].tensor, fault[0].sample):
            raise FlowError(f"activation fault {fault}: its bits must hit one tensor and one sample")
