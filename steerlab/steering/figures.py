"""plotly figures for steering: the sweep (its efficacy-KL frontier), and generations before/after."""

from __future__ import annotations

import math
from typing import Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]


def plot_sweep(result) -> go.Figure:
    """Three panels: efficacy against KL on neutral text (every setting, the frontier, the budget and
    the chosen point), then efficacy and KL against alpha. One colour per layer; the same-norm
    random control dashed."""
    figure = make_subplots(rows=1, cols=3, column_widths=[0.44, 0.28, 0.28],
                           subplot_titles=("efficacy vs KL on neutral text", "efficacy vs alpha", "KL vs alpha"))
    layers = sorted({row.layer for row in result.rows}, key=lambda layer: -1 if layer is None else layer)
    for index, layer in enumerate(layers):
        for control in (False, True):
            rows = sorted((r for r in result.rows if r.layer == layer and r.control == control), key=lambda r: r.alpha)
            if not rows:
                continue
            name = f"layer {layer}" + (" (random)" if control else "")
            line = dict(color=PALETTE[index % len(PALETTE)], dash="dash" if control else "solid")
            alphas = [r.alpha for r in rows]
            hover = [f"alpha {r.alpha:g}, KL {r.kl:.3g}, efficacy {r.efficacy:.3g}" for r in rows]
            figure.add_trace(go.Scatter(x=[r.kl for r in rows], y=[r.efficacy for r in rows], name=name, line=line,
                                        mode="lines+markers", legendgroup=name, text=hover, hoverinfo="text"),
                             row=1, col=1)
            figure.add_trace(go.Scatter(x=alphas, y=[r.efficacy for r in rows], name=name, line=line,
                                        legendgroup=name, showlegend=False), row=1, col=2)
            figure.add_trace(go.Scatter(x=alphas, y=[r.kl for r in rows], name=name, line=line, legendgroup=name,
                                        showlegend=False), row=1, col=3)
    for control, colour in ((False, "black"), (True, "gray")):
        front = result.frontier(control=control)
        if front:
            figure.add_trace(go.Scatter(x=[r.kl for r in front], y=[r.efficacy for r in front], mode="lines",
                                        line=dict(color=colour, width=3, shape="hv", dash="dot" if control else None),
                                        name="frontier" + (" (random)" if control else ""), opacity=0.5),
                             row=1, col=1)
    budget = result.settings.get("kl_budget")
    values = [r.efficacy for r in result.rows if not math.isnan(r.efficacy)]
    if budget is not None and values:  # a trace, not a shape: shapes on a log axis take log10 coordinates
        figure.add_trace(go.Scatter(x=[budget, budget], y=[min(values), max(values)], mode="lines",
                                    line=dict(color="firebrick", dash="dot"), name=f"KL budget {budget:g}"),
                         row=1, col=1)
    if not math.isnan(result.baseline_efficacy):
        for col in (1, 2):
            figure.add_hline(y=result.baseline_efficacy, line=dict(color="gray", dash="dot"), row=1, col=col,
                             annotation_text="unsteered" if col == 1 else None)
    point = result.chosen if result.chosen is not None else getattr(result, "best", None)
    if point is not None:
        name = "chosen" if result.chosen is not None else "best within budget (target not reached)"
        marker = dict(size=14, symbol="star" if result.chosen is not None else "diamond", color="black")
        figure.add_trace(go.Scatter(x=[point.kl], y=[point.efficacy], mode="markers", marker=marker, name=name,
                                    legendgroup="point"), row=1, col=1)
        figure.add_trace(go.Scatter(x=[point.alpha], y=[point.efficacy], mode="markers", marker=marker, name=name,
                                    legendgroup="point", showlegend=False), row=1, col=2)
    figure.update_xaxes(title_text="KL (nats per token)", type="log", row=1, col=1)
    figure.update_xaxes(title_text="alpha", row=1, col=2)
    figure.update_xaxes(title_text="alpha", row=1, col=3)
    figure.update_yaxes(title_text="efficacy", row=1, col=1)
    figure.update_yaxes(type="log", row=1, col=3)
    figure.update_layout(title="Steering sweep: the efficacy-KL frontier", template="plotly_white", height=440)
    return figure


def plot_generations(prompts: Sequence[str], before: Sequence[str], after: Sequence[str],
                     title: str = "Generations before and after steering") -> go.Figure:
    """A table: prompt, unsteered continuation, steered continuation."""
    table = go.Table(header=dict(values=["prompt", "unsteered", "steered"], align="left"),
                     cells=dict(values=[list(prompts), list(before), list(after)], align="left"))
    return go.Figure(table).update_layout(title=title, template="plotly_white")
