"""Cross-domain transfer of truth directions and its geometry (Mahalanobis cosine).

Following Ying et al., "The Truthfulness Spectrum Hypothesis" (arXiv 2602.20273): train
a probe on domain A, measure AUROC on domain B for every pair (and for a probe trained
on the union of domains); compare directions with the Mahalanobis cosine on the target
domain,

    cos_S(w_A, w_B) = w_A^T S_B w_B / sqrt(w_A^T S_B w_A * w_B^T S_B w_B),

``S_B`` the covariance of B's raw activations (both classes), which equals the
correlation of the two probes' scores on B. A linear fit of cross-domain AUROC on cos_S
(the paper reports R^2 = 0.98) is reported beside the same fit on the plain cosine.
:func:`transfer_by_layer` does the same at every captured layer in one fit per domain.

Example:
    >>> import numpy as np
    >>> from steerlab.probes import make_teacher_student, transfer_matrix
    >>> X, y, _ = make_teacher_student(400, 8, seed=0)
    >>> result = transfer_matrix({"a": (X[:200], y[:200]), "b": (X[200:], y[200:])})
    >>> result.auroc.shape, result.train_domains
    ((3, 2), ['a', 'b', 'union'])
    >>> X3, y3, _ = make_teacher_student(400, 8, n_layers=3, seed=0)
    >>> layered = transfer_by_layer({"a": (X3[:200], y3[:200]), "b": (X3[200:], y3[200:])})
    >>> layered.auroc.shape, layered.at(2).auroc.shape
    ((3, 3, 2), (3, 2))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from steerlab.probes.base import LinearProbe
from steerlab.probes.metrics import auroc
from steerlab.probes.raptor import LogisticDirection
from steerlab.probes.splits import split
from steerlab.probes.validation import (ProbeInputError, as_activation_tensor, as_groups, check_estimator,
                                        check_fraction, check_labels, check_layer, check_number)


def mahalanobis_cosine(w_a: np.ndarray, w_b: np.ndarray, X_target: np.ndarray) -> float:
    """``cos_S(w_a, w_b)`` with ``S`` the covariance of ``X_target [n, d]``, computed through the scores
    (``w^T S w' = cov(X w, X w')``) so the ``d x d`` matrix is never formed."""
    X = np.asarray(X_target, dtype=np.float64)
    centered = X - X.mean(0)
    a, b = centered @ np.asarray(w_a, np.float64), centered @ np.asarray(w_b, np.float64)
    return float((a @ b) / np.sqrt((a @ a) * (b @ b)))


def cosine(w_a: np.ndarray, w_b: np.ndarray) -> float:
    return float(np.dot(w_a, w_b) / (np.linalg.norm(w_a) * np.linalg.norm(w_b)))


def linear_fit_r2(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Least-squares ``y ~ intercept + slope * x``: ``{"r2", "slope", "intercept"}``."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (intercept + slope * x)
    total = ((y - y.mean()) ** 2).sum()
    return {"r2": float(1 - (residual ** 2).sum() / total) if total > 0 else float("nan"),
            "slope": float(slope), "intercept": float(intercept)}


@dataclass
class TransferResult:
    """auroc: ``[len(train_domains), len(domains)]`` (rows: train domain, last row "union");
    mahalanobis_cosine / cosine: ``[len(domains), len(domains)]``, entry (A, B) compares w_A and
    w_B (the Mahalanobis one on B's covariance); probes: the fitted probe per train domain."""

    domains: list[str]
    train_domains: list[str]
    auroc: np.ndarray
    mahalanobis_cosine: np.ndarray
    cosine: np.ndarray
    probes: dict[str, LinearProbe] = field(repr=False)

    def fit_r2(self, exclude: Sequence[tuple[str, str]] = ()) -> dict[str, dict[str, float]]:
        """Linear fits of cross-domain AUROC (A != B, single-domain rows) on each cosine.

        ``exclude``: domain pairs left out of the fit in both orders, e.g. ``[("cities", "neg_cities")]``
        to see how much a few high-leverage pairs (a set and its negation) carry the R^2.
        """
        k = len(self.domains)
        off = ~np.eye(k, dtype=bool)
        for a, b in exclude:
            for first, second in ((a, b), (b, a)):
                if first not in self.domains or second not in self.domains:
                    raise ProbeInputError(f"exclude names the pair ({a!r}, {b!r}); the domains are {self.domains}.")
                off[self.domains.index(first), self.domains.index(second)] = False
        transfer = self.auroc[:k][off]
        return {"mahalanobis": linear_fit_r2(self.mahalanobis_cosine[off], transfer),
                "cosine": linear_fit_r2(self.cosine[off], transfer)}

    def to_records(self) -> list[dict[str, Any]]:
        """One row per (train domain, test domain)."""
        rows = []
        for i, train in enumerate(self.train_domains):
            for j, test in enumerate(self.domains):
                single = i < len(self.domains)
                rows.append({"train": train, "test": test, "auroc": float(self.auroc[i, j]),
                             "mahalanobis_cosine": float(self.mahalanobis_cosine[i, j]) if single else None,
                             "cosine": float(self.cosine[i, j]) if single else None})
        return rows

    def figure(self, title: str = "Transfer AUROC (train domain -> test domain)"):
        from steerlab.probes.figures import transfer_heatmap

        return transfer_heatmap(self, title=title)

    def scatter_figure(self, title: str = "Cross-domain AUROC against the cosine of the two probes"):
        """Cross-domain AUROC against the Mahalanobis and the plain cosine, with both linear fits."""
        from steerlab.probes.figures import transfer_scatter

        return transfer_scatter(self, title=title)

    def summary(self) -> dict[str, float]:
        """Mean in-domain AUROC, mean cross-domain AUROC (A != B), mean AUROC of the union probe (if any)."""
        k = len(self.domains)
        single = self.auroc[:k]
        out = {"in_domain": float(np.mean(np.diag(single))),
               "cross_domain": float(single[~np.eye(k, dtype=bool)].mean())}
        if len(self.train_domains) > k:
            out["union"] = float(self.auroc[k].mean())
        return out

    def __repr__(self) -> str:
        width = max(len(name) for name in self.train_domains + self.domains) + 2
        lines = ["TransferResult: AUROC, rows = train domain, columns = test domain",
                 " " * width + "".join(f"{name:>{width}}" for name in self.domains)]
        for name, row in zip(self.train_domains, self.auroc):
            lines.append(f"{name:<{width}}" + "".join(f"{value:>{width}.3f}" for value in row))
        if len(self.domains) > 2:
            fits = self.fit_r2()
            lines.append(f"R^2 of transfer vs Mahalanobis cosine: {fits['mahalanobis']['r2']:.3f}, "
                         f"vs plain cosine: {fits['cosine']['r2']:.3f}")
        return "\n".join(lines)


def _domain_arrays(data: Any, multi_layer: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, list[int] | None]:
    """``(X, y)`` or ``(X, y, groups)`` -> ``X`` ``[n, L, d]`` (``L = 1`` unless ``multi_layer``), ``y``,
    ``groups``, the model layer numbers when ``X`` is an ``Activations``."""
    if not isinstance(data, (tuple, list)) or len(data) not in (2, 3):
        raise ProbeInputError(f"A domain must be (X, y) or (X, y, groups), got {type(data).__name__}"
                              f"{f' of length {len(data)}' if isinstance(data, (tuple, list)) else ''}: "
                              "e.g. {'cities': (X, y)}.")
    X, y, *rest = data
    values, info = as_activation_tensor(X)
    if values.ndim == 2:
        values = values[:, None]
    if values.shape[1] != 1 and not multi_layer:
        raise ProbeInputError(f"Transfer compares one layer, got {values.shape[1]} layers: pass X[:, slot] "
                              "or acts.layer(l) for the layer you want (or use transfer_by_layer for every layer).")
    groups = as_groups(rest[0] if rest else None, len(values))
    return values.numpy(), np.asarray(y), groups, info.layers


def _domain_data(given: Any, test_fraction: float, seed: int, multi_layer: bool = False
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[int] | None]:
    """One domain's ``(X [n, L, d], y01 [n], train_idx, test_idx, layers)``: its given splits, else a fresh
    (group) split."""
    if isinstance(given, Mapping):  # explicit {"train": (X, y), "test": (X, y)}: stacked, indices kept
        missing = {"train", "test"} - set(given)
        if missing:
            raise ProbeInputError(f"A domain given as a mapping needs the keys 'train' and 'test' (missing "
                                  f"{sorted(missing)}): e.g. {{'train': (X, y), 'test': (X, y)}}.")
        X_train, y_train, _, layers = _domain_arrays(given["train"], multi_layer)
        X_test, y_test, _, _ = _domain_arrays(given["test"], multi_layer)
        if X_train.shape[1:] != X_test.shape[1:]:
            raise ProbeInputError(f"train has shape [n, layers, d] = [n, {X_train.shape[1]}, {X_train.shape[2]}] but "
                                  f"test [n, {X_test.shape[1]}, {X_test.shape[2]}]: use activations of the same model, "
                                  "site and layers.")
        X, y = np.concatenate([X_train, X_test]), np.concatenate([y_train, y_test])
        y01, _ = check_labels(y, len(X))
        check_labels(y_train, len(X_train))  # each side needs both classes
        return X, y01, np.arange(len(X_train)), np.arange(len(X_train), len(X)), layers
    X, y, groups, layers = _domain_arrays(given, multi_layer)
    y01, _ = check_labels(y, len(X))
    train, test = split(y01, test_fraction, seed, groups)
    return X, y01, train, test, layers


def split_domains(domains: Mapping[str, Any], test_fraction: float = 0.2, seed: int = 0, multi_layer: bool = False
                  ) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, np.ndarray], dict[str, np.ndarray],
                             list[int] | None]:
    """Check and split every domain as :func:`transfer_matrix` does.

    Returns ``(data, train_idx, test_idx, layers)``: ``data[name] = (X [n, L, d], y01 [n])``
    (``L = 1`` unless ``multi_layer``), the row indices of each side, and the model layer
    numbers when the activations carry them.
    """
    if not isinstance(domains, Mapping) or len(domains) < 2:
        got = f"{len(domains)}" if isinstance(domains, Mapping) else f"a {type(domains).__name__}"
        raise ProbeInputError(f"Transfer needs a mapping of at least 2 domains, name -> (X, y), got {got}.")
    check_fraction(test_fraction, "test_fraction")
    check_number(seed, "seed", minimum=0, integer=True)
    data, train_idx, test_idx, layers = {}, {}, {}, None
    for name in domains:
        try:
            X, y01, train_idx[name], test_idx[name], found = _domain_data(domains[name], test_fraction, seed,
                                                                           multi_layer)
        except ProbeInputError as error:
            raise ProbeInputError(f"Domain {name!r}: {error}") from error
        data[name] = (X, y01)
        layers = layers or found
    widths = {name: data[name][0].shape[2] for name in data}
    if len(set(widths.values())) > 1:
        raise ProbeInputError(f"The domains have different widths d {widths}: compare activations of one model, "
                              "site and layer.")
    depths = {name: data[name][0].shape[1] for name in data}
    if len(set(depths.values())) > 1:
        raise ProbeInputError(f"The domains have different numbers of layers {depths}: capture every domain at the "
                              "same layers.")
    return data, train_idx, test_idx, layers


@dataclass
class LayerTransfer:
    """Transfer at every layer. ``auroc``: ``[n_layers, len(train_domains), len(domains)]``;
    ``mahalanobis_cosine`` / ``cosine``: ``[n_layers, len(domains), len(domains)]``; ``probes``:
    one per-layer probe per train domain; ``layers``: model layer numbers (or slots)."""

    layers: list[int]
    domains: list[str]
    train_domains: list[str]
    auroc: np.ndarray
    mahalanobis_cosine: np.ndarray
    cosine: np.ndarray
    probes: dict[str, LinearProbe] = field(repr=False)

    def at(self, layer: int) -> TransferResult:
        """The :class:`TransferResult` of one layer (a model layer number, as in ``layers``)."""
        slot = check_layer(layer, self.layers, len(self.layers))
        probes = {name: probe.at_layer(probe.layers_[slot] if probe.layers_ else slot)
                  for name, probe in self.probes.items()}
        return TransferResult(self.domains, self.train_domains, self.auroc[slot], self.mahalanobis_cosine[slot],
                              self.cosine[slot], probes)

    def to_records(self) -> list[dict[str, Any]]:
        """One row per layer: mean in-domain / cross-domain / union AUROC and the R^2 of both linear fits."""
        rows = []
        for layer in self.layers:
            result = self.at(layer)
            fits = result.fit_r2() if len(self.domains) > 2 else {}
            rows.append({"layer": layer, **result.summary(),
                         **{f"r2_{kind}": fit["r2"] for kind, fit in fits.items()}})
        return rows

    def figure(self, title: str = "Transfer across layers"):
        """Mean in-domain, cross-domain and union AUROC and both R^2 against layer."""
        from steerlab.probes.figures import layer_metric_figure

        series = [{"method": key, "layer": row["layer"], "value": row[key]}
                  for row in self.to_records() for key in row if key != "layer"]
        return layer_metric_figure(series, metric="value", title=title)

    def __repr__(self) -> str:
        lines = [f"LayerTransfer: {len(self.domains)} domains x {len(self.layers)} layers",
                 "layer  in-domain  cross-domain  R^2 Mahalanobis  R^2 cosine"]
        for row in self.to_records():
            lines.append(f"{row['layer']:>5}  {row['in_domain']:>9.3f}  {row['cross_domain']:>12.3f}  "
                         f"{row.get('r2_mahalanobis', float('nan')):>15.3f}  "
                         f"{row.get('r2_cosine', float('nan')):>10.3f}")
        return "\n".join(lines)


def _transfer(domains: Mapping[str, Any], probe: LinearProbe | None, test_fraction: float, seed: int,
              include_union: bool, multi_layer: bool) -> LayerTransfer:
    """The shared core: fit one (per-layer) probe per train domain, score every test split at every layer."""
    probe = probe or LogisticDirection(C=1.0)
    check_estimator(probe)
    data, train_idx, test_idx, layers = split_domains(domains, test_fraction, seed, multi_layer)
    names = list(data)
    fitted = {name: probe.clone().fit(data[name][0][train_idx[name]], data[name][1][train_idx[name]])
              for name in names}
    if include_union:
        fitted["union"] = probe.clone().fit(np.concatenate([data[n][0][train_idx[n]] for n in names]),
                                            np.concatenate([data[n][1][train_idx[n]] for n in names]))
    train_domains = list(fitted)
    n_layers = data[names[0]][0].shape[1]
    scores = {(a, b): fitted[a].decision_function(data[b][0][test_idx[b]]) for a in train_domains for b in names}
    table = np.array([[[auroc(data[b][1][test_idx[b]], scores[a, b][:, slot]) for b in names] for a in train_domains]
                      for slot in range(n_layers)])
    weights = {name: np.asarray(fitted[name].coef_) for name in names}  # [L, d]
    maha = np.array([[[mahalanobis_cosine(weights[a][slot], weights[b][slot], data[b][0][:, slot]) for b in names]
                      for a in names] for slot in range(n_layers)])
    plain = np.array([[[cosine(weights[a][slot], weights[b][slot]) for b in names] for a in names]
                      for slot in range(n_layers)])
    return LayerTransfer(layers or list(range(n_layers)), names, train_domains, table, maha, plain, fitted)


def transfer_matrix(domains: Mapping[str, Any], probe: LinearProbe | None = None, test_fraction: float = 0.2,
                    seed: int = 0, include_union: bool = True) -> TransferResult:
    """Train on each domain's train split, AUROC on every domain's test split.

    Args:
        domains: name -> ``(X [n, d], y [n])`` or ``(X, y, groups)`` (groups -> group split), or
            ``{"train": (X, y), "test": (X, y)}`` to use given splits.
        probe: an unfitted probe to clone per domain (default: ``LogisticDirection(C=1.0)``).
        test_fraction, seed: the per-domain split.
        include_union: add a probe trained on the union of all training splits (last row).
    """
    return _transfer(domains, probe, test_fraction, seed, include_union, multi_layer=False).at(0)


def transfer_by_layer(domains: Mapping[str, Any], probe: LinearProbe | None = None, test_fraction: float = 0.2,
                      seed: int = 0, include_union: bool = True) -> LayerTransfer:
    """:func:`transfer_matrix` at every layer: ``X`` is ``[n, n_layers, d]`` (or an ``Activations``).

    One per-layer probe is fitted per train domain (all layers in one solve), on the same
    splits at every layer. ``.at(layer)`` gives one layer's :class:`TransferResult`.
    """
    return _transfer(domains, probe, test_fraction, seed, include_union, multi_layer=True)
