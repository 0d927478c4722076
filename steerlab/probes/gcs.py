"""GCS: a concept direction from a Gaussian fitted to many logistic probes on small subsamples.

Zhao et al., "Beyond Single Concept Vector: Modeling Concept Subspace in LLMs with Gaussian
Distribution" (Gaussian Concept Subspace), as the baseline of Gao et al., "RAPTOR:
Ridge-Adaptive Logistic Probes" runs it: 1,000 L2 logistic probes, each trained on a
stratified 10% subsample, a Gaussian (per-coordinate mean and standard deviation) fitted
to their weight vectors, and the concept vector taken as the mean of samples drawn from
the +-1 sigma region of that Gaussian ("the +-1 sigma ring": here each coordinate's
standardised deviation is drawn from a standard normal truncated to ``[-ring, ring]``).

All probes are solved in one batch by :mod:`steerlab.probes.lbfgs_path`, in the dual
coordinates of their subsample (a sub-block of one Gram matrix per layer), not as 1,000
scikit-learn fits. Probes are fitted on activations standardised with the scaler of all
the fitting rows; the sampled vector is folded back to raw space, then (as for every
:class:`~steerlab.probes.Direction`) a 1-D logistic fit of ``h . v`` sets scale and bias.

Example:
    >>> from steerlab.probes import GCSProbe, make_teacher_student
    >>> X, y, w = make_teacher_student(600, 10, seed=1)
    >>> probe = GCSProbe(n_probes=100).fit(X, y)
    >>> round(float(abs(probe.concept_vector_ @ w)), 1), probe.n_probes_
    (1.0, 100)
"""

from __future__ import annotations

import numpy as np
import torch

from steerlab.probes.directions import Direction
from steerlab.probes.lbfgs_path import solve_path
from steerlab.probes.logistic_operators import KernelOperator
from steerlab.probes.span import scaler
from steerlab.probes.validation import ProbeInputError, check_fraction, check_number


def gcs_subsamples(y01: np.ndarray, n_probes: int, subsample: float, seed: int) -> np.ndarray:
    """``[n_probes, m]`` sorted row indices: per probe, ``round(subsample * count)`` rows of each class (at least 1)."""
    rng = np.random.default_rng(seed)
    members = [np.flatnonzero(y01 == cls) for cls in (0, 1)]
    counts = [max(1, int(round(subsample * len(rows)))) for rows in members]
    draws = [np.stack([rng.choice(rows, count, replace=False) for _ in range(n_probes)])
             for rows, count in zip(members, counts)]
    return np.sort(np.concatenate(draws, 1), 1)


class GCSProbe(Direction):
    """Gaussian Concept Subspace direction (the RAPTOR paper's GCS baseline); sklearn conventions.

    Args:
        n_probes: logistic probes fitted (RAPTOR's baseline: 1,000).
        subsample: share of the rows (per class, stratified) each probe sees (0.1).
        C: inverse L2 penalty of each probe (scikit-learn's default, 1.0).
        ring: samples are drawn within ``+-ring`` standard deviations per coordinate (1.0); 0 gives
            the mean of the probes' weights itself.
        n_samples: vectors sampled from the Gaussian and averaged.
        random_state: seed of the subsamples and of the samples.
        tol, max_iter: stopping test of the probes' fits (as :class:`~steerlab.probes.RaptorProbe`).
        max_batch_bytes: probes are solved in chunks whose Gram blocks take at most this many bytes.

    Fitted attributes (besides the :class:`~steerlab.probes.LinearProbe` ones): ``n_probes_``,
    ``probe_unconverged_`` ``[n_layers]`` (probes whose fit stopped at ``max_iter``), ``weight_std_``
    ``[n_layers, d]`` the fitted Gaussian's standard deviation (standardised coordinates).
    """

    _fitted_arrays = ("probe_unconverged_", "weight_std_")

    def __init__(self, n_probes: int = 1000, subsample: float = 0.1, C: float = 1.0, ring: float = 1.0,
                 n_samples: int = 1000, random_state: int = 0, tol: float = 1e-4, max_iter: int = 500, *,
                 max_batch_bytes: float = 2 ** 28, device: str | torch.device = "cpu",
                 dtype: str = "float32"):
        super().__init__(device=device, dtype=dtype)
        self.n_probes = n_probes
        self.subsample = subsample
        self.C = C
        self.ring = ring
        self.n_samples = n_samples
        self.random_state = random_state
        self.tol = tol
        self.max_iter = max_iter
        self.max_batch_bytes = max_batch_bytes

    def _check_params(self) -> None:
        check_number(self.n_probes, "n_probes", minimum=2, integer=True)
        check_fraction(self.subsample, "subsample")
        check_number(self.C, "C", minimum=0, exclusive_min=True)
        check_number(self.ring, "ring", minimum=0)
        check_number(self.n_samples, "n_samples", minimum=1, integer=True)
        check_number(self.random_state, "random_state", minimum=0, integer=True)
        check_number(self.tol, "tol", minimum=0, exclusive_min=True)
        check_number(self.max_iter, "max_iter", minimum=1, integer=True)
        check_number(self.max_batch_bytes, "max_batch_bytes", minimum=1)

    def _direction(self, X: torch.Tensor, y01: np.ndarray, groups: np.ndarray | None) -> torch.Tensor:
        counts = np.bincount(y01, minlength=2)
        if counts.min() < 2:
            raise ProbeInputError(f"GCS needs at least 2 examples of each class (got {counts.tolist()}): add "
                                  "examples of the rarer class.")
        subsets = gcs_subsamples(y01, self.n_probes, self.subsample, self.random_state)  # [P, m]
        n_layers, n, d = X.shape
        index = torch.as_tensor(subsets, device=X.device)
        labels = torch.as_tensor(y01, dtype=X.dtype, device=X.device)[index]  # [P, m]
        m = index.shape[1]
        chunk = max(1, int(self.max_batch_bytes // (m * m * X.element_size())))
        generator = torch.Generator(device="cpu").manual_seed(self.random_state)
        directions, unconverged, spreads = [], [], []
        for layer in range(n_layers):
            mean, scale = scaler(X[layer][None])
            standardized = (X[layer] - mean) / scale  # [n, d]
            gram = standardized @ standardized.T
            weights, failed = [], 0
            for first in range(0, self.n_probes, chunk):
                rows = index[first:first + chunk]  # [c, m]
                blocks = gram[rows[:, :, None], rows[:, None, :]]  # [c, m, m]
                Cs = torch.full((len(rows), 1), float(self.C), dtype=X.dtype, device=X.device)
                result = solve_path(KernelOperator(blocks), labels[first:first + chunk], Cs, tol=self.tol,
                                    max_iter=self.max_iter, window=1)
                failed += int((~result.converged).sum())
                dual = X.new_zeros(len(rows), n).scatter_(1, rows, result.theta[:, 0, :-1])
                weights.append(dual @ standardized)  # [c, d]: w = X_sub^T alpha
            weights = torch.cat(weights)  # [P, d], standardised coordinates
            center, spread = weights.mean(0), weights.std(0)
            uniform = torch.rand(self.n_samples, d, generator=generator, dtype=torch.float64)
            low = torch.special.ndtr(torch.tensor(-float(self.ring), dtype=torch.float64))
            deviation = torch.special.ndtri(low + (1 - 2 * low) * uniform).to(X.dtype).to(X.device)  # truncated N(0, 1)
            sampled = (center + spread * deviation).mean(0)
            directions.append(sampled / scale[0])
            unconverged.append(failed)
            spreads.append(spread)
        self.n_probes_ = self.n_probes
        self.probe_unconverged_ = np.array(unconverged)
        self.weight_std_ = torch.stack(spreads).cpu().numpy()
        return torch.stack(directions)
