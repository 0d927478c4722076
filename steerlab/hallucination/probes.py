"""Token-level hallucination probes: an MLP (Liang & Wang) and a linear baseline (Obeso et al.).

Both read ONE layer's hidden state at each generated token, ``X [n_tokens, d_model]``,
and give ``p(token is hallucinated)``. ``groups [n_tokens]`` names the span (or answer)
each token belongs to; a span's label is the max of its tokens' labels and an answer's
score is the max of its tokens' scores.

* :class:`HallucinationProbe` (Liang & Wang, "Neural Probe-Based Hallucination Detection
  for Large Language Models", arXiv 2512.20949): normalisation -> MLP -> one logit per token,
  trained with the multi-objective joint loss ``focal(tokens) + span_weight * soft_span(spans)
  + sparsity_weight * sparsity(spans) + kl_weight * KL(two dropout passes)``
  (:mod:`steerlab.hallucination.losses`).
* :class:`LinearTokenProbe` (Obeso et al., "Real-time detection of hallucinated entities
  in long-form generation", arXiv 2509.03531): a linear map, token BCE + BCE of the
  span's max logit, the span weight annealed from 0 to 1.

Training: AdamW on mini-batches of whole spans, early stopping on a validation split
grouped by span (``val_fraction``), the weights of the best validation epoch kept; the
decision threshold ``threshold_`` is the F1-best one on that validation split. Seeded
and deterministic (the global torch RNG is left untouched).

Default loss weights were measured on the demo model (``benchmarks/hallucination_demo.py``):
see :class:`HallucinationProbe`.

Example:
    >>> import numpy as np
    >>> from steerlab.hallucination import HallucinationProbe
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(600, 16)).astype(np.float32); y = (X[:, 0] + X[:, 1] ** 2 > 1.5).astype(int)
    >>> probe = HallucinationProbe(hidden=(32,), max_epochs=60).fit(X, y, groups=np.arange(600) // 2)
    >>> probe.predict_proba(X).shape, probe.score(X, y) > 0.85
    ((600, 2), True)
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from steerlab.hallucination import losses
from steerlab.probes.estimator import BinaryClassifier
from steerlab.probes.metrics import auroc, best_f1_threshold, group_max, sigmoid
from steerlab.probes.splits import split
from steerlab.probes.validation import (as_activation_matrix, as_groups, check_01_labels, check_choice,
                                        check_fitted, check_fraction, check_labels, check_min_per_class, check_number,
                                        check_width)

NORMALIZATIONS = ("standardize", "layer_norm", None)
KL_WEIGHT = 0.0  # default weight of HallucinationProbe's KL term (see its docstring for the measurement)


class TokenProbe(BinaryClassifier):
    """Shared machinery: validation, the grouped early-stopping loop, scoring, save/load, repr.

    Subclasses set ``_hidden()`` (MLP widths, ``()`` = linear) and ``_loss(z, y, span,
    span_label, epoch)``.

    Fitted attributes: ``network_`` (the torch module), ``mean_``/``scale_`` ``[d]`` (or None),
    ``d_model_``, ``classes_``, ``threshold_`` (probability; F1-best on validation),
    ``best_epoch_``, ``n_epochs_``, ``history_`` (validation score per epoch), ``val_auroc_``
    (token-level AUROC on the validation split at the best epoch), ``fit_seconds_``.

    Provenance: set ``probe.layer_``, ``probe.site_``, ``probe.model_name_`` after fitting (the
    rows carry no provenance; None by default) and :meth:`save` records them.
    """

    layer_: int | None = None
    site_: str | None = None
    model_name_: str | None = None

    def __init__(self, *, normalize: str | None = "standardize", dropout: float = 0.0, lr: float = 3e-3,
                 weight_decay: float = 1e-2, max_epochs: int = 200, patience: int = 20, batch_size: int = 64,
                 val_fraction: float = 0.2, random_state: int = 0):
        self.normalize = normalize
        self.dropout = dropout
        self.lr = lr
        self.weight_decay = weight_decay
        self.max_epochs = max_epochs
        self.patience = patience
        self.batch_size = batch_size
        self.val_fraction = val_fraction
        self.random_state = random_state

    # ------------------------------------------------------------ subclass hooks

    def _hidden(self) -> tuple[int, ...]:
        raise NotImplementedError

    def _loss(self, z: torch.Tensor, y: torch.Tensor, span: torch.Tensor, span_label: torch.Tensor,
              epoch: int) -> torch.Tensor:
        raise NotImplementedError

    def _batch_loss(self, X: torch.Tensor, y: torch.Tensor, span: torch.Tensor, span_label: torch.Tensor,
                    epoch: int) -> torch.Tensor:
        """The training loss of one mini-batch of whole spans (``X [n, d]`` normalised rows)."""
        return self._loss(self.network_(X)[:, 0], y, span, span_label, epoch)

    def _min_epochs(self) -> int:
        return 0

    def _check_params(self) -> None:
        """Refuse invalid constructor parameters (called by :meth:`fit`; ``__init__`` only stores them)."""
        check_choice(self.normalize, "normalize", NORMALIZATIONS)
        check_fraction(self.val_fraction, "val_fraction")
        check_number(self.dropout, "dropout", minimum=0, maximum=1, exclusive_max=True)
        check_number(self.lr, "lr", minimum=0, exclusive_min=True)
        check_number(self.weight_decay, "weight_decay", minimum=0)
        check_number(self.max_epochs, "max_epochs", minimum=1, integer=True)
        check_number(self.patience, "patience", minimum=0, integer=True)
        check_number(self.batch_size, "batch_size", minimum=1, integer=True)
        check_number(self.random_state, "random_state", minimum=0, integer=True)


    # ------------------------------------------------------------ fitting

    def fit(self, X: Any, y: Any, groups: Sequence[Any] | None = None) -> "TokenProbe":
        """Fit on token rows ``X [n_tokens, d]``, token labels ``y [n_tokens]`` and span ids ``groups [n_tokens]``.

        ``groups=None`` makes every token its own span. The validation split keeps whole spans
        on one side (pass answer ids to keep whole answers together).
        """
        start = time.perf_counter()
        X, y01, span = self._check_fit_inputs(X, y, groups)
        train, val = split(y01, self.val_fraction, self.random_state, span)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.random_state)
            self._init_network(X[train])
            self._train(X, y01, span, train, val)
        self.fit_seconds_ = time.perf_counter() - start
        return self

    def _check_fit_inputs(self, X: Any, y: Any, groups: Any) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
        """Parameters, then ``(X [n, d], y01 [n], span [n])``: 0/1 token labels, both classes, one span per row."""
        self._check_params()
        X = _as_rows(X)
        check_01_labels(y, len(X))  # 1 = hallucinated: strings or other label values would flip the meaning
        y01, self.classes_ = check_labels(y, len(X))
        check_min_per_class(y01, 2, f"The validation split (val_fraction={self.val_fraction})")
        groups = as_groups(groups, len(X))
        span = np.arange(len(X)) if groups is None else np.unique(groups, return_inverse=True)[1].reshape(-1)
        return X, y01, span

    def _init_network(self, X_train: torch.Tensor) -> None:
        self.d_model_ = self.n_features_in_ = X_train.shape[1]
        if self.normalize == "standardize":
            self.mean_ = X_train.mean(0).numpy()
            self.scale_ = X_train.std(0).clamp(min=1e-6).numpy()
        else:
            self.mean_ = self.scale_ = None
        self.network_ = _network(self.d_model_, self._hidden(), self.normalize == "layer_norm", self.dropout)

    def _train(self, X: torch.Tensor, y01: np.ndarray, span: np.ndarray, train: np.ndarray, val: np.ndarray) -> None:
        X = self._normalized(X)
        y = torch.as_tensor(y01, dtype=torch.float32)
        spans_train = np.unique(span[train])
        generator = torch.Generator().manual_seed(self.random_state)
        optimizer = torch.optim.AdamW(self.network_.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        best, best_state, self.history_ = -np.inf, None, []
        self.best_epoch_ = 0
        for epoch in range(self.max_epochs):
            self.network_.train()
            order = spans_train[torch.randperm(len(spans_train), generator=generator).numpy()]
            for chunk in np.array_split(order, max(1, int(np.ceil(len(order) / self.batch_size)))):
                rows = np.flatnonzero(np.isin(span, chunk))
                local, span_index = np.unique(span[rows], return_inverse=True)
                span_index = torch.as_tensor(span_index.reshape(-1))
                span_label = losses.segment_max(y[rows], span_index, len(local))
                loss = self._batch_loss(X[rows], y[rows], span_index, span_label, epoch)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            value = self._validation_score(X[val], y01[val], span[val])
            self.history_.append(round(value, 5))
            if epoch >= self._min_epochs() and value > best:
                best, self.best_epoch_ = value, epoch
                best_state = {k: v.detach().clone() for k, v in self.network_.state_dict().items()}
            if epoch - self.best_epoch_ >= self.patience and epoch >= self._min_epochs():
                break
        self.n_epochs_ = epoch + 1
        if best_state is not None:
            self.network_.load_state_dict(best_state)
        self.network_.eval()
        with torch.no_grad():
            val_scores = torch.sigmoid(self.network_(X[val])[:, 0]).numpy()
        self.val_auroc_ = auroc(y01[val], val_scores)
        self.threshold_ = best_f1_threshold(y01[val], val_scores)

    def _validation_score(self, X_val: torch.Tensor, y_val: np.ndarray, span_val: np.ndarray) -> float:
        """Mean of token-level and span-level (max over the span) AUROC on the validation split."""
        self.network_.eval()
        with torch.no_grad():
            z = self.network_(X_val)[:, 0].numpy()
        _, span_score = group_max(z, span_val)
        _, span_label = group_max(y_val, span_val)
        values = [auroc(y_val, z), auroc(span_label, span_score)]
        return float(np.nanmean(values)) if not np.isnan(values).all() else 0.0

    # ------------------------------------------------------------ scoring

    def _normalized(self, X: torch.Tensor) -> torch.Tensor:
        if self.mean_ is None:
            return X
        return (X - torch.as_tensor(self.mean_)) / torch.as_tensor(self.scale_)

    def _check_fitted(self) -> None:
        """Raise :class:`~steerlab.probes.NotFittedError` before ``fit``."""
        check_fitted(self, "network_", "fit(X, y, groups)")

    def decision_function(self, X: Any) -> np.ndarray:
        """Logit of "hallucinated" per token: ``[n_tokens]``."""
        self._check_fitted()
        X = _as_rows(X)
        check_width(X, self.d_model_, None, type(self).__name__)
        self.network_.eval()
        with torch.no_grad():
            return self.network_(self._normalized(X))[:, 0].numpy().astype(np.float64)

    def predict_proba(self, X: Any) -> np.ndarray:
        """``[n_tokens, 2]``: P(classes_[0]) and P(classes_[1]) (column 1 = hallucinated for 0/1 labels)."""
        p = sigmoid(self.decision_function(X))  # overflow-free for large logits
        return np.stack([1 - p, p], axis=-1)

    def predict(self, X: Any) -> np.ndarray:
        """Labels ``[n_tokens]`` from ``classes_``: flagged when ``P(hallucinated) >= threshold_``."""
        self._check_fitted()
        return self.classes_[(self.predict_proba(X)[:, 1] >= self.threshold_).astype(int)]

    def score(self, X: Any, y: Any) -> float:
        """Token accuracy of :meth:`predict` (sklearn convention; see ``steerlab.hallucination`` for AUROC)."""
        predicted = self.predict(X)
        check_labels(y, len(predicted), self.classes_)
        return float((predicted == np.asarray(y)).mean())

    # ------------------------------------------------------------ persistence

    def save(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write ``path.safetensors`` (network weights, scaler) + ``path.json`` (parameters, fitted scalars,
        provenance: model, site, layer; position ``"generated"``: every generated token)."""
        from steerlab.artifacts import save_artifact

        self._check_fitted()
        tensors = {f"network.{k}": v for k, v in self.network_.state_dict().items()}
        if self.mean_ is not None:
            tensors |= {"mean_": torch.as_tensor(self.mean_), "scale_": torch.as_tensor(self.scale_)}
        metadata = {"class": type(self).__name__, "params": self.get_params(), "d_model": self.d_model_,
                    "classes": self.classes_.tolist(), "threshold": self.threshold_, "best_epoch": self.best_epoch_,
                    "n_epochs": self.n_epochs_, "val_auroc": self.val_auroc_, "history": self.history_,
                    "layer": self.layer_, "site": self.site_, "model_name": self.model_name_, "position": "generated"}
        return save_artifact(path, tensors, metadata, kind="token_probe", overwrite=overwrite)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "TokenProbe":
        """Read a probe written by :meth:`save` (either class when called on ``TokenProbe``).

        Everything is validated first (:mod:`steerlab.artifacts`); a bad file raises an
        ``ArtifactError`` naming the file and the problem.
        """
        from steerlab.artifacts import (TensorSpec, artifact_error, artifact_paths, invalid_artifact, read_metadata,
                                        read_tensors)

        known = {c.__name__: c for c in (HallucinationProbe, LinearTokenProbe)}
        meta = read_metadata(path, kind="token_probe", classes=known)
        target = known[meta["class"]]
        if not issubclass(target, cls):
            raise artifact_error(artifact_paths(path)[1], f"holds a {meta['class']}, not a {cls.__name__}.")
        with invalid_artifact(path, f"a {target.__name__}"):
            probe = target(**{k: tuple(v) if isinstance(v, list) else v for k, v in meta["params"].items()})
            network = _network(meta["d_model"], probe._hidden(), probe.normalize == "layer_norm", probe.dropout)
        weights = {f"network.{k}": TensorSpec(tuple(v.shape)) for k, v in network.state_dict().items()}
        tensors = read_tensors(path, meta, weights)
        network.load_state_dict({k.removeprefix("network."): v for k, v in tensors.items() if k in weights})
        probe.network_ = network.eval()
        probe.d_model_ = probe.n_features_in_ = meta["d_model"]
        probe.mean_ = tensors["mean_"].numpy() if "mean_" in tensors else None
        probe.scale_ = tensors["scale_"].numpy() if "scale_" in tensors else None
        probe.classes_ = np.asarray(meta["classes"])
        probe.threshold_, probe.best_epoch_, probe.n_epochs_ = meta["threshold"], meta["best_epoch"], meta["n_epochs"]
        probe.val_auroc_, probe.history_ = meta["val_auroc"], meta["history"]
        for key in ("layer", "site", "model_name"):
            if meta.get(key) is not None:
                setattr(probe, key + "_", meta[key])
        return probe

    def __repr__(self) -> str:
        defaults = type(self)().get_params()
        changed = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items() if v != defaults[k])
        head = f"{type(self).__name__}({changed})"
        if getattr(self, "network_", None) is None:
            return head + "  [not fitted]"
        return (f"{head}\n  fitted: d={self.d_model_}, {sum(p.numel() for p in self.network_.parameters())} weights, "
                f"best epoch {self.best_epoch_ + 1}/{self.n_epochs_}, validation AUROC {self.val_auroc_:.3f}, "
                f"threshold {self.threshold_:.3g}")


class HallucinationProbe(TokenProbe):
    """MLP token probe trained with Liang & Wang's multi-objective joint loss (arXiv 2512.20949).

    Args:
        hidden: MLP widths (GELU between layers); ``()`` is a linear probe.
        normalize: ``"standardize"`` (train mean/std, the default), ``"layer_norm"`` (a
            LayerNorm in front of the MLP) or None.
        dropout: dropout after each hidden layer.
        token_weight: weight of the token-level focal loss.
        gamma, alpha: focal loss focusing and positive-class weight (0.5 = balanced).
        span_weight: weight of the soft span loss (smooth max of a span's logits vs its label).
        span_temperature: temperature of that smooth max (``t * logsumexp(z / t)``).
        sparsity_weight: weight of the sparsity term (probabilities of a span's non-top tokens).
        kl_weight: weight of the KL term: the symmetric KL between the predictions of two dropout
            passes over the same tokens (:func:`~steerlab.hallucination.losses.dropout_kl`; the paper
            names a KL term without its form). It needs ``dropout > 0`` (without dropout both passes
            agree and the term is skipped).
        lr, weight_decay, max_epochs, patience, batch_size (spans per step), val_fraction,
        random_state: the training loop (AdamW, early stopping on grouped validation).

    Defaults, from an ablation on the demo model (``benchmarks/results_hallucination.md``:
    train-split answers only, 5-fold CV grouped by answer x 3 seeds, layer 0; token AUROC /
    answer AUROC / answer recall at 5% FPR):

    ============================  ======  ======  ======
    full joint loss (defaults)    0.933   0.837   0.610
    BCE instead of focal          0.936   0.842   0.607
    no token term                 0.659   0.786   0.282
    no soft span term             0.934   0.833   0.607
    no sparsity term              0.931   0.835   0.559
    span weight 3                 0.923   0.836   0.565
    layer norm, not standardise   0.932   0.837   0.543
    KL term, weight 0.3           0.934   0.837   0.586
    KL term, weight 1             0.934   0.838   0.586
    KL term, weight 3             0.933   0.835   0.577
    ============================  ======  ======  ======

    The token term carries the signal; sparsity adds ~0.05 recall at 5% FPR; focal vs BCE and
    the span term are within noise there (seed std ~0.015 AUROC), since a demo answer's entity is
    a single token. They are kept on at the paper's setting because they matter for multi-token spans.
    The KL term changes nothing measurable there (KL rows: the same protocol) and doubles the
    forward passes of training, so it is off by default (``kl_weight=0``); the real-model
    reproduction of the paper turns it on (``benchmarks/results_real_hallucination.md``, with the
    MLP without it beside).
    """

    def __init__(self, hidden: tuple[int, ...] = (128,), *, normalize: str | None = "standardize",
                 dropout: float = 0.1, token_weight: float = 1.0, gamma: float = 2.0, alpha: float = 0.5,
                 span_weight: float = 1.0,
                 span_temperature: float = 1.0, sparsity_weight: float = 0.1, kl_weight: float = KL_WEIGHT,
                 lr: float = 3e-3,
                 weight_decay: float = 1e-2, max_epochs: int = 200, patience: int = 20, batch_size: int = 64,
                 val_fraction: float = 0.2, random_state: int = 0):
        super().__init__(normalize=normalize, dropout=dropout, lr=lr, weight_decay=weight_decay, max_epochs=max_epochs,
                         patience=patience, batch_size=batch_size, val_fraction=val_fraction,
                         random_state=random_state)
        self.hidden = hidden
        self.token_weight = token_weight
        self.gamma = gamma
        self.alpha = alpha
        self.span_weight = span_weight
        self.span_temperature = span_temperature
        self.sparsity_weight = sparsity_weight
        self.kl_weight = kl_weight

    def _hidden(self) -> tuple[int, ...]:
        return tuple(self.hidden) if isinstance(self.hidden, (tuple, list)) else (self.hidden,)

    def _check_params(self) -> None:
        super()._check_params()
        widths = self.hidden if isinstance(self.hidden, (tuple, list)) else (self.hidden,)
        for width in widths:
            check_number(width, "hidden (each layer width)", minimum=1, integer=True)
        for name in ("token_weight", "gamma", "span_weight", "sparsity_weight", "kl_weight"):
            check_number(getattr(self, name), name, minimum=0)
        check_number(self.alpha, "alpha", minimum=0, maximum=1)
        check_number(self.span_temperature, "span_temperature", minimum=0, exclusive_min=True)

    def _batch_loss(self, X: torch.Tensor, y: torch.Tensor, span: torch.Tensor, span_label: torch.Tensor,
                    epoch: int) -> torch.Tensor:
        z = self.network_(X)[:, 0]
        loss = self._loss(z, y, span, span_label, epoch)
        if self.kl_weight and self.dropout:  # a second pass with other dropout masks (R-Drop)
            loss = loss + self.kl_weight * losses.dropout_kl(z, self.network_(X)[:, 0])
        return loss

    def _loss(self, z: torch.Tensor, y: torch.Tensor, span: torch.Tensor, span_label: torch.Tensor,
              epoch: int) -> torch.Tensor:
        loss = self.token_weight * losses.focal_loss(z, y, self.gamma, self.alpha)
        if self.span_weight:
            loss = loss + self.span_weight * losses.soft_span_loss(z, span, span_label, self.span_temperature)
        if self.sparsity_weight:
            loss = loss + self.sparsity_weight * losses.sparsity_loss(z, span, len(span_label))
        return loss


class LinearTokenProbe(TokenProbe):
    """Linear token probe of Obeso et al. (arXiv 2509.03531): token BCE annealed into max-span BCE.

    ``loss = (1 - w) * BCE(tokens) + w * BCE(max logit of each span, span label)`` with
    ``w`` rising linearly from 0 to 1 over ``anneal_epochs``; early stopping starts after
    the annealing. (The paper also up-weights tokens of annotated entities; here every
    token weighs the same.) Same interface and training loop as :class:`HallucinationProbe`.
    """

    def __init__(self, *, anneal_epochs: int = 20, normalize: str | None = "standardize", lr: float = 3e-3,
                 weight_decay: float = 1e-2, max_epochs: int = 200, patience: int = 20, batch_size: int = 64,
                 val_fraction: float = 0.2, random_state: int = 0):
        super().__init__(normalize=normalize, dropout=0.0, lr=lr, weight_decay=weight_decay, max_epochs=max_epochs,
                         patience=patience, batch_size=batch_size, val_fraction=val_fraction,
                         random_state=random_state)
        self.anneal_epochs = anneal_epochs

    def _hidden(self) -> tuple[int, ...]:
        return ()

    def _check_params(self) -> None:
        super()._check_params()
        check_number(self.anneal_epochs, "anneal_epochs", minimum=0, integer=True)

    def _min_epochs(self) -> int:
        return min(self.anneal_epochs, self.max_epochs - 1)

    def _loss(self, z: torch.Tensor, y: torch.Tensor, span: torch.Tensor, span_label: torch.Tensor,
              epoch: int) -> torch.Tensor:
        token = nn.functional.binary_cross_entropy_with_logits(z, y)
        weight = losses.annealed_weight(epoch, self.anneal_epochs)
        return (1 - weight) * token + weight * losses.max_span_loss(z, span, span_label)


def _network(d_model: int, hidden: tuple[int, ...], layer_norm: bool, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = [nn.LayerNorm(d_model)] if layer_norm else []
    width = d_model
    for size in hidden:
        layers += [nn.Linear(width, size), nn.GELU()] + ([nn.Dropout(dropout)] if dropout else [])
        width = size
    return nn.Sequential(*layers, nn.Linear(width, 1))


def _as_rows(X: Any) -> torch.Tensor:
    """``X`` as a finite float32 ``[n_tokens, d]`` tensor, with the errors of every steerlab probe."""
    return as_activation_matrix(X, torch.float32,
                                "select a layer, e.g. X[:, layer_slot] or GeneratedTokens.layer(layer)")
