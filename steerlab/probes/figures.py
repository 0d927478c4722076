"""plotly figures for probes: metric by layer, transfer heatmap and scatter, 2-D projections, penalty trade-off.

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
    """One line per method: ``metric`` against layer, from a :class:`ProbeSweep` or its records."""
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


def project_2d(X: Any, domains: Sequence[Any] | None = None, direction: np.ndarray | None = None,
               center_by_domain: bool = False) -> tuple[np.ndarray, tuple[str, str]]:
    """``(points [n, 2], axis names)``: ``X [n, d]`` on its top two principal components, or on
    ``direction [d]`` (x) and the top principal component of what is orthogonal to it (y).

    ``center_by_domain`` subtracts each domain's own mean first, as the figures of Marks &
    Tegmark, "The Geometry of Truth", do (so the PCs show within-domain structure, not the
    offset between domains).
    """
    from steerlab.probes.validation import as_activation_tensor

    values = as_activation_tensor(X)[0].numpy().astype(np.float64)
    if center_by_domain and domains is not None:
        groups = np.asarray(domains)
        values = values.copy()
        for domain in np.unique(groups):
            values[groups == domain] -= values[groups == domain].mean(0)
    centered = values - values.mean(0)
    if direction is None:
        _, _, vt = np.linalg.svd(centered, full_matrices=False)
        axes, names = vt[:2], ("PC 1", "PC 2")
    else:
        unit = np.asarray(direction, np.float64) / np.linalg.norm(direction)
        rest = centered - np.outer(centered @ unit, unit)
        axes, names = np.stack([unit, np.linalg.svd(rest, full_matrices=False)[2][0]]), ("direction", "PC 1 of the rest")
    return centered @ axes.T, names


def projection_figure(X: Any, labels: Sequence[Any], domains: Sequence[Any] | None = None,
                      direction: np.ndarray | None = None, title: str = "Activations, 2-D projection",
                      center_by_domain: bool = False) -> "go.Figure":
    """Scatter of ``X [n, d]`` projected to 2-D (:func:`project_2d`), coloured by label, one marker
    symbol per domain."""
    import plotly.graph_objects as go

    points, names = project_2d(X, domains, direction, center_by_domain)
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


def transfer_scatter(result: Any, title: str = "Cross-domain AUROC against the cosine of the two probes"
                     ) -> "go.Figure":
    """Two panels: cross-domain AUROC (A != B) of a :class:`TransferResult` against the Mahalanobis cosine
    and against the plain cosine of w_A and w_B, each with its least-squares line and R^2 (Ying et
    al., "The Truthfulness Spectrum Hypothesis", report R^2 = 0.98 for the Mahalanobis fit)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    k = len(result.domains)
    off = ~np.eye(k, dtype=bool)
    pairs = [f"{a} -> {b}" for i, a in enumerate(result.domains) for j, b in enumerate(result.domains) if i != j]
    transfer = result.auroc[:k][off]
    fits = result.fit_r2()
    panels = (("mahalanobis", result.mahalanobis_cosine[off], "Mahalanobis cosine"),
              ("cosine", result.cosine[off], "plain cosine"))
    figure = make_subplots(rows=1, cols=2, subplot_titles=[f"{name}: R^2 = {fits[key]['r2']:.3f}"
                                                           for key, _, name in panels])
    for column, (key, x, name) in enumerate(panels, start=1):
        figure.add_trace(go.Scatter(x=x, y=transfer, mode="markers", text=pairs, name=name,
                                    hovertemplate="%{text}<br>cos %{x:.3f}<br>AUROC %{y:.3f}<extra></extra>"),
                         row=1, col=column)
        line = np.linspace(x.min(), x.max(), 2)
        figure.add_trace(go.Scatter(x=line, y=fits[key]["intercept"] + fits[key]["slope"] * line, mode="lines",
                                    name=f"fit ({name})", line={"dash": "dash"}), row=1, col=column)
        figure.update_xaxes(title_text=name, row=1, col=column)
    figure.update_yaxes(title_text="cross-domain AUROC", row=1, col=1)
    figure.update_layout(title=title, template="plotly_white")
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
