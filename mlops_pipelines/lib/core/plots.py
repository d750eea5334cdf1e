"""Plots as PNG bytes, and the two ways they are embedded: markdown (Dagster metadata) and HTML (reports).

Figures are drawn on matplotlib's Agg canvas directly: pyplot's global figure manager costs more than most of our
plots, and no display is needed. ``pyplot()`` is for the one library (shap) that draws only through pyplot.
"""

import base64
import io
from types import ModuleType

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def figure(width: float, height: float) -> Figure:
    """A new figure (inches) on the Agg canvas, outside pyplot."""
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def pyplot() -> ModuleType:
    """``matplotlib.pyplot`` on the Agg backend (no display), for code that only draws through pyplot."""
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png_bytes(fig: Figure, *, dpi: int, tight: bool = False) -> bytes:
    """The figure as PNG; ``tight``: cropped to what is drawn. A pyplot figure is closed afterwards."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight" if tight else None)
    if fig.canvas.manager is not None:  # made by pyplot, which would keep it alive
        pyplot().close(fig)
    return buffer.getvalue()


def png_data_uri(png: bytes) -> str:
    return f"data:image/png;base64,{base64.b64encode(png).decode()}"


def png_markdown(png: bytes, alt: str) -> str:
    """A PNG inline in markdown (how Dagster metadata shows plots in the UI)."""
    return f"![{alt}]({png_data_uri(png)})"
