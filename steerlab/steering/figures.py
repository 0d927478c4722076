"""plotly figures for steering: the sweep, and generations before/after."""

from __future__ import annotations

from typing import Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots


def plot_sweep(result) -> go.Figure:
    """Efficacy and KL against alpha, one line per layer; the random control dashed."""
    figure = make_subplots(rows=1, cols=2, subplot_titles=("efficacy", "KL on neutral text"))
    layers = sorted({row.layer for row in result.rows}, key=lambda layer: -1 if layer is None else layer)
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
    for index, layer in enumerate(layers):
        for control in (False, True):
            rows = sorted((r for r in result.rows if r.layer == layer and r.control == control), key=lambda r: r.alpha)
            if not rows:
                continue
            name = f"layer {layer}" + (" (random)" if control else "")
            line = dict(color=palette[index % len(palette)], dash="dash" if control else "solid")
            alphas = [r.alpha for r in rows]
            figure.add_trace(go.Scatter(x=alphas, y=[r.efficacy for r in rows], name=name, line=line,
                                        legendgroup=name), row=1, col=1)
            figure.add_trace(go.Scatter(x=alphas, y=[r.kl for r in rows], name=name, line=line, legendgroup=name,
                                        showlegend=False), row=1, col=2)
    figure.add_hline(y=result.baseline_efficacy, line=dict(color="gray", dash="dot"), row=1, col=1,
                     annotation_text="unsteered")
    if result.chosen is not None:
        figure.add_trace(go.Scatter(x=[result.chosen.alpha], y=[result.chosen.efficacy], mode="markers",
                                    marker=dict(size=12, symbol="star", color="black"), name="chosen"), row=1, col=1)
    figure.update_xaxes(title_text="alpha")
    figure.update_layout(title="Steering sweep", template="plotly_white", height=420)
    return figure


def plot_generations(prompts: Sequence[str], before: Sequence[str], after: Sequence[str],
                     title: str = "Generations before and after steering") -> go.Figure:
    """A table: prompt, unsteered continuation, steered continuation."""
    table = go.Table(header=dict(values=["prompt", "unsteered", "steered"], align="left"),
                     cells=dict(values=[list(prompts), list(before), list(after)], align="left"))
    return go.Figure(table).update_layout(title=title, template="plotly_white")
