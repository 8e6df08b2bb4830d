"""Draw the report's plots as PNG bytes, the same bytes for the same figures.

Why this way: the plots are committed beside the report, so a re-render of unchanged
figures must leave them unchanged: the Agg canvas (no display needed), matplotlib's
default style whatever the user's matplotlibrc says, and no metadata in the file (the
PNG writer would otherwise name the matplotlib version).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from bench.render.common import Plot

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.typing import RcKeyType

SIZE_INCHES = (7.0, 3.8)
DPI = 100
STYLE: dict[RcKeyType, Any] = {
    "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False,
    "font.size": 9, "legend.fontsize": 8, "legend.frameon": False,
}
AIM_STYLE: dict[str, Any] = {"color": "tab:red", "linestyle": "--", "linewidth": 1.2}


def png(plot: Plot) -> bytes:
    """PLOT drawn on a fresh figure, as PNG bytes without metadata (matplotlib is imported
    here only: rendering the markdown alone does not need it)."""
    import matplotlib.style
    from matplotlib import rc_context
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with matplotlib.style.context("default"), rc_context(STYLE):
        figure = Figure(figsize=SIZE_INCHES, dpi=DPI, layout="constrained")
        FigureCanvasAgg(figure)
        plot.draw(figure)
        out = io.BytesIO()
        figure.savefig(out, format="png", metadata={"Software": None})
    return out.getvalue()


def count_axis(axes: Axes, counts: Sequence[int], label: str) -> None:
    """A log-2 x axis with a tick at each measured count (1, 8, 32 disks; N = 100, 500)."""
    axes.set_xscale("log", base=2)
    axes.set_xticks(list(counts), [str(c) for c in counts])
    axes.minorticks_off()
    axes.set_xlabel(label)
