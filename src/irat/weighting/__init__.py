"""Instance-weighting schemes: pure functions of per-sample statistics (no model, optimizer or
I/O inside a scheme), plus the shared burn-in. ``SCHEMES`` maps a name to
``scheme(stats: SampleStats) -> w [B]``.
"""

from irat.weighting.burn_in import with_burn_in
from irat.weighting.uniform import uniform

SCHEMES = {"uniform": lambda stats: uniform(stats.y)}

__all__ = ["SCHEMES", "uniform", "with_burn_in"]
