"""ftflow: vulnerability-based hardening and pruning of QKeras CNNs for FPGAs (hls4ml).

Importing ``flow`` is cheap; TensorFlow, QKeras and hls4ml load only when a step needs them.
"""

from flow.config import RunConfig, config_from_dict, load_config
from flow.errors import FlowError, VerificationError

__all__ = ["FlowError", "RunConfig", "VerificationError", "config_from_dict", "load_config", "run"]
__version__ = "0.1.0"


def run(cfg: RunConfig, out=None, steps=None):
    """Run pipeline steps (see :func:`flow.steps.run`)."""
    from flow.steps import run as _run

    return _run(cfg, out, steps)
