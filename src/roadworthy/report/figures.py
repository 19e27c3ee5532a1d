"""Figure helpers for the HTML report: matplotlib (Agg, loaded lazily) to inline SVG data URIs.

Each check's ``figures(result)`` builds its plots from the numbers in its result with these helpers, so
figures are a pure function of the report and the HTML file needs no network.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any


@contextmanager
def figure(width: float = 5.0, height: float = 3.2) -> Iterator[tuple[Any, Any]]:
    """``with figure() as (fig, ax):`` a matplotlib figure on the Agg backend, closed afterwards."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, height), dpi=100)
    try:
        yield fig, ax
    finally:
        plt.close(fig)


def to_data_uri(fig: Any, fmt: str = "svg") -> str:
    """Serialise a figure as an inline ``data:`` URI (SVG by default: sharp and small for line plots)."""
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format=fmt, metadata={"Date": None} if fmt == "svg" else None)
    mime = "image/svg+xml" if fmt == "svg" else f"image/{fmt}"
    return f"data:{mime};base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def line_plot(
    series: dict[str, tuple[Sequence[float], Sequence[float]]],
    xlabel: str,
    ylabel: str,
    title: str = "",
    ylim: tuple[float, float] | None = (0.0, 1.0),
    xlog: bool = False,
) -> str:
    """One line per named series ``{name: (xs, ys)}``; returns an SVG data URI."""
    with figure() as (fig, ax):
        for name, (xs, ys) in series.items():
            ax.plot(list(xs), list(ys), marker="o", ms=3, label=name)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if title:
            ax.set_title(title)
        if ylim:
            ax.set_ylim(*ylim)
        if xlog:
            ax.set_xscale("symlog", linthresh=1e-3)
        ax.grid(alpha=0.3)
        if len(series) > 1:
            ax.legend(fontsize=7, loc="best")
        return to_data_uri(fig)


def heatmap(
    values: Sequence[Sequence[float]],
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    title: str = "",
    vmin: float = 0.0,
    vmax: float = 1.0,
    fmt: str = "{:.2f}",
    cmap: str = "RdYlGn",
) -> str:
    """An annotated heat map (rows x columns); returns an SVG data URI."""
    import numpy as np

    arr = np.asarray(values, dtype=float)
    with figure(
        width=max(4.0, 0.7 * len(col_labels) + 2.5), height=max(2.5, 0.32 * len(row_labels) + 1.2)
    ) as (
        fig,
        ax,
    ):
        im = ax.imshow(arr, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
        long = max((len(str(c)) for c in col_labels), default=0) * len(col_labels) > 60
        ax.set_xticks(
            range(len(col_labels)),
            labels=list(col_labels),
            fontsize=8,
            rotation=45 if long else 0,
            ha="right" if long else "center",
        )
        ax.set_yticks(range(len(row_labels)), labels=list(row_labels), fontsize=8)
        if arr.size <= 400:
            for (i, j), v in np.ndenumerate(arr):
                if np.isfinite(v):
                    ax.text(j, i, fmt.format(v), ha="center", va="center", fontsize=6.5)
        if title:
            ax.set_title(title)
        fig.colorbar(im, ax=ax, fraction=0.04)
        return to_data_uri(fig)


# ------------------------------------------------------------------------ evidence items -> data URIs


def _draw_lines(item: dict[str, Any]) -> str:
    with figure(width=4.8 if item.get("diagonal") else 5.0, height=3.6 if item.get("diagonal") else 3.2) as (
        fig,
        ax,
    ):
        if item.get("diagonal"):
            ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=1, label="y = x")
        for name, s in item.get("series", {}).items():
            pts = [
                (x, y)
                for x, y in zip(s.get("x", []), s.get("y", []), strict=False)
                if x is not None and y is not None
            ]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, label=name)
        if item.get("hline") is not None:
            ax.axhline(item["hline"], color="red", lw=1, ls="--")
        ax.set_xlabel(item.get("xlabel", ""))
        ax.set_ylabel(item.get("ylabel", ""))
        if item.get("ylim"):
            ax.set_ylim(*item["ylim"])
        if item.get("xlim"):
            ax.set_xlim(*item["xlim"])
        if item.get("xlog"):
            ax.set_xscale("symlog", linthresh=1e-3)
        ax.grid(alpha=0.3)
        if len(item.get("series", {})) + bool(item.get("diagonal")) > 1:
            ax.legend(fontsize=7, loc="best")
        return to_data_uri(fig)


def _draw_heatmap(item: dict[str, Any]) -> str:
    import math

    values = [[math.nan if v is None else v for v in row] for row in item["values"]]
    return heatmap(
        values,
        item["rows"],
        item["columns"],
        title=item.get("title", ""),
        vmin=item.get("vmin", 0.0),
        vmax=item.get("vmax", 1.0),
        fmt=item.get("fmt", "{:.2f}"),
        cmap=item.get("cmap", "RdYlGn"),
    )


def _draw_bars(item: dict[str, Any]) -> str:
    import numpy as np

    labels = item.get("labels", [])
    groups = item.get("groups", {})
    with figure(width=max(4.5, 0.35 * len(labels) + 2), height=3.2) as (fig, ax):
        width = 0.8 / max(1, len(groups))
        for i, (name, vals) in enumerate(groups.items()):
            ys = [np.nan if v is None else v for v in vals]
            ax.bar(np.arange(len(labels)) + i * width, ys, width, label=name)
        ax.set_xticks(
            np.arange(len(labels)) + 0.4 - width / 2, labels=labels, rotation=60, ha="right", fontsize=7
        )
        if item.get("hline") is not None:
            ax.axhline(item["hline"], color="red", lw=1, ls="--", label=item.get("hline_label", "threshold"))
        ax.set_ylabel(item.get("ylabel", ""))
        if len(groups) > 1 or item.get("hline") is not None:
            ax.legend(fontsize=7)
        return to_data_uri(fig)


def _draw_image(item: dict[str, Any]) -> str:
    return str(item.get("uri", ""))


#: One drawing function per evidence kind (see :mod:`roadworthy.evidence`).
DRAW = {"lines": _draw_lines, "heatmap": _draw_heatmap, "bars": _draw_bars, "image": _draw_image}


def draw(item: dict[str, Any]) -> tuple[str, str] | None:
    """``(caption, data URI)`` for one evidence item, or None for a kind this version cannot draw."""
    fn = DRAW.get(str(item.get("kind")))
    if fn is None:
        return None
    return str(item.get("caption", "")), fn(item)
