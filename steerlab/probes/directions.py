"""Truth directions from class statistics: mass-mean, LDA and PCA of paired differences.

From Marks & Tegmark, "The Geometry of Truth" (mass-mean probe ``theta = mu_true -
mu_false``; its "iid" variant whitens with the inverse covariance, the LDA direction;
also the first principal component) and Ying et al., "The Truthfulness Spectrum
Hypothesis" (DoM, LDA, PCA beside logistic regression). Each method only chooses a unit
direction ``v``; a shared 1-D logistic fit of the projections ``h . v`` then sets the
scale and bias, so ``decision_function`` is a calibrated raw-space logit and every
direction has the same interface as :class:`~steerlab.probes.RaptorProbe`.

Example:
    >>> import numpy as np
    >>> from steerlab.probes import LDA, DiffMeans, PairedPCA, make_teacher_student
    >>> X, y, w = make_teacher_student(600, 10, seed=1)
    >>> [round(float(abs(m.fit(X, y).concept_vector_ @ w)), 1) for m in (DiffMeans(), LDA())]
    [1.0, 1.0]
"""

from __future__ import annotations

import numpy as np
import torch

from steerlab.probes.base import LinearProbe
from steerlab.probes.logistic_solver import solve_l2_logistic
from steerlab.probes.validation import ProbeInputError, check_min_per_class, check_shrinkage


class Direction(LinearProbe):
    """A direction chosen from statistics, then a 1-D logistic fit of scale and bias on ``h . v``."""

    def _direction(self, X: torch.Tensor, y01: np.ndarray, groups: np.ndarray | None) -> torch.Tensor:
        """``X [L, n, d]`` -> ``[L, d]`` direction pointing towards class 1."""
        raise NotImplementedError

    def _fit_layers(self, X: torch.Tensor, y01: np.ndarray, groups: np.ndarray | None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        check_min_per_class(y01, 1, type(self).__name__)
        v = self._direction(X, y01, groups)
        v = v / v.norm(dim=-1, keepdim=True).clamp_min(1e-30)
        scale, bias = calibrate_projection(torch.einsum("lnd,ld->ln", X, v), y01)
        self.mean_ = self.scale_ = None
        return scale[:, None] * v, bias


def calibrate_projection(scores: torch.Tensor, y01: np.ndarray, C: float = 1e4) -> tuple[torch.Tensor, torch.Tensor]:
    """1-D logistic fit per layer of ``scores [L, n]``: ``(scale [L], bias [L])`` so ``bias + scale * s`` is a logit."""
    scores = scores.double()  # 1-D and nearly unpenalised: float64 keeps it exact
    center, spread = scores.mean(1, keepdim=True), scores.std(1, keepdim=True).clamp_min(1e-12)
    standardized = ((scores - center) / spread)[..., None]  # [L, n, 1]
    y = torch.as_tensor(y01, dtype=scores.dtype, device=scores.device)
    Cs = torch.full((scores.shape[0], 1), C, dtype=scores.dtype, device=scores.device)
    solution = solve_l2_logistic(standardized, y, Cs, tol=1e-9, precondition=False)
    slope = solution.coef[:, 0, 0] / spread[:, 0]
    return slope.float(), (solution.intercept[:, 0] - slope * center[:, 0]).float()


def class_means(X: torch.Tensor, y01: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mu_0 [L, d], mu_1 [L, d])``."""
    positive = torch.as_tensor(y01 == 1, device=X.device)
    return X[:, ~positive].mean(1), X[:, positive].mean(1)


class DiffMeans(Direction):
    """Mass-mean (difference-of-means) direction ``mu_1 - mu_0`` (Marks & Tegmark, "The Geometry of Truth").

    Example:
        >>> import numpy as np
        >>> DiffMeans().fit(np.array([[0., 0], [0, 1], [2, 0], [2, 1]]), [0, 0, 1, 1]).concept_vector_.tolist()
        [1.0, 0.0]
    """

    def __init__(self, *, device: str | torch.device = "cpu", dtype: str = "float32"):
        super().__init__(device=device, dtype=dtype)

    def _direction(self, X: torch.Tensor, y01: np.ndarray, groups: np.ndarray | None) -> torch.Tensor:
        mu0, mu1 = class_means(X, y01)
        return mu1 - mu0


class LDA(Direction):
    """Mass-mean with covariance: ``Sigma^-1 (mu_1 - mu_0)`` (the "iid" mass-mean probe of "The
    Geometry of Truth"). ``Sigma`` is the prior-weighted sum of the class covariances, each shrunk
    in standardised coordinates towards the identity, as scikit-learn's
    ``LinearDiscriminantAnalysis(solver="lsqr", shrinkage=...)`` (direction matched in the tests).

    Args:
        shrinkage: weight of the identity target in ``(1 - a) Sigma + a tr(Sigma)/d I``;
            ``"auto"`` uses the Ledoit-Wolf estimate.
    """

    _fitted_arrays = ("shrinkage_",)  # [n_layers, 2]: Ledoit-Wolf weight per class

    def __init__(self, shrinkage: float | str = "auto", *, device: str | torch.device = "cpu",
                 dtype: str = "float32"):
        super().__init__(device=device, dtype=dtype)
        self.shrinkage = shrinkage

    def _check_params(self) -> None:
        check_shrinkage(self.shrinkage)

    def _direction(self, X: torch.Tensor, y01: np.ndarray, groups: np.ndarray | None) -> torch.Tensor:
        check_min_per_class(y01, 2, "LDA (a covariance estimate)")
        mu0, mu1 = class_means(X, y01)
        covariance = torch.zeros(X.shape[0], X.shape[2], X.shape[2], dtype=torch.float64, device=X.device)
        shrinkages = []
        for cls, mu in ((0, mu0), (1, mu1)):  # prior-weighted shrunk class covariances, as sklearn's LDA
            members = torch.as_tensor(y01 == cls, device=X.device)
            class_cov, shrink = shrunk_covariance((X[:, members] - mu[:, None]).double(), self.shrinkage)
            covariance += float(members.float().mean()) * class_cov
            shrinkages.append(shrink)
        self.shrinkage_ = torch.stack(shrinkages, -1).cpu().numpy()  # [L, 2] per class
        return solve_covariance(covariance, (mu1 - mu0).double()).to(X.dtype)


def solve_covariance(covariance: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``Sigma^-1 b`` per layer (``[L, d, d]``, ``[L, d]`` -> ``[L, d]``), also where Sigma is singular.

    A covariance is symmetric positive semi-definite, so it is solved by Cholesky, not LU: on
    SmolLM2's cities activations MKL's batched LU failed outright ("Intel oneMKL ERROR: Parameter
    6 was incorrect on entry to DLASWP", then "Pivots given to lu_solve must all be greater or
    equal to 1"). Where Cholesky fails (a rank-deficient covariance: fewer examples than
    dimensions, dead features, no shrinkage) the minimum-norm least-squares solution is used
    (the symmetric pseudo-inverse), as scikit-learn's ``lsqr`` LDA solver does.
    """
    factor, info = torch.linalg.cholesky_ex(covariance)
    solution = torch.cholesky_solve(b[..., None], factor)[..., 0]
    singular = (info != 0) | ~torch.isfinite(solution).all(-1)
    if singular.any():
        solution[singular] = (torch.linalg.pinv(covariance[singular], hermitian=True) @ b[singular][..., None])[..., 0]
    return solution


def shrunk_covariance(centered: torch.Tensor, shrinkage: float | str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """``centered [L, n, d]`` (one class) -> ``(covariance [L, d, d], shrinkage [L])``.

    As scikit-learn's shrinkage LDA: shrink the covariance of the standardised features
    towards the identity (Ledoit & Wolf 2004 estimate when ``"auto"``), then scale back, so
    features of very different scales (common in activations) are shrunk alike.
    """
    n, d = centered.shape[1], centered.shape[2]
    std = centered.std(1, correction=0).clamp_min(1e-12)  # [L, d]
    z = centered / std[:, None]
    covariance = torch.einsum("lnd,lne->lde", z, z) / n
    identity = torch.eye(d, dtype=z.dtype, device=z.device)
    shrinkage = check_shrinkage(shrinkage)
    if shrinkage == "auto":
        # Ledoit-Wolf: a = b^2 / d^2 with b^2 = mean_i ||z_i z_i^T - S||_F^2 / n, d^2 = ||S - mu I||_F^2
        mu = torch.diagonal(covariance, dim1=1, dim2=2).mean(-1)
        b2 = (((z * z).sum(-1) ** 2).sum(-1) / n - (covariance ** 2).sum((1, 2))) / n
        d2 = ((covariance - mu[:, None, None] * identity) ** 2).sum((1, 2))
        alpha = (torch.minimum(b2, d2) / d2.clamp_min(1e-30)).clamp(0, 1)
    else:
        alpha = torch.full_like(std[:, 0], shrinkage)
        mu = torch.diagonal(covariance, dim1=1, dim2=2).mean(-1)
    shrunk = (1 - alpha)[:, None, None] * covariance + (alpha * mu)[:, None, None] * identity
    return std[:, :, None] * shrunk * std[:, None, :], alpha


class PairedPCA(Direction):
    """First principal component of paired differences ``h(true) - h(false)`` (uncentred,
    so the sign flips of RepE-style random pair order do not matter), oriented to class 1.

    Pairs: with ``groups``, the class means within each group holding both classes
    (e.g. the true and false statement about one city); without, the k-th example of
    class 1 is paired with the k-th of class 0.
    """

    def __init__(self, *, device: str | torch.device = "cpu", dtype: str = "float32"):
        super().__init__(device=device, dtype=dtype)

    def _direction(self, X: torch.Tensor, y01: np.ndarray, groups: np.ndarray | None) -> torch.Tensor:
        differences = paired_differences(X, y01, groups)  # [L, pairs, d]
        _, _, Vh = torch.linalg.svd(differences, full_matrices=False)
        v = Vh[:, 0]
        sign = torch.sign((differences @ v[..., None]).mean((1, 2)))  # point towards class 1
        return v * torch.where(sign == 0, torch.ones_like(sign), sign)[:, None]


def paired_differences(X: torch.Tensor, y01: np.ndarray, groups: np.ndarray | None) -> torch.Tensor:
    """``[L, n_pairs, d]`` differences class 1 minus class 0 (see :class:`PairedPCA`)."""
    if groups is None:
        positives, negatives = np.flatnonzero(y01 == 1), np.flatnonzero(y01 == 0)
        n_pairs = min(len(positives), len(negatives))
        return X[:, positives[:n_pairs]] - X[:, negatives[:n_pairs]]
    rows: list[torch.Tensor] = []
    for group in np.unique(groups):
        members = groups == group
        pos, neg = np.flatnonzero(members & (y01 == 1)), np.flatnonzero(members & (y01 == 0))
        if len(pos) and len(neg):
            rows.append(X[:, pos].mean(1) - X[:, neg].mean(1))
    if not rows:
        raise ProbeInputError("No group holds both classes, so there are no pairs: pass groups that pair a true "
                              "and a false example (e.g. the entity), or groups=None to pair by order.")
    return torch.stack(rows, 1)


