"""ftflow: vulnerability-based hardening and pruning of QKeras CNNs for FPGAs (hls4ml).

Importing ``flow`` is cheap; TensorFlow, QKeras and hls4ml load only when a step needs them. Imports sit at module
top, except those of TensorFlow, QKeras, hls4ml, da4ml, matplotlib, scipy.stats, scikit-learn, dask.distributed,
of the modules that import one of them at their top, of those that would close an import cycle, and the CLI's
imports of the pipeline (not needed by ``ftflow --help``): each says why, with its measured import time.
"""

from flow.config import RunConfig, config_from_dict, load_config
from flow.errors import FlowError, VerificationError

__all__ = ["FlowError", "RunConfig", "VerificationError", "config_from_dict", "load_config", "run"]
__version__ = "0.1.0"


def run(cfg: RunConfig, out=None, steps=None):
    """Run pipeline steps (see :func:`flow.steps.run`)."""
    from flow.steps import run as _run  # numpy + the pipeline modules: ~0.2 s, not for ``import flow``

    return _run(cfg, out, steps)
