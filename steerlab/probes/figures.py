"""plotly figures for probes: metric by layer, transfer heatmap, 2-D projections, penalty trade-off.

Every function returns a ``plotly.graph_objects.Figure`` (show it, or ``.write_html``).
plotly is imported on first use, so ``import steerlab.probes`` stays light.

Example:
    >>> import numpy as np
    >>> from steerlab.probes import make_teacher_student
    >>> X, y, _ = make_teacher_student(50, 4, seed=0)
    >>> fig = projection_figure(X, y, domains=["a"] * 25 + ["b"] * 25)
    >>> len(fig.data)
    4
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import plotly.graph_objects as go


def layer_metric_figure(result: Any, metric: str = "accuracy", title: str | None = None) -> "go.Figure":
    """One line per method: ``metric`` against layer, from a :class:`SweepResult` or its records."""
    import plotly.graph_objects as go

    rows = result.to_records() if hasattr(result, "to_records") else list(result)
    figure = go.Figure()
    for method in dict.fromkeys(row["method"] for row in rows):
        mine = [row for row in rows if row["method"] == method]
        figure.add_trace(go.Scatter(x=[row["layer"] for row in mine], y=[row[metric] for row in mine],
                                    mode="lines+markers", name=method))
    figure.update_layout(title=title or f"{metric} by layer", xaxis_title="layer", yaxis_title=metric,
                         template="plotly_white")
    return figure


def transfer_heatmap(result: Any, title: str = "Transfer AUROC (train domain -> test domain)") -> "go.Figure":
    """Heatmap of ``result.auroc`` (rows: train domain incl. union; columns: test domain)."""
    import plotly.graph_objects as go

    figure = go.Figure(go.Heatmap(z=result.auroc, x=result.domains, y=result.train_domains, zmin=0, zmax=1,
                                  colorscale="RdBu", text=np.round(result.auroc, 3), texttemplate="%{text}",
                                  colorbar={"title": "AUROC"}))
    figure.update_layout(title=title, xaxis_title="test domain", yaxis_title="train domain",
                         yaxis_autorange="reversed", template="plotly_white")
    return figure


def projection_figure(X: Any, labels: Sequence[Any], domains: Sequence[Any] | None = None,
                      direction: np.ndarray | None = None, title: str = "Activations, 2-D projection") -> "go.Figure":
    """Scatter of ``X [n, d]`` projected to 2-D, coloured by label, one marker symbol per domain.

    Axes: the top two principal components, or with ``direction [d]`` the direction
    (x) and the top principal component of what is orthogonal to it (y).
    """
    import plotly.graph_objects as go

    from steerlab.probes.validation import as_activation_tensor

    values = as_activation_tensor(X)[0].numpy().astype(np.float64)
    centered = values - values.mean(0)
    if direction is None:
        _, _, vt = np.linalg.svd(centered, full_matrices=False)
        axes, names = vt[:2], ("PC 1", "PC 2")
    else:
        unit = np.asarray(direction, np.float64) / np.linalg.norm(direction)
        rest = centered - np.outer(centered @ unit, unit)
        axes, names = np.stack([unit, np.linalg.svd(rest, full_matrices=False)[2][0]]), ("direction", "PC 1 of the rest")
    points = centered @ axes.T
    labels = np.asarray(labels)
    domains = np.asarray(domains) if domains is not None else np.full(len(labels), "all")
    symbols = ["circle", "diamond", "square", "x", "triangle-up", "cross", "star", "hexagon"]
    palette = ["#d62728", "#1f77b4", "#2ca02c", "#ff7f0e"]
    figure = go.Figure()
    for d_index, domain in enumerate(dict.fromkeys(domains.tolist())):
        for l_index, label in enumerate(np.unique(labels).tolist()):
            mask = (domains == domain) & (labels == label)
            figure.add_trace(go.Scatter(x=points[mask, 0], y=points[mask, 1], mode="markers",
                                        name=f"{domain} / {label}", marker={
                                            "color": palette[l_index % len(palette)],
                                            "symbol": symbols[d_index % len(symbols)], "opacity": 0.7}))
    figure.update_layout(title=title, xaxis_title=names[0], yaxis_title=names[1], template="plotly_white")
    return figure


def penalty_tradeoff_figure(path: Any, title: str = "Ridge penalty: accuracy vs directional stability") -> "go.Figure":
    """Test accuracy, stability (and cosine to the teacher when known) against C (log axis), from a PenaltyPath."""
    import plotly.graph_objects as go

    figure = go.Figure()
    figure.add_trace(go.Scatter(x=path.Cs, y=path.test_accuracy, mode="lines+markers", name="test accuracy"))
    figure.add_trace(go.Scatter(x=path.Cs, y=path.stability, mode="lines+markers", name="stability (mean |cos|)"))
    if not np.isnan(path.teacher_cosine).all():
        figure.add_trace(go.Scatter(x=path.Cs, y=path.teacher_cosine, mode="lines+markers", name="|cos| to teacher"))
    figure.update_layout(title=title, xaxis_type="log", xaxis_title="C (larger = weaker ridge)",
                         yaxis_title="value", template="plotly_white")
    return figure
