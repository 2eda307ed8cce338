import pytest

from flow.config import Backend, IOType, config_from_dict, config_to_dict, load_config
from flow.errors import FlowError


def test_defaults_and_round_trip():
    cfg = config_from_dict({})
    assert cfg.hls.backend is Backend.VIVADO and cfg.hls.io_type is IOType.PARALLEL
    assert config_from_dict(config_to_dict(cfg)) == cfg


def test_config_is_frozen():
    cfg = config_from_dict({})
    with pytest.raises(AttributeError):
        cfg.seed = 3


def test_nested_values_are_typed():
    cfg = config_from_dict(
        {"hls": {"backend": "Vitis", "io_type": "io_stream", "layers": {"conv1": {"reuse_factor": 4}}}}
    )
    assert cfg.hls.backend is Backend.VITIS
    assert cfg.hls.layers["conv1"].reuse_factor == 4
    assert config_from_dict({"model": {"filters": [3, 5]}}).model.filters == (3, 5)


@pytest.mark.parametrize(
    "data, expected",
    [
        ({"trian": {}}, "unknown key 'trian' (did you mean 'train'?)"),
        ({"hls": {"bakend": "Vivado"}}, "unknown key 'hls.bakend' (did you mean 'backend'?)"),
        ({"hls": {"io_type": "io_strem"}}, "hls.io_type: got 'io_strem' (did you mean 'io_stream'?)"),
        ({"hls": {"backend": "Quartus"}}, "allowed: Vivado, Vitis"),
        ({"train": {"epochs": -1}}, "train.epochs: got -1, allowed range [0, 10000]"),
        ({"train": {"epochs": 2.5}}, "train.epochs: got 2.5, expected an integer"),
        ({"seed": True}, "seed: got True, expected an integer"),
        ({"data": {"test_fraction": 1.0}}, "data.test_fraction: got 1.0, allowed range (0, 1)"),
        ({"model": {"weight_bits": 40}}, "model.weight_bits: got 40, allowed range [2, 16]"),
        ({"model": {"filters": [4, "x"]}}, "model.filters[1]: got 'x', expected an integer"),
        ({"model": {"filters": 4}}, "model.filters: got 4, expected a list of an integer"),
        ({"hls": {"layers": {"c1": {"reuse_factor": 0}}}}, "hls.layers.c1.reuse_factor: got 0"),
        ({"hls": {"layers": {"c1": {"precison": {}}}}}, "unknown key 'hls.layers.c1.precison'"),
        ({"board": {"name": "zcu104", "part": "xc7a35t"}}, "not both"),
        ({"model": {"name": None}}, "give either 'name'"),
        ({"data": {"name": "npz"}}, "data.path: required"),
        ({"estimate": {"mehtod": "analytic"}}, "unknown key 'estimate.mehtod' (did you mean 'method'?)"),
        ({"estimate": {"method": "quartus"}}, "estimate.method: got 'quartus'"),
        ({"compare": {"ratios": [0.3, 1.5]}}, "compare.ratios: got 1.5; every ratio must be in (0, 1]"),
        ({"compare": {"budgets": [10, 0]}}, "compare.budgets: got 0"),
        ({"compare": {"prune_ratios": [1.0]}}, "compare.prune_ratios: got 1.0; every ratio must be in (0, 1)"),
        ({"compare": {"variants": ["tmr"]}}, "compare.variants[0]: got 'tmr'"),
        ({"rank": {"method": "hessian"}}, "rank.method: got 'hessian'"),
        ({"inject": {"stop_at_margin": 0.5}}, "inject.stop_at_margin: got 0.5, allowed range (0, 0.5)"),
        ({"inject": {"stop_at_margin": 0}}, "inject.stop_at_margin: got 0.0, allowed range (0, 0.5)"),
        ({"inject": {"engine": "ray"}}, "inject.engine: got 'ray'"),
        (
            {"inject": {"engine": "dask", "scheduler": "node1:8786"}},
            "inject.scheduler: got 'node1:8786'; allowed: an address tcp://host:port",
        ),
        ({"inject": {"scheduler": "tcp://node1:8786"}}, "inject.scheduler: got 'tcp://node1:8786' with engine 'local'"),
        ([1, 2], "expected a mapping"),
    ],
)
def test_bad_values_name_key_value_and_allowed(data, expected):
    with pytest.raises(FlowError) as err:
        config_from_dict(data, "cfg.yaml")
    assert expected in str(err.value)
    assert str(err.value).startswith("cfg.yaml")


def test_load_config_errors_name_the_file(tmp_path):
    with pytest.raises(FlowError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: {name: digits\n")
    with pytest.raises(FlowError, match=r"bad.yaml: not valid YAML"):
        load_config(bad)
    unsafe = tmp_path / "unsafe.yaml"
    unsafe.write_text("seed: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(FlowError, match="not valid YAML"):
        load_config(unsafe)


def test_every_example_config_loads():
    from pathlib import Path

    examples = sorted((Path(__file__).parent.parent / "examples").glob("*.yaml"))
    assert examples
    for path in examples:
        load_config(path)


def test_compare_cases_sweep_ratios_and_budgets():
    from flow.compare import case_config, cases

    cfg = config_from_dict({"compare": {"variants": ["selective_tmr", "full_tmr"], "ratios": [0.1], "budgets": [5]}})
    assert [case.label for case in cases(cfg)] == [
        "baseline", "selective_tmr_0.1", "selective_tmr_budget5", "full_tmr",
    ]  # fmt: skip
    harden = {case.label: case_config(cfg, case)[0].harden for case in cases(cfg)}
    assert (harden["selective_tmr_0.1"].selection, harden["selective_tmr_0.1"].ratio) == ("ratio", 0.1)
    assert (harden["selective_tmr_budget5"].selection, harden["selective_tmr_budget5"].budget) == ("budget", 5.0)
    as_given = config_from_dict(
        {"harden": {"selection": "budget", "budget": 7}, "compare": {"variants": ["selective_min"]}}
    )
    assert [(c.label, case_config(as_given, c)[0].harden.budget) for c in cases(as_given)][1] == ("selective_min", 7.0)


def test_names_reaching_cpp_files_or_shell_are_validated(tmp_path):
    """hls.project_name reaches hls4ml's build_lib.sh: shell text is refused before anything runs."""
    from flow.cli import main

    path = tmp_path / "cfg.yaml"
    path.write_text('hls: {project_name: "p;echo${IFS}pwned>PWNED;p"}\n')
    with pytest.raises(FlowError, match=r"hls\.project_name: got 'p;echo\$\{IFS\}pwned>PWNED;p'; allowed: a letter"):
        load_config(path)
    assert main(["run", str(path), "--out", str(tmp_path / "o"), "--steps", "load"]) == 2
    assert not (tmp_path / "PWNED").exists() and not (tmp_path / "o").exists()
    from flow.config import HlsConfig

    with pytest.raises(FlowError, match="project_name: got 'a b'"):
        HlsConfig(project_name="a b")


def test_yaml_aliases_are_refused_in_one_short_line(tmp_path, capsys):
    from flow.cli import main

    bomb = ["a: &a [x, x, x, x, x, x, x, x, x]"] + [f"{c}: &{c} [{', '.join(['*' + p] * 9)}]"
                                                   for p, c in zip("abcdefgh", "bcdefghi", strict=True)]  # fmt: skip
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(bomb) + "\n")
    assert main(["run", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "aliases (*a) are not allowed" in err and len(err) < 400 and "\n" not in err
    big = tmp_path / "big.yaml"
    big.write_text("seed: 1\n" + "#" * (1 << 20))
    with pytest.raises(FlowError, match="a run configuration is at most"):
        load_config(big)


def test_layer_names_that_are_not_identifiers_are_refused(tmp_path):
    import tensorflow as tf
    from qkeras import QDense, quantized_bits

    from flow.modelio import check_model

    q = quantized_bits(6, 0, alpha=1)
    inp = tf.keras.layers.Input((4,), name="x")
    model = tf.keras.Model(inp, QDense(2, kernel_quantizer=q, bias_quantizer=q, name="fc-1")(inp))
    with pytest.raises(FlowError, match=r"layer 'fc-1' \(QDense\): its name becomes a C\+\+ identifier"):
        check_model(model)


def test_schema_fixed_tuples_unions_any_required_and_absent_keys():
    """The field types the step records use (flow/records.py): pairs, unions, plain data, required and absent keys."""
    from dataclasses import dataclass, field
    from typing import Any

    from flow.schema import ABSENT, build, to_plain

    @dataclass(frozen=True)
    class Record:
        pair: tuple[float, float]
        either: dict[str, int] | str = "none"
        plain: Any = None
        open_pair: tuple[float, float] | None = field(default=None, metadata={"infinite": True})
        note: str | None = field(default=None, metadata=ABSENT)

    record = build(Record, {"pair": [0, 0.5], "either": {"a": 1}, "plain": {"x": [1, "y"]}}, "f.json")
    assert record == Record((0.0, 0.5), {"a": 1}, {"x": [1, "y"]})
    assert to_plain(record) == {"pair": [0.0, 0.5], "either": {"a": 1}, "plain": {"x": [1, "y"]}, "open_pair": None}
    assert build(Record, to_plain(record), "f.json") == record
    assert build(Record, {"pair": [0, 1], "either": "unknown", "note": "n"}, "f.json").either == "unknown"
    assert build(Record, {"pair": [0, 1], "open_pair": [1, float("inf")]}, "f.json").open_pair[1] == float("inf")
    for data, expected in [
        ({}, "f.json: missing key 'pair'; required under the top level: pair"),
        ({"pair": [1.0]}, "f.json: pair: got [1.0], expected a list of 2: a number, a number"),
        ({"pair": [1, "x"]}, "f.json: pair[1]: got 'x', expected a number"),
        ({"pair": [1, float("inf")]}, "f.json: pair[1]: got inf; allowed: a finite number"),
        ({"pair": [0, 1], "either": 3}, "f.json: either: got 3, expected a mapping of names to an integer or a string"),
    ]:
        with pytest.raises(FlowError) as info:
            build(Record, data, "f.json")
        assert str(info.value) == expected
