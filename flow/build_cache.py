"""Fast, cached builds of an hls4ml project's C-simulation library (what build_lib.sh builds, from the same sources).

hls4ml's ``build_lib.sh`` compiles the whole network as one translation unit. At io_parallel the generated im2col
code dominates it: ``firmware/nnet_utils/nnet_code_gen.h`` holds one ``fill_buffer_<n>`` class per convolution
with one assignment per buffered value (~500k on a 32x32x3 ResNet-8: 1100 s of g++ -O3, against ~5 s for all the
rest). Here the same sources are compiled as several translation units, run in parallel and cached by content:

- ``main``: ``firmware/<project>.cpp`` with the fill_buffer bodies only declared (``ftflow_build/code_gen_main.h``,
  a copy of nnet_code_gen.h with those bodies cut out, is included first; hls4ml's own copy is then skipped by its
  include guard), at ``hls.csim_opt``; then ``<project>_fi_fast.cpp`` when the project has one (ftflow's
  layer-by-layer fault evaluation, flow/fi_bridge.py: it calls the same layer template instances);
- ``fill_<n>[_<m>...]``: explicit instantiations of fill_buffer classes (their bodies verbatim) for the layer's
  input type and config, at ``FILL_OPT`` whatever ``hls.csim_opt``: pure data movement, whose compile time
  dominates and whose run time does not (~10 % of a ResNet-8 image). The weight headers are skipped there (their
  arrays live in ``main``) and the object's other global definitions are made weak (objcopy), so ``main``'s are
  the ones linked; small classes share a unit (each unit costs ~1.7 s of header parsing);
- ``bridge``: ``<project>_bridge.cpp`` (hls4ml's Python bridge and ftflow's fault-injection bridge), with
  ``ftflow_weights_dir()``: the C-sim reads its weights (hls4ml's ``load_weights_from_txt`` of every
  ``firmware/weights/*.txt`` on the first call) from ``<directory of the loaded .so>/weights`` (dladdr), where
  build_lib.sh bakes in the project's absolute path (``-D WEIGHTS_DIR``). So one library serves every project
  of the same code, whatever its weights: the values in ``weights/*.h`` are compiled only under
  ``__SYNTHESIS__``.

Cache (``$FTFLOW_CACHE/csim``, else ``~/.cache/ftflow/csim``; least recently used entries beyond
``$FTFLOW_CSIM_CACHE_MB``, default 4000, are dropped): an object per unit and a library per project. A unit's key
is the SHA-256 of ``CACHE_VERSION``, the compiler's identity (``g++ -v``, the driver's and cc1plus' real paths,
sizes and mtimes), its exact command line (flags, defines, opt level, the source's path relative to the project)
and its preprocessed text (``g++ -E`` with the same flags: every source and header as the compiler sees them,
system headers included, without comments and ``__SYNTHESIS__``-only weight values). A library's key is that of
its units in link order and the link line. Entries are written atomically with their SHA-256, which every read
checks (a corrupt or missing entry is rebuilt); a per-key ``fcntl`` lock keeps two processes (or threads) from
building the same entry twice. If the split build fails (code this module does not recognise), the project is
built as one unit, still cached; a build_lib.sh of another form is left to itself (the caller runs it).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from flow.errors import FlowError
from flow.rundir import write_json

CACHE_VERSION = "1"  # bump when the way units are generated or compiled changes
BUILD_DIR = "ftflow_build"  # in the project: generated wrapper sources, objects and build_info.json
INFO = "build_info.json"
FILL_OPT = "O0"  # g++ time of the im2col code at -O1 is ~2x that at -O0 (measured on ResNet-8)
FILL_GROUP_CHARS = 1_000_000  # ~6 s of g++ -O0: smaller fill_buffer classes share a unit
WEIGHTS_DIR_DEFINE = "-DWEIGHTS_DIR=ftflow_weights_dir()"
OPT_LEVELS = ("O0", "O1", "O2", "O3")

_WEIGHTS_DIR_H = """// ftflow: the C-sim reads its weights from <directory of this library>/weights (build_cache.py)
#ifndef FTFLOW_WEIGHTS_DIR_H_
#define FTFLOW_WEIGHTS_DIR_H_
__attribute__((visibility("hidden"))) const char *ftflow_weights_dir();
#endif
"""
_WEIGHTS_DIR_CPP = """#include "weights_dir.h"
#include <dlfcn.h>
#include <string>

const char *ftflow_weights_dir() {
    static std::string dir;
    if (dir.empty()) {
        Dl_info info;
        std::string lib;
        if (dladdr(reinterpret_cast<void *>(&ftflow_weights_dir), &info) && info.dli_fname)
            lib = info.dli_fname;
        std::size_t slash = lib.rfind('/');
        dir = (slash == std::string::npos ? std::string(".") : lib.substr(0, slash)) + "/weights";
    }
    return dir.c_str();
}
"""
_FILL_CLASS = re.compile(r"class (fill_buffer_\d+) : public nnet::FillConv[12]DBuffer<data_T, CONFIG_T> \{")
_QUOTE_INCLUDE = re.compile(r'^(\s*#\s*include\s+)"([^"]+)"', re.M)


def cache_root() -> Path:
    """$FTFLOW_CACHE/csim, else ~/.cache/ftflow/csim."""
    return Path(os.environ.get("FTFLOW_CACHE") or Path.home() / ".cache" / "ftflow") / "csim"


# ---- what build_lib.sh builds ----


@dataclass(frozen=True)
class BuildScript:
    cc: str
    cflags: tuple[str, ...]  # CFLAGS without its -O level (build_lib.sh: -fPIC)
    includes: tuple[str, ...]
    project: str
    stamp: str
    sources: tuple[str, ...]  # relative to the project directory: firmware/<project>.cpp, <project>_bridge.cpp


def read_build_script(directory: Path) -> BuildScript | None:
    """The compiler, include flags, project name, library stamp and sources of ``build_lib.sh`` (None when its
    form is not hls4ml's usual one)."""
    path = directory / "build_lib.sh"
    if not path.is_file():
        return None
    text = path.read_text()
    names = {"CC", "CFLAGS", "INCFLAGS", "PROJECT", "LIB_STAMP"}
    values = dict(re.findall(rf'^({"|".join(names)})="?([^"\n]*)"?\s*$', text, re.M))
    if set(values) != names:
        return None
    sources = [s.replace("${PROJECT}", values["PROJECT"]) for s in re.findall(r"-c (\S+) -o", text)]
    if not sources or any("$" in s or not (directory / s).is_file() for s in sources):
        return None
    cflags = tuple(flag for flag in values["CFLAGS"].split() if not re.fullmatch(r"-O\w*", flag))
    return BuildScript(values["CC"], cflags, tuple(values["INCFLAGS"].split()), values["PROJECT"],
                       values["LIB_STAMP"], tuple(sources))  # fmt: skip


@dataclass(frozen=True)
class Toolchain:
    cc: str
    flags: tuple[str, ...]  # the C++ standard and -fno-gnu-unique, as build_lib.sh probes them
    identity: str


@functools.cache
def toolchain(cc: str) -> Toolchain:
    """The compiler with build_lib.sh's flags and an identity string that changes with the installed compiler."""
    path = shutil.which(cc)
    if path is None:
        raise FlowError(f"{cc} not found: the C simulation needs a C++ compiler (apt-get install g++)")

    def accepts(flag: str) -> bool:
        probe = [cc, "-Werror", "-fsyntax-only", flag, "-xc++", "-", "-o", os.devnull]
        return subprocess.run(probe, input="", capture_output=True, text=True, check=False).returncode == 0

    flags = ["-std=c++23" if accepts("-std=c++23") else "-std=c++11"]
    if accepts("-fno-gnu-unique"):
        flags.append("-fno-gnu-unique")
    verbose = subprocess.run([cc, "-v"], capture_output=True, text=True, check=False).stderr
    cc1 = subprocess.run([cc, "-print-prog-name=cc1plus"], capture_output=True, text=True, check=False).stdout
    parts = [verbose]
    for tool in (path, shutil.which(cc1.strip()) or cc1.strip()):
        real = os.path.realpath(tool)
        with contextlib.suppress(OSError):
            st = os.stat(real)
            parts.append(f"{real} {st.st_size} {st.st_mtime_ns}")
    return Toolchain(cc, tuple(flags), "\n".join(parts))


# ---- translation units ----


@dataclass
class Unit:
    name: str  # main, bridge, fill_<n>[_<m>...] (the fill_buffer classes it instantiates)
    source: str  # relative to the project directory
    opt: str
    weaken: bool = False  # objcopy --weaken the object (fill units: main's definitions win)
    cost: int = 0  # for scheduling, largest first
    key: str = ""
    cached: bool = False  # the object came from the cache
    compiled: bool = False  # g++ compiled it in this build
    seconds: float = 0.0
    log: str = ""


@dataclass
class Plan:
    project_dir: Path
    script: BuildScript
    toolchain: Toolchain
    opt: str
    units: list[Unit]
    split: bool
    info: dict = field(default_factory=dict)

    @property
    def library(self) -> Path:
        return self.project_dir / "firmware" / f"{self.script.project}-{self.script.stamp}.so"

    def flags(self, unit: Unit) -> list[str]:
        return [f"-{unit.opt}", *self.script.cflags, *self.toolchain.flags, *self.script.includes, WEIGHTS_DIR_DEFINE]

    def link_order(self) -> list[Unit]:
        """Main and bridge first: their (optimised) copies of shared inline functions are the ones the linker keeps."""
        return sorted(self.units, key=lambda u: u.weaken)

    def link_flags(self) -> list[str]:
        """build_lib.sh's link line; split builds also refuse undefined symbols (a fill_buffer not instantiated)."""
        defs = ["-Wl,-z,defs"] if self.split else []
        return [f"-{self.opt}", *self.script.cflags, *self.toolchain.flags, "-shared", *defs]


def _rewrite_includes(text: str, origin: Path, prefix: str) -> str:
    """Quoted includes of a file copied from ``origin`` into ftflow_build/ (``prefix``: origin as seen from there),
    resolved as they were: a file next to the original is named through ``prefix``, others stay for the -I path."""

    def rewrite(m: re.Match) -> str:
        return f'{m.group(1)}"{prefix}{m.group(2)}"' if (origin / m.group(2)).is_file() else m.group(0)

    return _QUOTE_INCLUDE.sub(rewrite, text)


def _fill_classes(code_gen: str) -> dict[str, tuple[int, int]]:
    """fill_buffer class name -> (start, end) of its fill_buffer body ``{ ... }`` in nnet_code_gen.h."""
    spans = {}
    for match in _FILL_CLASS.finditer(code_gen):
        signature = code_gen.find("static void fill_buffer(", match.end())
        body = code_gen.find(") {", signature)
        if signature < 0 or body < 0:
            continue
        start = body + 2
        depth, i = 0, start
        while i < len(code_gen):
            if code_gen[i] == "{":
                depth += 1
            elif code_gen[i] == "}":
                depth -= 1
                if depth == 0:
                    break
            i += 1
        if depth == 0 and code_gen[i + 1 :].lstrip().startswith("};"):
            spans[match.group(1)] = (start, i + 1)
    return spans


def _code_gen_copy(code_gen: str, spans: dict[str, tuple[int, int]], keep: set[str], origin: Path) -> str:
    """nnet_code_gen.h with the bodies of every fill_buffer class not in ``keep`` replaced by ``;``."""
    out, pos = [], 0
    for name, (start, end) in sorted(spans.items(), key=lambda item: item[1][0]):
        if name in keep:
            continue
        out += [code_gen[pos:start].rstrip(), ";"]
        pos = end
    out.append(code_gen[pos:])
    text = "".join(out)
    header = "// ftflow: hls4ml's nnet_code_gen.h with fill_buffer bodies moved to their own units\n"
    return header + _rewrite_includes(text, origin, "../firmware/nnet_utils/")


def _fill_instances(directory: Path, script: BuildScript, spans: dict) -> dict[str, tuple[str, str]]:
    """fill_buffer class -> (input type, config struct) of the layer that uses it, from parameters.h and the
    top function (classes used by no call, or by several, are left in the main unit)."""
    parameters = (directory / "firmware" / "parameters.h").read_text()
    top = (directory / "firmware" / f"{script.project}.cpp").read_text()
    uses: dict[str, list[str]] = {}
    for struct in re.finditer(r"^struct (config\d+) : nnet::conv[12]d_config \{(.*?)^\};", parameters, re.M | re.S):
        for fill in re.findall(r"using fill_buffer = nnet::(fill_buffer_\d+)<data_T, CONFIG_T>;", struct.group(2)):
            uses.setdefault(fill, []).append(struct.group(1))
    instances = {}
    for fill, configs in uses.items():
        if fill not in spans or len(configs) != 1:
            continue
        calls = re.findall(rf"nnet::\w+<\s*(\w+)\s*,[^;]*?\b{configs[0]}\s*>\s*\(", top)
        if len(set(calls)) == 1:
            instances[fill] = (calls[0], configs[0])
    return instances


def _top_includes(directory: Path, script: BuildScript) -> str:
    """The #include lines of the top function's source, as seen from ftflow_build/."""
    top = (directory / "firmware" / f"{script.project}.cpp").read_text()
    lines = [line for line in top.splitlines() if line.lstrip().startswith("#include")]
    return _rewrite_includes("\n".join(lines), directory / "firmware", "../firmware/")


def _weight_guards(directory: Path) -> list[str]:
    """Include guards of firmware/weights/*.h (defined in fill units: the weight arrays live in the main unit)."""
    guards = []
    for header in sorted((directory / "firmware" / "weights").glob("*.h")):
        match = re.search(r"^#ifndef (\w+)", header.read_text(), re.M)
        if match:
            guards.append(match.group(1))
    return guards


def _groups(instances: dict[str, tuple[str, str]], spans: dict, minimum: int) -> list[list[str]]:
    """fill_buffer classes in units of at least ``minimum`` characters of body each (a unit's fixed cost, parsing
    the headers, is ~1.7 s: small classes share one), largest first; deterministic for the same code."""
    size = {fill: spans[fill][1] - spans[fill][0] for fill in instances}
    groups, small = [], []
    for fill in sorted(instances, key=lambda f: (-size[f], f)):
        if size[fill] >= minimum:
            groups.append([fill])
            continue
        small.append(fill)
        if sum(size[f] for f in small) >= minimum:
            groups.append(small)
            small = []
    return groups + ([small] if small else [])


def plan_build(directory: Path, opt: str, split: bool = True, fill_opt: str = FILL_OPT) -> Plan | None:
    """Write the wrapper sources of ``directory``'s units into ``ftflow_build/`` (None: build_lib.sh unusable)."""
    if opt not in OPT_LEVELS:
        raise FlowError(f"hls.csim_opt: got '{opt}', allowed: {', '.join(OPT_LEVELS)}")
    script = read_build_script(directory)
    if script is None:
        return None
    top_src, bridge_src = f"firmware/{script.project}.cpp", f"{script.project}_bridge.cpp"
    if set(script.sources) != {top_src, bridge_src}:
        return None
    build = directory / BUILD_DIR
    build.mkdir(exist_ok=True)
    for old in build.glob("*"):
        if old.is_file():
            old.unlink()
    (build / "weights_dir.h").write_text(_WEIGHTS_DIR_H)
    code_gen_path = directory / "firmware" / "nnet_utils" / "nnet_code_gen.h"
    code_gen = code_gen_path.read_text() if code_gen_path.is_file() else ""
    origin = code_gen_path.parent
    spans = _fill_classes(code_gen) if split and code_gen and shutil.which("objcopy") else {}
    instances = _fill_instances(directory, script, spans) if spans else {}
    main, units = ['#include "weights_dir.h"'], []
    if instances:
        left = set(spans) - set(instances)  # classes kept in the main unit
        (build / "code_gen_main.h").write_text(_code_gen_copy(code_gen, spans, left, origin))
        main.append('#include "code_gen_main.h"')
        includes, guards = _top_includes(directory, script), _weight_guards(directory)
        for group in _groups(instances, spans, FILL_GROUP_CHARS):
            name = "fill_" + "_".join(f.rsplit("_", 1)[1] for f in group)
            (build / f"{name}.h").write_text(_code_gen_copy(code_gen, spans, left | set(group), origin))
            text = "\n".join([
                "// ftflow: the im2col buffers of some convolutions (fill_buffer classes) in a unit of their own",
                '#include "weights_dir.h"',
                f'#include "{name}.h"',
                *(f"#define {guard}" for guard in guards),
                includes,
                *(f"template class nnet::{fill}<{instances[fill][0]}, {instances[fill][1]}>;" for fill in group),
                "",
            ])  # fmt: skip
            (build / f"{name}.cpp").write_text(text)
            cost = sum(spans[f][1] - spans[f][0] for f in group)
            units.append(Unit(name, f"{BUILD_DIR}/{name}.cpp", fill_opt, weaken=True, cost=cost))
    main.append(f'#include "../{top_src}"')
    fast_src = f"{script.project}_fi_fast.cpp"  # ftflow's layer-by-layer fault evaluation (flow/fi_bridge.py)
    if (directory / fast_src).is_file():
        main.append(f'#include "../{fast_src}"')
    (build / "main.cpp").write_text("\n".join(main) + "\n")
    (build / "bridge.cpp").write_text(f'{_WEIGHTS_DIR_CPP}\n#include "../{bridge_src}"\n')
    units.append(Unit("main", f"{BUILD_DIR}/main.cpp", opt, cost=10**9))  # usually the longest: first
    units.append(Unit("bridge", f"{BUILD_DIR}/bridge.cpp", opt, cost=1))
    return Plan(directory, script, toolchain(script.cc), opt, units, split=bool(instances))


# ---- the cache ----


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def _locked(root: Path, key: str):
    """An exclusive fcntl lock on one cache key (between processes and between threads)."""
    locks = root / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    with open(locks / f"{key}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _fetch(root: Path, kind: str, key: str, suffix: str, dest: Path) -> bool:
    """Copy the cache entry to ``dest`` if it exists and its content matches its recorded hash."""
    blob, meta = root / kind / f"{key}{suffix}", root / kind / f"{key}.json"
    try:
        recorded = json.loads(meta.read_text())["sha256"]
        if _sha256_file(blob) != recorded:
            return False
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        shutil.copyfile(blob, tmp)
        if _sha256_file(tmp) != recorded:
            tmp.unlink()
            return False
        tmp.replace(dest)
        with contextlib.suppress(OSError):
            os.utime(meta)  # recently used: trimmed last
        return True
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _trim(root: Path, limit_bytes: int) -> None:
    """Drop the least recently used entries (record first, then blob) until the cache holds ``limit_bytes``."""
    entries = []
    for kind in ("obj", "lib"):
        for meta in (root / kind).glob("*.json"):
            blobs = [p for p in meta.parent.glob(f"{meta.stem}.*") if p.suffix != ".json"]
            with contextlib.suppress(OSError):
                entries.append((meta.stat().st_mtime, sum(b.stat().st_size for b in blobs), meta, blobs))
    total = sum(size for _, size, _, _ in entries)
    for _, size, meta, blobs in sorted(entries, key=lambda e: e[0]):
        if total <= limit_bytes:
            break
        for path in (meta, *blobs):
            path.unlink(missing_ok=True)
        total -= size


def _limit_bytes() -> int:
    try:
        return int(float(os.environ.get("FTFLOW_CSIM_CACHE_MB", "4000")) * 2**20)
    except ValueError:
        return 4000 * 2**20


def _store(root: Path, kind: str, key: str, suffix: str, source: Path, meta: dict) -> None:
    """Atomically add ``source`` as an entry (blob first, then its metadata with the blob's hash)."""
    directory = root / kind
    directory.mkdir(parents=True, exist_ok=True)
    stamp = f"{os.getpid()}.{threading.get_ident()}"
    blob = directory / f"{key}{suffix}"
    tmp = directory / f".{key}.{stamp}.tmp"
    shutil.copyfile(source, tmp)
    tmp.replace(blob)
    tmp_meta = directory / f".{key}.{stamp}.json.tmp"
    tmp_meta.write_text(json.dumps({**meta, "sha256": _sha256_file(blob)}, indent=1))
    tmp_meta.replace(directory / f"{key}.json")
    if kind == "lib":  # one scan per built library
        _trim(root, _limit_bytes())


# ---- building ----


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, check=False)


def _unit_key(plan: Plan, unit: Unit) -> str:
    flags = plan.flags(unit)
    pre = _run([plan.toolchain.cc, *flags, "-E", unit.source], plan.project_dir)
    if pre.returncode != 0:
        raise _UnitFailed(unit, pre.stderr.decode(errors="replace"))
    digest = hashlib.sha256(f"ftflow-csim-unit {CACHE_VERSION}\n{plan.toolchain.identity}\n".encode())
    digest.update(json.dumps([flags, unit.source, unit.weaken]).encode())
    digest.update(pre.stdout)
    return digest.hexdigest()


class _UnitFailed(Exception):
    def __init__(self, unit: Unit, log: str):
        super().__init__(unit.name)
        self.unit, self.log = unit, log


def _build_unit(plan: Plan, unit: Unit, cache: Path | None) -> Path:
    """The unit's object in ftflow_build/, from the cache or compiled (and then cached); ``unit.key`` is set."""
    obj = plan.project_dir / BUILD_DIR / f"{unit.name}.o"
    with _locked(cache, unit.key) if cache else contextlib.nullcontext():
        if cache and _fetch(cache, "obj", unit.key, ".o", obj):
            unit.cached = True
            return obj
        start = time.perf_counter()
        result = _run([plan.toolchain.cc, *plan.flags(unit), "-c", unit.source, "-o", str(obj)], plan.project_dir)
        unit.log = result.stderr.decode(errors="replace")
        if result.returncode == 0 and unit.weaken:
            weak = _run(["objcopy", "--weaken", str(obj)], plan.project_dir)
            if weak.returncode != 0:
                raise _UnitFailed(unit, weak.stderr.decode(errors="replace"))
        unit.seconds, unit.compiled = time.perf_counter() - start, True
        if result.returncode != 0:
            raise _UnitFailed(unit, unit.log)
        if cache:
            _store(cache, "obj", unit.key, ".o", obj, {"unit": unit.name, "opt": unit.opt, "seconds": unit.seconds})
    return obj


def _library_key(plan: Plan) -> str:
    digest = hashlib.sha256(f"ftflow-csim-library {CACHE_VERSION}\n{plan.toolchain.identity}\n".encode())
    digest.update(json.dumps([plan.link_flags(), [(u.name, u.key) for u in plan.link_order()]]).encode())
    return digest.hexdigest()


def _fetch_library(plan: Plan, cache: Path | None) -> bool:
    """Put the cached library of ``plan`` (every unit key set) into firmware/, if there is a sound one."""
    firmware = plan.project_dir / "firmware"
    for old in firmware.glob(f"{plan.script.project}-*.so"):
        old.unlink()
    plan.info["library_key"] = key = _library_key(plan)
    plan.info["library_cached"] = bool(cache) and _fetch(cache, "lib", key, ".so", plan.library)
    return plan.info["library_cached"]


def _link(plan: Plan, objects: list[Path], cache: Path | None) -> None:
    """Link the library into firmware/<project>-<stamp>.so (and cache it)."""
    key = plan.info["library_key"]
    with _locked(cache, key) if cache else contextlib.nullcontext():
        if cache and _fetch(cache, "lib", key, ".so", plan.library):  # another process linked it meanwhile
            plan.info["library_cached"] = True
            return
        tmp = plan.library.with_name(f".{plan.library.name}.{os.getpid()}.tmp")
        result = _run([plan.toolchain.cc, *plan.link_flags(), *map(str, objects), "-o", str(tmp)], plan.project_dir)
        if result.returncode != 0:
            tmp.unlink(missing_ok=True)
            raise _UnitFailed(Unit("link", "", plan.opt), result.stderr.decode(errors="replace"))
        tmp.replace(plan.library)
        if cache:
            _store(cache, "lib", key, ".so", plan.library, {"project": plan.script.project, "opt": plan.opt})


@dataclass
class BuildResult:
    library: Path
    info: dict  # what build_info.json records


def _finish(plan: Plan, seconds: float) -> BuildResult:
    for obj in (plan.project_dir / BUILD_DIR).glob("*.o"):  # linked (and cached): not kept in the project
        obj.unlink()
    info = {
        **plan.info,
        "opt": plan.opt,
        "split": plan.split,
        "seconds": round(seconds, 3),
        "compiled": [u.name for u in plan.units if u.compiled],
        "units": [
            {"name": u.name, "opt": u.opt, "key": u.key, "cached": u.cached, "seconds": round(u.seconds, 3)}
            for u in plan.units
        ],
    }
    write_json(plan.project_dir / BUILD_DIR / INFO, info)
    log = "".join(f"==== {u.name} ({u.opt}{', cached' if u.cached else ''})\n{u.log}" for u in plan.units)
    (plan.project_dir / "build_lib.log").write_text(log)
    return BuildResult(plan.library, info)


def _error(directory: Path, failure: _UnitFailed) -> FlowError:
    (directory / "build_lib.log").write_text(f"==== {failure.unit.name}\n{failure.log}")
    errors = [line for line in failure.log.splitlines() if "error" in line.lower()][:3]
    detail = " | ".join(errors) or failure.log[-300:]
    return FlowError(f"g++ failed to compile {directory} (see build_lib.log): {detail}")


def build_libraries(
    directories: list[Path], opt: str, cache: bool = True, jobs: int | None = None, split: bool = True
) -> list[BuildResult | None]:
    """Build the C-sim library of every project in ``directories`` with one pool of ``jobs`` compiler processes
    (default: the usable cores), the largest units first. None for a project whose build_lib.sh this module does
    not understand (the caller runs build_lib.sh)."""
    root = cache_root() if cache else None
    jobs = max(1, jobs or len(os.sched_getaffinity(0)))
    start = time.perf_counter()
    plans = [plan_build(Path(d), opt, split) for d in directories]
    failures: dict[int, _UnitFailed] = {}
    objects: dict[tuple[int, str], Path] = {}

    def each(fn, items):
        def job(item):
            i, unit = item
            if i in failures:
                return
            try:
                fn(i, unit)
            except _UnitFailed as failure:
                failures.setdefault(i, failure)

        with ThreadPoolExecutor(max_workers=jobs) as pool:
            list(pool.map(job, sorted(items, key=lambda item: -item[1].cost)))

    def key(i, unit):
        unit.key = _unit_key(plans[i], unit)

    def build(i, unit):
        objects[(i, unit.name)] = _build_unit(plans[i], unit, root)

    each(key, [(i, u) for i, plan in enumerate(plans) if plan for u in plan.units])
    missing = [i for i, plan in enumerate(plans) if plan and i not in failures and not _fetch_library(plan, root)]
    each(build, [(i, u) for i in missing for u in plans[i].units])
    results: list[BuildResult | None] = [None] * len(plans)
    for i, plan in enumerate(plans):
        if plan is None:
            continue
        try:
            if i in failures:
                raise failures[i]
            if i in missing:
                _link(plan, [objects[(i, u.name)] for u in plan.link_order()], root)
            results[i] = _finish(plan, time.perf_counter() - start)
        except _UnitFailed as failure:
            if not plan.split:
                raise _error(plan.project_dir, failure) from None
            # the split build failed: build this project as one unit (and say why in build_info.json)
            single = build_libraries([plan.project_dir], opt, cache, jobs, split=False)[0]
            assert single is not None
            single.info["split_failed"] = f"{failure.unit.name}: {failure.log[-500:]}"
            write_json(plan.project_dir / BUILD_DIR / INFO, single.info)
            results[i] = single
    return results


def build_library(directory: Path, opt: str, cache: bool = True, jobs: int | None = None) -> BuildResult | None:
    """One project's C-sim library (see ``build_libraries``)."""
    return build_libraries([directory], opt, cache, jobs)[0]


def build_info(directory: Path) -> dict | None:
    """What the last build of the project recorded (units compiled or taken from the cache, seconds)."""
    path = Path(directory) / BUILD_DIR / INFO
    return json.loads(path.read_text()) if path.is_file() else None
