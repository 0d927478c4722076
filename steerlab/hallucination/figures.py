"""plotly figures for hallucination detection: ROC curves per method, an answer's tokens coloured by score.

Example:
    >>> import numpy as np
    >>> y = np.array([0, 0, 1, 1]); fig = roc_figure({"probe": (y, np.array([0.1, 0.4, 0.35, 0.8]))})
    >>> fig.data[0].name
    'probe (AUROC 0.75)'
    >>> token_html(["teshan", "."], [0.9, 0.1]).count("<span")
    2
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Sequence

import numpy as np

from steerlab.probes.metrics import auroc, roc_curve

if TYPE_CHECKING:  # pragma: no cover
    import plotly.graph_objects as go


def roc_figure(curves: dict[str, tuple[np.ndarray, np.ndarray]], title: str = "ROC: hallucination detection"
               ) -> "go.Figure":
    """One ROC curve per method from ``{method: (y01 [n], scores [n])}``, AUROC in the legend."""
    import plotly.graph_objects as go

    figure = go.Figure()
    for method, (y01, scores) in curves.items():
        fpr, tpr, _ = roc_curve(y01, scores)
        figure.add_trace(go.Scatter(x=fpr, y=tpr, mode="lines", name=f"{method} (AUROC {auroc(y01, scores):.3g})"))
    figure.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="gray"),
                                name="chance"))
    for level in (0.01, 0.05, 0.10):
        figure.add_vline(x=level, line=dict(width=1, dash="dash", color="lightgray"))
    return figure.update_layout(title=title, xaxis_title="false-positive rate", yaxis_title="recall (true-positive rate)",
                                template="plotly_white", height=420, xaxis_range=[0, 1], yaxis_range=[0, 1.02])


def token_figure(rows: Sequence[tuple[str, Sequence[str], Sequence[float]]],
                 title: str = "P(hallucinated) per generated token") -> "go.Figure":
    """Answers as rows of tokens coloured by score, from ``[(label, tokens, scores), ...]``."""
    import plotly.graph_objects as go

    width = max(len(tokens) for _, tokens, _ in rows)
    z = np.full((len(rows), width), np.nan)
    text = [[""] * width for _ in rows]
    for i, (_, tokens, scores) in enumerate(rows):
        z[i, :len(scores)] = scores
        text[i][:len(tokens)] = list(tokens)
    figure = go.Figure(go.Heatmap(z=z, text=text, texttemplate="%{text}", zmin=0, zmax=1, colorscale="Reds",
                                  colorbar={"title": "P(halluc.)"}, xgap=2, ygap=2,
                                  hovertemplate="%{text}: %{z:.2f}<extra></extra>"))
    figure.update_yaxes(tickvals=list(range(len(rows))), ticktext=[label for label, _, _ in rows], autorange="reversed")
    figure.update_xaxes(title_text="generated token", dtick=1)
    return figure.update_layout(title=title, template="plotly_white", height=120 + 40 * len(rows))


def token_html(tokens: Sequence[str], scores: Sequence[float]) -> str:
    """An HTML snippet: each token on a red background whose strength is its score (hover shows it)."""
    spans = [f"<span title='{score:.2f}' style='background: rgba(220, 20, 60, {float(score):.2f}); "
             f"padding: 1px 3px; border-radius: 3px'>{html.escape(token)}</span>"
             for token, score in zip(tokens, scores)]
    return " ".join(spans)
