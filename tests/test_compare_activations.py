"""ftflow compare with inject.space activations: every variant's per-bit exposure counts its datapath sites
(copies' and corrections' outputs included), not its weight bits."""

from __future__ import annotations

import pytest
from conftest import TINY

from flow.compare import compare
from flow.config import Variant, config_from_dict
from flow.faultlist import fault_sites
from flow.fi_bridge import read_table
from flow.hls import HlsProject
from flow.state import read_manifest

pytestmark = pytest.mark.slow


def test_activation_sites_are_the_variants_datapath(tmp_path):
    inject = {"space": "activations", "model": "stuck1", "sampling": "count", "count": 40, "samples": 10,
              "targets": ["weight", "bias", "copy", "correction"], "activation": "before"}  # fmt: skip
    cfg = config_from_dict({**TINY, "inject": inject, "compare": {"variants": ["full_tmr"]}})
    rows = compare(cfg, tmp_path)
    base, tmr = rows
    assert (base.kind, tmr.kind) == (Variant.BASELINE, Variant.FULL_TMR)
    assert all(r.verified == "yes" and r.faults == 40 for r in rows)
    # a stuck bit of one element: sites are elements x start bits of the targeted tensors; full TMR triplicates
    # every weight layer's output and adds the corrections' outputs, so it has more than 3x the pre-activations
    assert tmr.fault_sites > 3 * base.fault_sites
    weights = config_from_dict(
        {**TINY, "inject": {k: v for k, v in inject.items() if k not in ("space", "activation")}}
    )
    vdir = tmp_path / "compare" / "baseline"
    table = read_table(HlsProject.load(vdir / read_manifest(vdir)["project"]).directory)
    assert base.fault_sites != fault_sites(table, weights.inject)  # not the weight bits
    assert tmr.per_bit_relative_rate is None or tmr.per_bit_relative_rate >= 0
