"""The C-sim build (flow/build_cache.py): MLPerf Tiny's ResNet-8 at a small size is bit-exact at io_parallel and
io_stream through the split build; the compiled-library cache is reused for the same code (even with other weights,
which the library reads at run time from its own project), never for other code, and a corrupt or missing entry
is rebuilt; two processes building the same code compile it once."""

import json
import multiprocessing
import textwrap
from pathlib import Path

import numpy as np
import pytest

from flow.build_cache import BUILD_DIR, _code_gen_copy, _fill_classes, _groups, build_info, build_library, cache_root
from flow.config import ModelConfig, ZooName, config_from_dict
from flow.csim import CSimLibrary
from flow.hardware.boards import resolve_board
from flow.hls import compile_project, project_of, write_project
from flow.training import logits, seed_everything
from flow.zoo import build_model

SHAPE, CLASSES = (16, 16, 3), 5


def _hls(io_type="io_parallel", **extra):
    return config_from_dict({"hls": {"io_type": io_type, "csim_opt": "O1", **extra}}).hls


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A C-sim cache of this module's own (the session's is shared with other test files)."""
    with pytest.MonkeyPatch.context() as mp:
        root = tmp_path_factory.mktemp("csim_cache")
        mp.setenv("FTFLOW_CACHE", str(root))
        yield root / "csim"


@pytest.fixture(scope="module")
def resnet8():
    """A small untrained ResNet-8 (filters 4/4/8) and inputs on the 2^-8 grid."""
    seed_everything(3)
    model = build_model(ModelConfig(name=ZooName.RESNET8, filters=(4, 4, 8), weight_bits=8, act_bits=8), SHAPE, CLASSES)
    x = np.floor(np.random.default_rng(0).random((24, *SHAPE)) * 256).astype(np.float32) / 256
    return model, x


def _convert(model, hls, out: Path):
    graph, _ = write_project(model, hls, resolve_board(config_from_dict({}).board), 8, out)
    project = project_of(graph, hls, out)
    compile_project(project, hls.csim_opt.value, hls.csim_cache)
    return project, build_info(out)


@pytest.fixture(scope="module")
def built(cache, resnet8, tmp_path_factory):
    """io_type -> (project, build info) of the small ResNet-8, each built once into the fresh cache."""
    root = tmp_path_factory.mktemp("resnet8")
    return {io: _convert(resnet8[0], _hls(io), root / io) for io in ("io_parallel", "io_stream")}


@pytest.mark.csim
@pytest.mark.slow
@pytest.mark.parametrize("io_type", ["io_parallel", "io_stream"])
def test_resnet8_is_bit_exact_in_csim(built, resnet8, io_type):
    model, x = resnet8
    project, info = built[io_type]
    expected = logits(model, x)
    assert np.ptp(expected, axis=0).max() > 0  # a non-trivial comparison: logits vary over the samples
    np.testing.assert_array_equal(CSimLibrary(project).predict(x), expected)
    assert info["library_cached"] is False and "main" in info["compiled"] and "split_failed" not in info
    fills = [u for u in info["units"] if u["name"].startswith("fill_")]
    if io_type == "io_parallel":  # the convolutions' im2col code compiled apart, at -O0
        assert info["split"] and fills and all(u["opt"] == "O0" for u in fills)
        assert {f"fill_buffer_{n}" for u in fills for n in u["name"].split("_")[1:]} == set(
            _fill_classes((project.directory / "firmware/nnet_utils/nnet_code_gen.h").read_text())
        )
    else:  # io_stream generates no im2col code
        assert not info["split"] and not fills


@pytest.mark.csim
@pytest.mark.slow
def test_same_design_elsewhere_reuses_the_library(built, resnet8, tmp_path):
    model, x = resnet8
    first = CSimLibrary(built["io_parallel"][0]).predict(x)
    project, info = _convert(model, _hls(), tmp_path / "again")
    assert info["library_cached"] is True and info["compiled"] == []  # no g++ compile ran
    assert info["library_key"] == built["io_parallel"][1]["library_key"]
    np.testing.assert_array_equal(CSimLibrary(project).predict(x), first)


@pytest.mark.csim
@pytest.mark.slow
def test_other_weights_reuse_the_library_and_read_their_own(built, resnet8, tmp_path):
    """Weights are read at run time from <library's directory>/weights: same code, other weights = same library.
    Permuting each array keeps hls4ml's zero counts (compiled into the configs), so the code is the same."""
    import tensorflow as tf

    model, x = resnet8
    other = tf.keras.models.clone_model(model)
    rng = np.random.default_rng(1)
    other.set_weights([rng.permutation(w.ravel()).reshape(w.shape) for w in model.get_weights()])
    project, info = _convert(other, _hls(), tmp_path / "other")
    assert info["library_cached"] is True and info["compiled"] == []
    got = CSimLibrary(project).predict(x)
    np.testing.assert_array_equal(got, logits(other, x))
    assert not np.array_equal(got, CSimLibrary(built["io_parallel"][0]).predict(x))


@pytest.mark.csim
@pytest.mark.slow
def test_a_changed_precision_is_not_reused(built, resnet8, tmp_path):
    model, x = resnet8
    hls = _hls(layers={"s2_conv1": {"precision": {"result": "fixed<4,1>"}}})
    project, info = _convert(model, hls, tmp_path / "changed")
    assert info["library_cached"] is False and "main" in info["compiled"]
    assert info["library_key"] != built["io_parallel"][1]["library_key"]
    assert not np.array_equal(CSimLibrary(project).predict(x), logits(model, x))  # narrower: no longer exact


@pytest.mark.csim
@pytest.mark.slow
def test_corrupt_or_missing_entries_are_rebuilt(built, resnet8, cache, tmp_path):
    model, x = resnet8
    _, info = built["io_parallel"]
    units = {u["name"]: u["key"] for u in info["units"]}
    (cache / "lib" / f"{info['library_key']}.so").write_bytes(b"\x7fELF truncated")
    (cache / "obj" / f"{units['bridge']}.o").write_bytes(b"garbage")
    (cache / "obj" / f"{units['main']}.json").unlink()  # an entry without its record counts as missing
    project, again = _convert(model, _hls(), tmp_path / "rebuilt")
    assert again["library_cached"] is False and sorted(again["compiled"]) == ["bridge", "main"]
    np.testing.assert_array_equal(CSimLibrary(project).predict(x), logits(model, x))
    project, third = _convert(model, _hls(), tmp_path / "third")  # and the rebuilt entries are sound again
    assert third["library_cached"] is True and third["compiled"] == []


# ---- the build machinery on a hand-written two-file project (compiles in a second) ----

MINI_SCRIPT = """#!/bin/bash
CC=g++
CFLAGS="-O1 -fPIC"
INCFLAGS="-Ifirmware/ap_types/"
PROJECT=mini
LIB_STAMP=abc123
${CC} ${CFLAGS} ${INCFLAGS} -D WEIGHTS_DIR="${WEIGHTS_DIR}" -c firmware/${PROJECT}.cpp -o ${PROJECT}.o
${CC} ${CFLAGS} ${INCFLAGS} -D WEIGHTS_DIR="${WEIGHTS_DIR}" -c ${PROJECT}_bridge.cpp -o ${PROJECT}_bridge.o
"""
MINI_TOP = """#include <fstream>
#include <string>
float mini_weight() {  // what hls4ml's load_weights_from_txt does: read WEIGHTS_DIR/<name>.txt
    std::ifstream in(std::string(WEIGHTS_DIR) + "/w.txt");
    float w = -1;
    in >> w;
    return w * SCALE;
}
"""


def _mini(directory: Path, weight: float, scale: int = 2) -> Path:
    (directory / "firmware" / "weights").mkdir(parents=True)
    (directory / "firmware" / "ap_types").mkdir()
    (directory / "build_lib.sh").write_text(MINI_SCRIPT)
    (directory / "firmware" / "mini.cpp").write_text(f"#define SCALE {scale}\n{MINI_TOP}")
    (directory / "mini_bridge.cpp").write_text(
        'float mini_weight();\nextern "C" float mini_float() { return mini_weight(); }\n'
    )
    (directory / "firmware" / "weights" / "w.txt").write_text(f"{weight}\n")
    return directory


def _mini_value(library: Path) -> float:
    import ctypes

    lib = ctypes.CDLL(str(library))
    lib.mini_float.restype = ctypes.c_float
    return lib.mini_float()


def _build_in_process(directory: str, queue) -> None:
    result = build_library(Path(directory), "O1")
    queue.put((directory, result.info["compiled"], _mini_value(result.library)))


def test_weights_are_read_next_to_the_library_and_key_is_the_compiled_code(tmp_path, monkeypatch):
    monkeypatch.setenv("FTFLOW_CACHE", str(tmp_path / "cache"))
    assert cache_root() == tmp_path / "cache" / "csim"
    a = build_library(_mini(tmp_path / "a", 1.5), "O1")
    assert sorted(a.info["compiled"]) == ["bridge", "main"] and _mini_value(a.library) == 3.0
    b = build_library(_mini(tmp_path / "b", 4.0), "O1")  # other weights: the same library, reading b's weights
    assert b.info["library_cached"] and b.info["compiled"] == [] and _mini_value(b.library) == 8.0
    assert b.library.read_bytes() == a.library.read_bytes()
    c = build_library(_mini(tmp_path / "c", 4.0, scale=3), "O1")  # a changed macro: other code
    assert c.info["compiled"] == ["main"] and _mini_value(c.library) == 12.0
    d = build_library(_mini(tmp_path / "d", 4.0), "O2")  # other flags
    assert sorted(d.info["compiled"]) == ["bridge", "main"]
    e = build_library(_mini(tmp_path / "e", 1.0), "O1", cache=False)
    assert sorted(e.info["compiled"]) == ["bridge", "main"] and _mini_value(e.library) == 2.0
    assert json.loads((tmp_path / "e" / BUILD_DIR / "build_info.json").read_text())["library_cached"] is False
    monkeypatch.setenv("FTFLOW_CSIM_CACHE_MB", "0")  # over the limit: least recently used entries are dropped
    f = build_library(_mini(tmp_path / "f", 5.0, scale=5), "O1")
    assert not list(cache_root().glob("*/*.json")) and _mini_value(f.library) == 25.0  # its own copy stays


def test_two_processes_build_the_same_code_once(tmp_path, monkeypatch):
    monkeypatch.setenv("FTFLOW_CACHE", str(tmp_path / "cache"))
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    dirs = [str(_mini(tmp_path / name, 2.0 + i)) for i, name in enumerate(("p", "q"))]
    workers = [context.Process(target=_build_in_process, args=(d, queue)) for d in dirs]
    for worker in workers:
        worker.start()
    results = sorted(queue.get(timeout=120) for _ in workers)
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    assert [value for _, _, value in results] == [4.0, 6.0]
    compiled = [name for _, names, _ in results for name in names]
    assert sorted(compiled) == [
        "bridge",
        "main",
    ]  # each unit compiled by one process, taken from the cache by the other


def test_an_unrecognised_build_script_is_left_to_itself(tmp_path):
    project = _mini(tmp_path / "odd", 1.0)
    (project / "build_lib.sh").write_text("#!/bin/bash\nmake all\n")
    assert build_library(project, "O1") is None  # the caller runs build_lib.sh itself


def test_fill_buffer_bodies_are_cut_and_grouped():
    code = textwrap.dedent(
        """\
        #include "nnet_common.h"
        namespace nnet {
        template<class data_T, typename CONFIG_T>
        class fill_buffer_2 : public nnet::FillConv2DBuffer<data_T, CONFIG_T> {
            public:
            static void fill_buffer(
                data_T data[CONFIG_T::in_height], data_T buffer[1][2], const unsigned partition
            ) {
                if (partition ==   0) {
                    buffer[0][0] = data[0]; buffer[0][1] = 0;
                }
            }
        };
        template<class data_T, typename CONFIG_T>
        class fill_buffer_7 : public nnet::FillConv1DBuffer<data_T, CONFIG_T> {
            public:
            static void fill_buffer(data_T data[4], data_T buffer[1][1], const unsigned partition) {
                if (partition == 0) { buffer[0][0] = data[3]; }
            }
        };
        }
        """
    )
    spans = _fill_classes(code)
    assert sorted(spans) == ["fill_buffer_2", "fill_buffer_7"]
    cut = _code_gen_copy(code, spans, {"fill_buffer_7"}, Path("/nonexistent"))
    assert "buffer[0][1] = 0;" not in cut and "buffer[0][0] = data[3];" in cut
    assert "const unsigned partition\n    );" in cut and cut.count("class fill_buffer_") == 2
    assert '#include "nnet_common.h"' in cut  # not next to the (here nonexistent) original: left to the -I path
    sizes = {"fill_buffer_2": (0, 50), "fill_buffer_7": (0, 10), "fill_buffer_9": (0, 200)}
    assert _groups(dict.fromkeys(sizes, ("t", "c")), sizes, 60) == [
        ["fill_buffer_9"],
        ["fill_buffer_2", "fill_buffer_7"],
    ]
    assert BUILD_DIR == "ftflow_build"
