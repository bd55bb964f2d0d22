"""Self-contained HTML pages with inline plots, for the eval and operations reports.

    from tether.evals.html import Figure, page, table, plots_available
    fig = Figure.new(width=6, height=3)      # None without the ``reports`` extra (matplotlib)
    if fig is not None:
        fig.axes.bar(["a", "b"], [1, 2])
        body = fig.img("deltas")             # an <img> with the PNG inlined as a data URI
    html = page("Canary report", [table(["metric", "value"], [["success", "0.98"]]), body])

Every page is one file with no external reference (no script, stylesheet, font or image
fetched), so it can be attached to a ticket or opened offline. Without matplotlib the pages
still render, with a notice where each plot would be.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["NO_PLOTS", "Figure", "escape", "page", "plots_available", "table"]

NO_PLOTS = ("plots need matplotlib, which is not installed: pip install -e '.[reports]' "
            "(from a checkout) to add them")

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;
color:#1d232a;padding:0 1rem;line-height:1.4}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #d8dee4;
padding-bottom:.3rem}.sub{color:#57606a;margin-top:0}
table{border-collapse:collapse;margin:.8rem 0;font-size:.9rem}
th,td{border:1px solid #d8dee4;padding:.3rem .6rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#1a7f37;font-weight:600}.bad{color:#cf222e;font-weight:600}.warn{color:#9a6700;font-weight:600}
.notice{background:#fff8c5;border:1px solid #d4a72c;padding:.5rem .8rem;border-radius:4px}
img{max-width:100%;height:auto;border:1px solid #eaeef2;margin:.5rem 0}
code{background:#f6f8fa;padding:0 .2rem;border-radius:3px}
"""


def escape(value: Any) -> str:
    return html.escape(str(value), quote=True)


def plots_available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass(frozen=True, kw_only=True, slots=True)
class Figure:
    """A matplotlib figure rendered off-screen (the Agg backend); ``img()`` inlines it as PNG."""

    figure: Any
    axes: Any

    @classmethod
    def new(cls, *, width: float = 7.0, height: float = 3.2, rows: int = 1, cols: int = 1) -> Figure | None:
        """A new figure, or ``None`` when matplotlib is not installed."""
        if not plots_available():
            return None
        from matplotlib.figure import Figure as MplFigure

        fig = MplFigure(figsize=(width, height), dpi=110, layout="constrained")
        axes = fig.subplots(rows, cols)
        return cls(figure=fig, axes=axes)

    def png(self) -> bytes:
        buf = io.BytesIO()
        self.figure.savefig(buf, format="png")
        return buf.getvalue()

    def img(self, alt: str) -> str:
        data = base64.b64encode(self.png()).decode("ascii")
        return f'<img alt="{escape(alt)}" src="data:image/png;base64,{data}">'


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, numeric: Sequence[int] = (),
          classes: Sequence[Sequence[str]] | None = None) -> str:
    """An HTML table; cells are escaped. ``numeric``: column indexes aligned right;
    ``classes``: per row, per cell, a CSS class (``ok``, ``bad``, ``warn`` or ``""``)."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        cells = []
        for j, cell in enumerate(row):
            cls = [c for c in (("num" if j in numeric else ""),
                               (classes[i][j] if classes and j < len(classes[i]) else "")) if c]
            attr = f' class="{" ".join(cls)}"' if cls else ""
            cells.append(f"<td{attr}>{escape(cell)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def page(title: str, sections: Sequence[str], *, subtitle: str = "") -> str:
    """One self-contained HTML document. ``sections`` are HTML fragments (already escaped)."""
    sub = f'<p class="sub">{escape(subtitle)}</p>' if subtitle else ""
    notice = "" if plots_available() else f'<p class="notice">{escape(NO_PLOTS)}</p>'
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_CSS}</style>'
            f"</head><body><h1>{escape(title)}</h1>{sub}{notice}{''.join(sections)}</body></html>\n")
