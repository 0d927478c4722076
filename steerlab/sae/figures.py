"""plotly figures of the SAE comparison (sae-dashboard does not install with this stack)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def alignment_bars(cosines: Any, title: str, top: int = 20) -> Any:
    """Bars of the ``top`` decoder rows by |cosine| with a direction (signed cosine, feature ids on x)."""
    import plotly.graph_objects as go

    cosines = np.asarray(cosines)
    order = np.argsort(-np.abs(cosines))[:top]
    figure = go.Figure(go.Bar(x=[f"f{i}" for i in order], y=cosines[order],
                              marker_color=["#2a7" if c > 0 else "#c44" for c in cosines[order]]))
    return figure.update_layout(title=title, xaxis_title="SAE feature", yaxis_title="cosine with decoder row",
                                template="plotly_white", height=340)


def reconstruction_figure(curves: dict[str, Sequence[dict]]) -> Any:
    """R^2 of each direction from its k best-aligned decoder rows, against k (log x)."""
    import plotly.graph_objects as go

    figure = go.Figure([go.Scatter(x=[r["k"] for r in rows], y=[r["r2"] for r in rows], mode="lines+markers",
                                   name=name) for name, rows in curves.items()])
    return figure.update_layout(title="How many SAE features does a direction need?", xaxis_type="log",
                                xaxis_title="k best-aligned decoder rows", yaxis_title="R^2 of the direction",
                                yaxis_range=[0, 1.02], template="plotly_white", height=360)


def k_sparse_figure(curves: dict[str, Sequence[dict]], baselines: dict[str, float]) -> Any:
    """Held-out AUROC of k-sparse SAE probes per concept, with RaptorProbe on raw activations as dashed lines."""
    import plotly.graph_objects as go

    figure = go.Figure()
    for (name, rows), color in zip(curves.items(), ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")):
        figure.add_trace(go.Scatter(x=[r["k"] for r in rows], y=[r["auroc"] for r in rows], mode="lines+markers",
                                    name=f"{name}: k-sparse SAE probe", line_color=color))
        if name in baselines:
            figure.add_hline(y=baselines[name], line=dict(dash="dash", color=color),
                             annotation_text=f"{name}: RaptorProbe (raw)")
    return figure.update_layout(title="Sparse probing on SAE latents (held-out split)", xaxis_type="log",
                                xaxis_title="k latents", yaxis_title="held-out AUROC", template="plotly_white",
                                height=380)


def detection_steering_scatter(comparisons: Sequence[dict]) -> Any:
    """Detection AUROC (x) vs steering efficacy at matched KL (y), one marker per method and concept.

    Rows whose KL was not matched (``matched`` False) get an open marker and "(KL unmatched)".
    """
    import plotly.graph_objects as go

    figure = go.Figure()
    for comparison, symbol in zip(comparisons, ("circle", "diamond", "square")):
        rows = comparison["methods"]
        matched = [r.get("matched", True) for r in rows]
        figure.add_trace(go.Scatter(
            x=[r["detection_auroc"] for r in rows], y=[r["efficacy"] for r in rows], mode="markers+text",
            text=[r["method"] if ok else f"{r['method']} (KL unmatched)" for r, ok in zip(rows, matched)],
            textposition="top center",
            marker=dict(size=11, symbol=[symbol if ok else f"{symbol}-open" for ok in matched]),
            name=f"{comparison['concept']} (KL = {comparison['kl_budget']})"))
    return figure.update_layout(title="Detect vs steer (AxBench-style, no LLM judge)", xaxis_title="held-out detection AUROC",
                                yaxis_title="steering efficacy at matched KL", template="plotly_white", height=440)


def quality_figure(rows: Sequence[dict]) -> Any:
    """Explained variance and CE loss recovered per shipped SAE."""
    import plotly.graph_objects as go

    names = [row["name"] for row in rows]
    figure = go.Figure([go.Bar(x=names, y=[row["explained_variance"] for row in rows], name="explained variance"),
                        go.Bar(x=names, y=[row["ce_loss_recovered"] for row in rows], name="CE loss recovered")])
    return figure.update_layout(title="SAE quality on held-out demo text", yaxis_range=[0, 1.02], barmode="group",
                                template="plotly_white", height=340)


def input_output_scatter(input_scores: Any, output_scores: Any, title: str) -> Any:
    """Input score (x) vs output score (y) of every feature (Arad et al.: high values rarely coincide)."""
    import plotly.graph_objects as go

    input_scores, output_scores = np.asarray(input_scores), np.asarray(output_scores)
    keep = np.isfinite(input_scores) & np.isfinite(output_scores)
    figure = go.Figure(go.Scatter(x=input_scores[keep], y=output_scores[keep], mode="markers",
                                  text=[f"f{i}" for i in np.flatnonzero(keep)], marker=dict(size=6, opacity=0.6)))
    return figure.update_layout(title=title, xaxis_title="input score (share of top tokens from concept texts)",
                                yaxis_title="output score (rise in concept log-odds)", template="plotly_white",
                                height=380)
