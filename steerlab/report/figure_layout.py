"""Layout fixes applied to every figure a report embeds, whichever stage drew it.

* axes titled "layer" get integer ticks (never 0.5, 1.5);
* log axes get ticks at 1, 2 and 5 x powers of ten, written out (0.01, 0.1, 1), not plotly's "2 5 2 5";
* every axis makes room for its own tick labels (``automargin``); no fixed width wider than the page;
* a long legend (many entries, or long names) goes below the plot, in rows, and the figure grows to
  hold it (a tall legend on the right scrolls inside the figure, so entries are cut off; a wide one
  squeezes the plot);
* annotations without text, which plotly draws as "new text", are removed;
* text labels on scatter points do not sit on top of each other: labels of points at the same place
  are merged, and each label takes the first side of its point where it overlaps no other.

    >>> import plotly.graph_objects as go
    >>> figure = tidy_figure(go.Figure(go.Bar(x=[0, 1, 2], y=[1, 2, 3])).update_layout(xaxis_title="layer"))
    >>> figure.layout.xaxis.dtick, figure.layout.xaxis.tickformat
    (1, 'd')
"""

from __future__ import annotations

import math
import re
from typing import Any, Iterator

import numpy as np

LAYER_TITLE = re.compile(r"\blayers?\b", re.IGNORECASE)
MAX_LAYER_TICKS = 25  # beyond this many layers, label every 2nd, 5th ... so the labels stay apart
LEGEND_BELOW = 10  # more legend entries than this no longer fit beside a ~400 px tall plot without scrolling
LEGEND_NAME_CHARS = 40  # a legend name longer than this takes a third of the page's width beside the plot
LEGEND_PER_ROW = 5  # entries per row of a horizontal legend across a ~1000 px page
LEGEND_ROW_PX = 22
LEGEND_SYMBOL_PX = 50  # the line sample and gaps around an entry's name
PAGE_WIDTH_PX = 1000  # the report's content width
CHAR_PX, LINE_PX = 7.0, 14.0  # a label's size at plotly's default 12 px font, for the overlap test
PLACEHOLDER = "new text"  # what plotly draws for an annotation without text (add_hline(annotation_text=None))
SIDES = ("top center", "bottom center", "middle right", "middle left", "top right", "bottom left",
         "top left", "bottom right")


def tidy_figure(figure: Any) -> Any:
    """Apply the fixes above to a plotly figure in place; returns it."""
    axes = list(_axis_names(figure))
    for name in axes:
        axis = figure.layout[name]
        axis.automargin = True
        values = _axis_values(figure, name)
        if axis.type == "log":
            _log_ticks(axis, values)
        elif LAYER_TITLE.search(_title(axis)) and values.size and np.all(values == np.round(values)):
            span = values.max() - values.min()
            axis.update(tickmode="linear", tick0=0, dtick=_nice_step(span / MAX_LAYER_TICKS), tickformat="d")
    if figure.layout.width is not None and figure.layout.width > PAGE_WIDTH_PX:
        figure.layout.width = None
    _legend_below_when_long(figure)
    figure.layout.annotations = [a for a in figure.layout.annotations if a.text not in (None, PLACEHOLDER)]
    _separate_text_labels(figure)
    return figure


def _axis_names(figure: Any) -> Iterator[str]:
    """Every x / y axis of the layout (``xaxis``, ``xaxis2``, ...), including the default ones traces use."""
    layout = figure.to_plotly_json()["layout"]
    names = {key for key in layout if re.fullmatch(r"[xy]axis\d*", key)}
    for trace in figure.data:
        if trace.type in ("scatter", "scattergl", "bar", "heatmap", "box", "histogram"):
            for letter in "xy":
                ref = getattr(trace, f"{letter}axis", None) or letter
                names.add(ref.replace(letter, f"{letter}axis", 1))
    yield from sorted(names)


def _title(axis: Any) -> str:
    return (axis.title.text or "") if axis.title is not None else ""


def _axis_values(figure: Any, name: str) -> np.ndarray:
    """The finite numeric coordinates the traces put on axis ``name`` (empty when categorical)."""
    letter, suffix = name[0], name[len("xaxis"):]
    ref = letter + suffix
    values = []
    for trace in figure.data:
        if (getattr(trace, f"{letter}axis", None) or letter) != ref:
            continue
        coordinates = getattr(trace, letter, None)
        if coordinates is None:
            continue
        try:
            array = np.asarray(coordinates, dtype=float).ravel()
        except (TypeError, ValueError):  # category names
            return np.array([])
        values.append(array[np.isfinite(array)])
    return np.concatenate(values) if values else np.array([])


def _nice_step(raw: float) -> int:
    """The smallest of 1, 2, 5, 10, 20, ... at least ``raw``."""
    step = 1
    while step < raw:
        step = _next_nice(step)
    return step


def _next_nice(step: int) -> int:
    digits = 10 ** int(math.log10(step))
    return {1: 2, 2: 5, 5: 10}[step // digits] * digits


def _log_ticks(axis: Any, values: np.ndarray) -> None:
    """Ticks at 1 x 10^k (and 2, 5 x 10^k over at most two decades), labelled as plain numbers."""
    positive = values[values > 0]
    if not positive.size:
        return
    low, high = math.floor(math.log10(positive.min())), math.ceil(math.log10(positive.max()))
    high = max(high, low + 1)
    factors = (1, 2, 5) if high - low <= 2 else (1,)
    ticks = [f * 10.0 ** k for k in range(low, high + 1) for f in factors]
    ticks = [t for t in ticks if positive.min() / 1.5 <= t <= positive.max() * 1.5] or ticks
    axis.update(tickmode="array", tickvals=ticks, ticktext=[_plain(t) for t in ticks])


def _plain(value: float) -> str:
    """0.001, 0.05, 1, 20, 1e+06: a tick label without plotly's exponent letters."""
    return f"{value:.6g}" if 1e-4 <= value < 1e5 else f"{value:.0e}"


def _legend_names(figure: Any) -> list[str]:
    """The names the legend shows (plotly shows one only when there are two traces or more)."""
    names = [trace.name for trace in figure.data if trace.showlegend is not False and trace.name]
    return names if len(figure.data) > 1 or figure.layout.showlegend else []


def _legend_below_when_long(figure: Any) -> None:
    names = _legend_names(figure)
    entries = len(names)
    if entries <= LEGEND_BELOW and max(map(len, names), default=0) <= LEGEND_NAME_CHARS:
        return
    rows = max(math.ceil(entries / LEGEND_PER_ROW),
               math.ceil(sum(len(name) * CHAR_PX + LEGEND_SYMBOL_PX for name in names) / PAGE_WIDTH_PX))
    height = figure.layout.height or 450
    figure.update_layout(legend=dict(orientation="h", x=0, xanchor="left", y=-0.15, yanchor="top"),
                         height=height + rows * LEGEND_ROW_PX)


def _separate_text_labels(figure: Any) -> None:
    """Merge labels of points at one place; give every label a side of its point where it overlaps none."""
    placed: dict[str, list[tuple[float, float, float, float]]] = {}
    height = (figure.layout.height or 450) - 160  # plot area, less the default margins and title
    for trace in figure.data:
        if trace.type != "scatter" or not trace.mode or "text" not in trace.mode or trace.text is None:
            continue
        texts = list(trace.text) if isinstance(trace.text, (list, tuple)) else None
        if texts is None or trace.x is None or trace.y is None:
            continue
        x, y = np.asarray(trace.x, dtype=float), np.asarray(trace.y, dtype=float)
        texts = _merged(x, y, [str(t) for t in texts])
        subplot = f"{trace.xaxis or 'x'}{trace.yaxis or 'y'}"
        x_scale, y_scale = _pixels(figure, trace.xaxis or "x", PAGE_WIDTH_PX - 200), _pixels(figure, trace.yaxis or "y", height)
        sides = []
        for xi, yi, text in zip(x, y, texts):
            px, py = x_scale(xi), y_scale(yi)
            side = _free_side(px, py, text, placed.setdefault(subplot, []))
            sides.append(side)
        trace.update(text=texts, textposition=sides)


def _merged(x: np.ndarray, y: np.ndarray, texts: list[str]) -> list[str]:
    """Points with the same coordinates: one label listing them all, the others blank."""
    first: dict[tuple[float, float], int] = {}
    out = list(texts)
    for index, key in enumerate(zip(x.tolist(), y.tolist())):
        if key in first and texts[index]:
            out[first[key]] = f"{out[first[key]]}, {texts[index]}"
            out[index] = ""
        else:
            first.setdefault(key, index)
    return out


def _pixels(figure: Any, ref: str, length: float) -> Any:
    """data -> approximate pixels along axis ``ref`` (``x``, ``y2``, ...), the data span drawn over ``length``."""
    name = ref[0] + "axis" + ref[1:]
    log = figure.layout[name].type == "log"
    values = _axis_values(figure, name)
    values = np.log10(values[values > 0]) if log else values
    if not values.size:
        return lambda value: 0.0
    low, span = float(values.min()), float(values.max() - values.min()) or 1.0

    def scale(value: float) -> float:
        if not math.isfinite(value) or (log and value <= 0):
            return 0.0
        return ((math.log10(value) if log else value) - low) / span * length
    return scale


def _free_side(px: float, py: float, text: str, placed: list[tuple[float, float, float, float]]) -> str:
    """The first side of the point (x, y in pixels) where a box for ``text`` overlaps no box in ``placed``."""
    if not text:
        return SIDES[0]
    width, height = len(text) * CHAR_PX, LINE_PX
    best, best_overlap = SIDES[0], math.inf
    for side in SIDES:
        box = _box(px, py, width, height, side)
        overlap = sum(_overlap(box, other) for other in placed)
        if overlap < best_overlap:
            best, best_overlap = side, overlap
        if overlap == 0:
            break
    placed.append(_box(px, py, width, height, best))
    return best


def _box(px: float, py: float, width: float, height: float, side: str) -> tuple[float, float, float, float]:
    """(left, bottom, right, top) of a label on ``side`` of a point, y up, 6 px from the marker."""
    vertical, horizontal = side.split()
    if horizontal == "center":
        left = px - width / 2
    elif horizontal == "right":
        left = px + 6
    else:
        left = px - 6 - width
    bottom = {"top": py + 6, "bottom": py - 6 - height, "middle": py - height / 2}[vertical]
    return left, bottom, left + width, bottom + height


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    return width * height if width > 0 and height > 0 else 0.0
