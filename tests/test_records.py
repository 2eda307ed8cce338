"""The step records (flow/records.py): what the steps write is what the records load, and a missing or malformed
file is a FlowError naming the file and the key."""

import json
import re

import pytest

from flow.campaign import summarize
from flow.errors import FlowError
from flow.records import (
    HardenSummary,
    InjectSummary,
    Resources,
    load_harden_summary,
    load_inject_summary,
    load_resources,
    write_record,
)
from flow.schema import to_plain


def _inject_data(groups: object = "groups") -> dict:
    rows = [{"fault_id": i, "layer": "conv1" if i % 2 else "dense", "outcome": outcome, "accuracy": 0.5 + i / 100}
            for i, outcome in enumerate(["critical", "masked", "sdc", "masked", "critical", "masked"])]  # fmt: skip
    summary = summarize(rows, groups=["protected", "copy", "unprotected", "copy", "copy", "none"])
    if groups != "groups":
        summary["groups"] = groups
    return {
        "campaign": "c1", "inputs": {"model": "abc"}, "fault_model": "flip", "mbu": 1, "space": "weights",
        "samples": 10, **summary,
        "golden_accuracy": 0.9, "engine": {"name": "local", "scheduler": None, "workers": 2},
        "evaluation": {"requested": "fast", "mode": "fast", "stopped_early": 3, "stopped_early_share": 0.5},
        "timing": {"evaluated": 6, "seconds": 0.2, "per_fault_ms": 33.3},
    }  # fmt: skip


def test_inject_summary_round_trip(tmp_path):
    path = tmp_path / "summary.json"
    data = _inject_data()
    written = write_record(path, InjectSummary, data)
    assert json.loads(path.read_text()) == json.loads(json.dumps(data))  # the same content as the dict it was
    loaded = load_inject_summary(path)
    assert loaded == written and loaded.total.critical.count == 2 and loaded.total.n_faults == 6
    assert loaded.total.critical.ci95 == tuple(data["total"]["critical"]["ci95"])  # a pair of floats
    assert loaded.groups["copy"].n_faults == 3 and loaded.stop is None and "stop" not in json.loads(path.read_text())
    stopped = {**data, "stop": {"margin": 0.1, "stopped": True, "faults": 6, "of": 9, "half_width": 0.09,
                                "checked_every": 3, "reason": "stopped"}, "crosscheck": {"checked": 2}}  # fmt: skip
    write_record(path, InjectSummary, stopped)
    assert load_inject_summary(path).stop.of == 9 and load_inject_summary(path).crosscheck == {"checked": 2}
    datapath = {**data, "space": "activations", "activation": "before"}
    write_record(path, InjectSummary, datapath)
    assert json.loads(path.read_text()) == json.loads(json.dumps(datapath))
    assert load_inject_summary(path).activation.value == "before"
    note = "unknown: the array table predates channel layouts; run the convert step again"
    write_record(path, InjectSummary, _inject_data(note))
    assert load_inject_summary(path).groups == note


def test_steps_write_what_the_records_load(tmp_path, tiny_cfg_dict):
    from flow.config import config_from_dict
    from flow.steps import run

    tiny_cfg_dict["rank"] = {"method": "l1"}
    run(config_from_dict(tiny_cfg_dict, "tiny"), tmp_path, ["load", "rank", "harden", "estimate"])
    for path, load in ((tmp_path / "harden" / "summary.json", load_harden_summary),
                       (tmp_path / "estimate" / "resources.json", load_resources)):  # fmt: skip
        record = load(path)
        assert to_plain(record) == json.loads(path.read_text())
    harden, resources = load_harden_summary(tmp_path / "harden" / "summary.json"), load_resources(path)
    assert isinstance(harden, HardenSummary) and harden.total.extra_channels > 0 and harden.no_fault_bit_exact
    assert isinstance(resources, Resources) and resources.total["LUT"] == sum(e["LUT"] for e in resources.layers)
    assert resources.analytic_part is resources and resources.latency.cycles > 0


def _message(load, path) -> str:
    with pytest.raises(FlowError) as info:
        load(path)
    return str(info.value)


def test_a_missing_or_malformed_record_names_the_file_and_the_key(tmp_path):
    path = tmp_path / "summary.json"
    assert _message(load_inject_summary, path) == f"{path}: not found; rerun the inject step"
    path.write_text("{not json")
    assert re.fullmatch(re.escape(f"{path}: not readable JSON (") + ".*; rerun the inject step", _message(
        load_inject_summary, path))  # fmt: skip
    no_critical, text_interval = _inject_data(), _inject_data()
    del no_critical["total"]["critical"]
    text_interval["total"]["critical"]["ci95"] = "[0.1, 0.2]"
    for data, expected in [
        (no_critical, "missing key 'total.critical'; required under total: n_faults, masked, sdc, critical, "),
        (text_interval, "total.critical.ci95: got '[0.1, 0.2]', expected a list of 2: a number, a number"),
        ({**_inject_data(), "new_key": 1}, "unknown key 'new_key'"),
    ]:
        path.write_text(json.dumps(data))
        message = _message(load_inject_summary, path)
        assert message.startswith(f"{path}: {expected}") and message.endswith("; rerun the inject step"), message
    extra = {**_inject_data(), "total": {**_inject_data()["total"], "extra": 1}}
    with pytest.raises(FlowError, match=re.escape("unknown key 'total.extra'")):  # nothing written no reader knows
        write_record(path, InjectSummary, extra)
