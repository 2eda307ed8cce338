"""RTL of an hls4ml ModelGraph with da4ml: every layer its own Verilog module (combinational adder graph), a
top module wiring them, copies of hardened layers as ``(* keep_hierarchy *)`` instances; simulated with Verilator
or Icarus Verilog on test samples."""

from __future__ import annotations

import contextlib
import io
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from flow.errors import FlowError
from flow.hardware.rtl_trace import kif, layer_units

WIRING = ("Input", "Reshape")
COPY = re.compile(r"_copy\d+$")
LINT_CODES = re.compile(r"/\*\s*verilator lint_(?:on|off) WIDTHTRUNC\s*\*/")


@dataclass(frozen=True)
class Port:
    """A bus of ``n`` fixed-point numbers of one format: signed (k), integer bits without sign (i), fraction (f)."""

    k: int
    i: int
    f: int
    n: int

    @property
    def width(self) -> int:
        return self.k + self.i + self.f

    @property
    def bits(self) -> int:
        return self.width * self.n

    def encode(self, values: np.ndarray) -> list[int]:
        """Each row of ``values`` as one bus word (element 0 in the lowest bits)."""
        raw = np.rint(np.asarray(values, dtype=np.float64) * 2.0**self.f).astype(object) % (1 << self.width)
        return [sum(int(v) << (self.width * j) for j, v in enumerate(row)) for row in raw.reshape(len(raw), -1)]

    def decode(self, word: int) -> np.ndarray:
        mask = (1 << self.width) - 1
        ints = [(word >> (self.width * j)) & mask for j in range(self.n)]
        if self.k:
            ints = [v - (1 << self.width) if v >> (self.width - 1) else v for v in ints]
        return np.array(ints, dtype=np.float64) * 2.0**-self.f


@dataclass(frozen=True)
class UnitModule:
    """A unit's module ``<name>_wrapper``: its buses and its own files (da4ml's library ones not included)."""

    inp: Port
    out: Port
    files: list[Path]


@dataclass
class RtlDesign:
    """What ``write_rtl`` produced: the top module's name and ports, every module's ports, the Verilog files."""

    top: str
    inp: Port
    out: Port
    modules: dict[str, tuple[Port, Port]] = field(default_factory=dict)  # layer -> (input bus, output bus)
    files: list[Path] = field(default_factory=list)
    units: dict[str, UnitModule] = field(default_factory=dict)  # unit module name -> ports and files
    instances: dict[str, dict[str, int]] = field(default_factory=dict)  # layer -> {unit module: instances}
    library: list[Path] = field(default_factory=list)  # da4ml's library modules the layers instantiate


def _port(kifs: np.ndarray) -> Port:
    k, i, f = (int(np.asarray(a).max()) for a in kifs)
    return Port(k, i, f, int(np.asarray(kifs[0]).size))


def _widest(ports: list[Port]) -> Port:
    """One format holding every value of ``ports`` (their elements concatenated)."""
    return Port(max(p.k for p in ports), max(p.i for p in ports), max(p.f for p in ports), sum(p.n for p in ports))


def _unit_module(name: str, unit, formats: np.ndarray, directory: Path) -> UnitModule:
    """Trace one unit into its own da4ml module ``<name>_wrapper``; ``formats``: (k, i, f) of each input element
    (its source's). da4ml's wrapper gives all elements of a bus one format: the widest of them."""
    from da4ml.codegen import VerilogModel  # da4ml: ~0.9 s to import
    from da4ml.codegen.rtl.rtl_model import get_io_kifs
    from da4ml.trace import FixedVariableArrayInput, comb_trace

    raw = FixedVariableArrayInput((len(unit.inputs),))
    comb = comb_trace(raw, unit.fn(raw.quantize(*formats.T)))
    in_kifs, out_kifs = get_io_kifs(comb)
    with contextlib.redirect_stdout(io.StringIO()):
        VerilogModel(comb, name, directory / name, print_latency=False).write()
    src = directory / name / "src"
    return UnitModule(_port(in_kifs), _port(out_kifs), [src / f"{name}.v", src / f"{name}_wrapper.v"])


def _layer_module(
    layer, sources: list[Port], directory: Path
) -> tuple[Port, Port, Path, dict[str, UnitModule], dict[str, int]]:
    """The layer as module ``<layer>_wrapper`` instantiating one module per distinct unit (rtl_trace.layer_units):
    returns (input bus: the sources concatenated in their widest format, output bus, the layer's own file (wiring
    only), the unit modules, instances of each)."""
    in_port = _widest(sources)
    formats = np.array([(p.k, p.i, p.f) for p in sources for _ in range(p.n)])  # each input element's own
    units = layer_units(layer)
    names: dict[tuple, str] = {}  # (unit key, input formats) -> its module
    modules: dict[str, UnitModule] = {}
    unit_names = []  # each unit's module
    for unit in units:
        key = unit.key, formats[unit.inputs].tobytes()
        if key not in names:
            names[key] = f"{layer.name}_unit{len(names)}"
            modules[names[key]] = _unit_module(names[key], unit, formats[unit.inputs], directory)
        unit_names.append(names[key])
    out_port = _widest([modules[name].out for name in unit_names])
    body, outputs = [], []
    for j, (unit, name) in enumerate(zip(units, unit_names, strict=True)):
        module = modules[name]
        if module.out.bits == 0:  # every output a constant zero: nothing to instantiate
            outputs += [f"{out_port.width}'b0"] * module.out.n
            continue
        inputs = [_convert("model_inp", in_port, module.inp, int(e)) for e in unit.inputs]
        body.append(f"    wire [{module.out.bits - 1}:0] u{j}_out;")
        body.append(f"    {name}_wrapper u{j} (.model_inp({{{', '.join(reversed(inputs))}}}), .model_out(u{j}_out));")
        outputs += [_convert(f"u{j}_out", module.out, out_port, e) for e in range(module.out.n)]
    path = directory / f"{layer.name}_wrapper.v"
    ports = f"input [{in_port.bits - 1}:0] model_inp, output [{out_port.bits - 1}:0] model_out"
    assign = f"    assign model_out = {{{', '.join(reversed(outputs))}}};"
    path.write_text(f"module {layer.name}_wrapper ({ports});\n" + "\n".join([*body, assign]) + "\nendmodule\n")
    instances = {name: unit_names.count(name) for name in modules}
    return in_port, out_port, path, modules, instances


def _convert(bus: str, src: Port, dst: Port, index: int) -> str:
    """Verilog expression of exactly ``dst.width`` bits: element ``index`` of ``bus`` (format src) in format dst."""
    lo = index * src.width
    zeros = max(0, dst.f - src.f)  # new fraction bits below
    first = max(0, src.f - dst.f)  # source fraction bits dropped (never set: the values were cast to src)
    last = min(src.width - 1, first + dst.width - zeros - 1)
    extend = dst.width - zeros - (last - first + 1)  # sign (or zero) extension above
    sign = f"{bus}[{lo + src.width - 1}]" if src.k else "1'b0"
    parts = [f"{{{extend}{{{sign}}}}}"] if extend else []
    parts.append(f"{bus}[{lo + last}:{lo + first}]")
    parts += [f"{zeros}'b0"] if zeros else []
    return "{" + ", ".join(parts) + "}"


def write_rtl(graph, directory: Path, name: str = "model", keep_copies: bool = True) -> RtlDesign:
    """Verilog for every computing layer of ``graph`` and a top module ``<name>_top`` in ``directory``."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    layers = list(graph.get_layers())
    signal: dict[str, tuple[str, Port]] = {}  # output variable -> (wire, port)
    body, files = [], []
    design = None
    for layer in layers:
        out_var = layer.outputs[0]
        if layer.class_name == "Input":
            k, i, f = kif(layer.get_output_variable().type.precision)
            port = Port(k, i, f, int(np.prod(layer.get_output_variable().shape)))
            signal[out_var] = ("model_inp", port)
            design = RtlDesign(f"{name}_top", port, port)
            continue
        sources = [signal[v] for v in layer.inputs]
        if layer.class_name in WIRING:
            signal[out_var] = sources[0]
            continue
        in_port, out_port, wiring, units, design.instances[layer.name] = _layer_module(
            layer, [p for _, p in sources], directory
        )
        files += [wiring, *(path for unit in units.values() for path in unit.files)]
        design.modules[layer.name] = (in_port, out_port)
        design.units.update(units)
        wire = f"w_{layer.name}"
        inputs = [_convert(bus, p, in_port, j) for bus, p in sources for j in range(p.n)]
        body.append(f"    wire [{out_port.bits - 1}:0] {wire};")
        attribute = "(* keep_hierarchy *) " if keep_copies and COPY.search(layer.name) else ""
        body.append(
            f"    {attribute}{layer.name}_wrapper u_{layer.name} (.model_inp({{{', '.join(reversed(inputs))}}}), "
            f".model_out({wire}));"
        )
        signal[out_var] = (wire, out_port)
    last_wire, design.out = signal[layers[-1].outputs[0]]
    top = directory / f"{design.top}.v"
    ports = f"input [{design.inp.bits - 1}:0] model_inp, output [{design.out.bits - 1}:0] model_out"
    top.write_text(
        f"module {design.top} ({ports});\n" + "\n".join(body) + f"\n    assign model_out = {last_wire};\nendmodule\n"
    )
    static = {p.stem: p for d in directory.glob("*/src/static") for p in d.glob("*.v")}
    used = " ".join(path.read_text() for path in files)  # da4ml's library modules the layers instantiate
    static = [path for stem, path in sorted(static.items()) if re.search(rf"\b{stem}\b", used)]
    for path in static:  # lint codes newer than Debian's Verilator 5.006 are errors there; they are comments
        path.write_text(LINT_CODES.sub("", path.read_text()))
    design.files, design.library = [top, *files, *static], static
    return design


TESTBENCH = """`timescale 1ns/1ps
module tb;
    reg [{in_msb}:0] samples [0:{last}];
    reg [{in_msb}:0] model_inp;
    wire [{out_msb}:0] model_out;
    integer i, fd;
    {top} dut (.model_inp(model_inp), .model_out(model_out));
    initial begin
        $readmemh("inputs.hex", samples);
        fd = $fopen("outputs.hex", "w");
        for (i = 0; i <= {last}; i = i + 1) begin
            model_inp = samples[i];
            #1 $fdisplay(fd, "%h", model_out);
        end
        $fclose(fd);
        $finish;
    end
endmodule
"""


def require_tool(tool: str, purpose: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise FlowError(f"{purpose} needs '{tool}' on PATH (Debian/Ubuntu: apt-get install {tool}); none found")
    return path


def require_simulator(simulator: str, purpose: str) -> str:
    """The simulator to use: ``auto`` is verilator when on PATH, else iverilog; a clear error when it is missing."""
    if simulator == "auto":
        simulator = "verilator" if shutil.which("verilator") else "iverilog"
    if simulator not in SIMULATORS:
        raise FlowError(f"{purpose}: simulator '{simulator}' is unknown (allowed: auto, {', '.join(SIMULATORS)})")
    require_tool(simulator, purpose)
    return simulator


def simulate(design: RtlDesign, x: np.ndarray, directory: Path, simulator: str = "auto") -> np.ndarray:
    """Outputs of the top module for every row of ``x``, decoded to numbers. ``simulator``: verilator (compiled,
    fast on big adder graphs), iverilog (event-driven: zero-delay glitches make conv models take minutes per
    sample), or auto = verilator when on PATH, else iverilog."""
    simulator = require_simulator(simulator, "RTL simulation")
    directory.mkdir(parents=True, exist_ok=True)
    digits = -(-design.inp.bits // 4)
    (directory / "inputs.hex").write_text("".join(f"{w:0{digits}x}\n" for w in design.inp.encode(x)))
    (directory / "tb.v").write_text(
        TESTBENCH.format(in_msb=design.inp.bits - 1, out_msb=design.out.bits - 1, last=len(x) - 1, top=design.top)
    )
    sources = [str(directory / "tb.v"), *map(str, design.files)]
    for command in SIMULATORS[simulator](shutil.which(simulator), sources):
        result = subprocess.run(command, cwd=directory, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise FlowError(f"{command[0]} failed in {directory}: {(result.stderr or result.stdout)[-400:]}")
    lines = (directory / "outputs.hex").read_text().split()
    if len(lines) != len(x) or any(set(line) - set("0123456789abcdef") for line in lines):
        raise FlowError(f"RTL simulation in {directory} gave undefined or missing outputs (see outputs.hex)")
    return np.array([design.out.decode(int(line, 16)) for line in lines])


def _icarus(tool: str, sources: list[str]) -> list[list[str]]:
    return [[tool, "-g2012", "-o", "sim.vvp", *sources], ["vvp", "-n", "sim.vvp"]]


def _verilator(tool: str, sources: list[str]) -> list[list[str]]:
    # -O0: the generated C++ is one huge function per module; optimising it costs minutes and saves milliseconds.
    # --inline-mult -1 inlines every unit instance: three times less C++ than one class per unit module
    flags = ["--binary", "--timing", "--inline-mult", "-1", "-j", "2", "-Wno-fatal", "-Wno-lint", "-Wno-style"]
    flags += ["--top-module", "tb"]
    make = ["-Mdir", "obj", "-MAKEFLAGS", "OPT_FAST=-O0 OPT_SLOW=-O0 OPT_GLOBAL=-O0"]
    return [[tool, *flags, *make, *sources], ["obj/Vtb"]]


SIMULATORS = {"verilator": _verilator, "iverilog": _icarus}
