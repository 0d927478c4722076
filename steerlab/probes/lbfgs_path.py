"""Batched L-BFGS along a grid of penalties: many L2 logistic problems, one loop.

The engine behind :mod:`steerlab.probes.logistic_solver`. Problem ``(b, c)`` is the L2
logistic regression of batch element ``b`` (a layer, or a resample of one) at the c-th
value of its (ascending) grid of ``C``, with scikit-learn's objective divided by ``C n``::

    f(w, b) = mean_i logloss(y_i, x_i . w + b) + ||w||^2 / (2 C n)

How the work is organised:

* Each batch element runs ``window`` of its grid columns at a time ("slots" ``[B, k]``),
  independently of the other elements: a finished column frees its slot for the element's
  next column (``refill``); finished elements leave the working set; the matrix products
  cover only the running slots.
* A column entering the window starts on the solution path: secant extrapolation in
  ``log C`` through the two highest *finished* columns below it (warm starts along the grid,
  as the reference protocol's warm-started loop, without serialising it). When a column
  finishes, the running columns of that element are moved to the new extrapolation where
  it has a lower objective (``restart``).
* Coordinates come from an *operator* (:mod:`steerlab.probes.logistic_operators`:
  ``KernelOperator``, dual coefficients of the training rows, exact when ``n < d``;
  ``FeatureOperator``, features, optionally rotated and scaled by Boehning's curvature bound). Every vector the L-BFGS memory keeps
  also keeps its image under the metric and the logits it moves, so the line search costs
  no matrix product and an iteration costs one (kernel) or two (features) batched products.
* Compact L-BFGS direction (Byrd, Nocedal & Schnabel 1994; Nocedal & Wright eq. 7.24) with
  the inner product of the operator's metric.
* Stopping: scikit-learn's test, ``max |grad f| <= tol`` over ``(w, b)`` in the coordinates of
  the features (before any rotation), computed exactly where it decides, or through an upper
  bound (never looser) where the exact value would cost a product with the raw features, or three
  accepted steps in a row that no longer decrease ``f`` beyond float rounding (the precision
  floor: counted as converged), or ``max_iter`` iterations (not converged).

Example:
    >>> import torch
    >>> from steerlab.probes.lbfgs_path import solve_path
    >>> from steerlab.probes.logistic_operators import FeatureOperator
    >>> torch.manual_seed(0) and None
    >>> X = torch.randn(1, 200, 5); y = (X[0, :, 0] > 0).float()
    >>> result = solve_path(FeatureOperator(X - X.mean(1, keepdim=True)), y, torch.tensor([[0.1, 10.0]]))
    >>> result.theta.shape, bool(result.converged.all()), bool(result.theta[0, 1, 0] > result.theta[0, 0, 0] > 0)
    (torch.Size([1, 2, 6]), True, True)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from steerlab.probes.logistic_operators import FeatureOperator, KernelOperator
from steerlab.probes.thread_scopes import one_blas_thread


@dataclass
class PathResult:
    """theta: ``[B, K, N+1]`` coefficients in the operator's coordinates, intercept last; n_iter, converged
    and grad_norm (the stopping test's value, see the module docstring): ``[B, K]``; logits: ``[B, K, n]``
    on the training rows."""

    theta: torch.Tensor
    n_iter: torch.Tensor
    converged: torch.Tensor
    grad_norm: torch.Tensor
    logits: torch.Tensor
    steps: int = 0  # iterations of the batched loop


class _Memory:
    """Per-slot L-BFGS memory: steps then gradient changes ``W [B, k, 2m, D]`` (also kept transposed,
    ``[B, k, D, 2m]``: on CPU, vector-times-matrix products are several times faster than
    matrix-times-vector ones at these shapes), their metric images ``MW`` and the small Gram blocks
    of the compact representation. One push counter for all slots: a slot that had nothing to push
    stores a zero pair, which drops out of the direction."""

    def __init__(self, B: int, k: int, D: int, m: int, like: torch.Tensor, identity_metric: bool):
        self.m = m
        self.identity_metric = identity_metric
        self.W = like.new_zeros(B, k, 2 * m, D)
        self.Wt = like.new_zeros(B, k, D, 2 * m)
        self.MW = self.W if identity_metric else like.new_zeros(B, k, 2 * m, D)
        self.StY = like.new_zeros(B, k, m, m)
        self.YtY = like.new_zeros(B, k, m, m)
        self.gamma = like.new_ones(B, k)
        self.count = 0

    def _tensors(self) -> tuple[torch.Tensor, ...]:
        return (self.W, self.Wt, self.StY, self.YtY, self.gamma) + (() if self.identity_metric else (self.MW,))

    def select(self, rows: torch.Tensor) -> None:
        self.W, self.Wt, self.StY, self.YtY, self.gamma, *rest = (t[rows] for t in self._tensors())
        self.MW = self.W if self.identity_metric else rest[0]

    def reset(self, rows: torch.Tensor, slots: torch.Tensor) -> None:
        """Empty the memory of the slots ``(rows[i], slots[i])``."""
        for t in self._tensors():
            t[rows, slots] = 1 if t is self.gamma else 0

    def push(self, s: torch.Tensor, Ms: torch.Tensor, y: torch.Tensor, My: torch.Tensor, valid: torch.Tensor) -> None:
        m, slot = self.m, self.count % self.m
        keep = valid[..., None].to(s.dtype)
        s, Ms, y, My = s * keep, Ms * keep, y * keep, My * keep
        self.W[:, :, slot], self.W[:, :, m + slot] = s, y
        self.Wt[..., slot], self.Wt[..., m + slot] = s, y
        if not self.identity_metric:
            self.MW[:, :, slot], self.MW[:, :, m + slot] = Ms, My
        products = torch.stack([Ms, My], -2) @ self.Wt  # [B, k, 2, 2m]: <s, S>, <s, Y> over <y, S>, <y, Y>
        self.StY[:, :, :, slot] = products[:, :, 1, :m]  # s_i . y_new
        self.StY[:, :, slot, :] = products[:, :, 0, m:]  # s_new . y_j
        self.YtY[:, :, :, slot] = products[:, :, 1, m:]
        self.YtY[:, :, slot, :] = products[:, :, 1, m:]
        sy, yy = products[:, :, 1, slot], products[:, :, 1, m + slot]
        self.gamma = torch.where(valid, sy / yy.clamp_min(1e-30), self.gamma)
        self.count += 1

    def direction(self, g: torch.Tensor, Mg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(-H g, M (-H g))`` with the compact inverse-Hessian form (Nocedal & Wright eq. 7.24)."""
        gamma = self.gamma[..., None]
        if self.count == 0:
            return -gamma * g, -gamma * Mg
        m = self.m
        order = [(self.count + j) % m for j in range(m)]  # oldest slot first
        pq = (Mg[..., None, :] @ self.Wt)[..., 0, :]  # [B, k, 2m]
        p, q = pq[..., :m][..., order], pq[..., m:][..., order]
        StY = self.StY[..., order, :][..., order]
        YtY = self.YtY[..., order, :][..., order]
        diag = torch.diagonal(StY, dim1=-2, dim2=-1)
        R = torch.triu(StY) + torch.diag_embed((diag == 0).to(StY.dtype))  # empty pairs: unit pivot
        r1 = torch.linalg.solve_triangular(R, p[..., None], upper=True)
        rhs = diag[..., None] * r1 + gamma[..., None] * (YtY @ r1) - gamma[..., None] * q[..., None]
        a = torch.linalg.solve_triangular(R.transpose(-1, -2), rhs, upper=False)
        coeffs = torch.empty_like(pq)
        coeffs[..., order] = a[..., 0]
        coeffs[..., [m + j for j in order]] = -(gamma[..., None] * r1)[..., 0]
        coeffs = coeffs[..., None, :]
        d = -(gamma * g + (coeffs @ self.W)[..., 0, :])
        if self.identity_metric:
            return d, d
        return d, -(gamma * Mg + (coeffs @ self.MW)[..., 0, :])


@one_blas_thread
def solve_path(operator: KernelOperator | FeatureOperator, y: torch.Tensor, Cs: torch.Tensor, *,
               start: torch.Tensor | None = None, tol: float = 1e-4, max_iter: int = 500, history: int = 5,
               window: int = 10, refill: int | None = 1, warm_start_grid: bool = True, restart: bool = True,
               refresh: int = 50) -> PathResult:
    """Solve the ``B x K`` problems of ``operator`` (data of ``B`` elements) at ``Cs [B, K]``.

    Args:
        y: ``[n]`` or ``[B, n]`` labels in {0, 1}.
        Cs: ``[B, K]``, ascending along each row when ``warm_start_grid`` (warm starts follow the grid).
        start: optional ``[B, K, N+1]`` starting coefficients (intercept last) in the operator's
            unscaled coordinates; default zero weights and the log-odds intercept. With
            ``warm_start_grid``, only columns with no finished column below them start there.
        window: columns of one element iterated together (their products are one wide matrix product).
        refill: admit an element's next columns once this many of its slots are free.
        restart: when a column finishes, move each running column of the same element to the new
            extrapolation of the path if that has a lower objective than where it is.
        refresh: recompute the logits from the coefficients every this many iterations (float drift).
    """
    op = operator
    B, K = Cs.shape
    n, D = op.n, op.N + 1
    like = Cs.new_zeros(()).to(dtype=_dtype(op))
    dtype, device = like.dtype, like.device
    y = y.to(dtype).reshape(-1, 1, n).expand(B, 1, n)
    sign = 1 - 2 * y  # logloss(y, z) = softplus((1 - 2y) z): no cancellation at large |z|
    log_C = Cs.to(dtype).log()
    penalty_all = 1.0 / (Cs.to(dtype) * n)
    if start is None:
        prior = y.mean(-1).clamp(1e-6, 1 - 1e-6)  # [B, 1]
        start = like.new_zeros(B, K, D)
        start[..., -1] = torch.log(prior / (1 - prior))
    start = start.to(dtype)
    k = min(window, K)
    refill = k if refill is None else max(1, min(refill, k))
    warm = warm_start_grid
    theta_rec, z_rec = like.new_zeros(B, K, D), like.new_zeros(B, K, n)
    n_iter = torch.zeros(B, K, dtype=torch.long, device=device)
    converged = torch.zeros(B, K, dtype=torch.bool, device=device)
    grad_norm = like.new_zeros(B, K)
    done_rec = torch.zeros(B, K, dtype=torch.bool, device=device)  # finished columns: the path so far

    rows = torch.arange(B, device=device)  # working set: elements with columns left
    next_col = torch.zeros(B, dtype=torch.long, device=device)
    slot_col = torch.full((B, k), -1, dtype=torch.long, device=device)  # -1: empty
    anchor = torch.full((B, k), -1, dtype=torch.long, device=device)  # finished column a slot started from
    v, z = like.new_zeros(B, k, D), like.new_zeros(B, k, n)
    it = torch.zeros(B, k, dtype=torch.long, device=device)
    flat = torch.zeros(B, k, dtype=torch.long, device=device)  # accepted steps in a row that did not decrease f
    failed = torch.zeros(B, k, dtype=torch.long, device=device)  # failed line searches in a row
    penalty = like.new_ones(B, k)
    memory = _Memory(B, k, D, history, like, op.identity_metric)
    previous = None  # (s, Ms, g, Mg, stepped) of the last step
    since_refresh = steps = 0
    while True:
        steps += 1
        # ---- admit the next columns of every element with enough free slots
        free = slot_col < 0
        remaining = K - next_col[rows]
        need = (free.sum(1) >= remaining.clamp_max(refill)) & (remaining > 0)
        if need.any():
            rank = free.long().cumsum(1) - 1
            entering = free & need[:, None] & (rank < remaining[:, None])
            r_idx, s_idx = entering.nonzero(as_tuple=True)
            glob = rows[r_idx]
            cols = next_col[glob] + rank[r_idx, s_idx]
            next_col[rows] += entering.sum(1)
            slot_col[r_idx, s_idx] = cols
            penalty[r_idx, s_idx] = penalty_all[glob, cols]
            op.set_penalty(penalty)
            theta0, z0, anchor[r_idx, s_idx] = _on_path(glob, cols, start, theta_rec, z_rec, log_C, done_rec, warm)
            v[r_idx, s_idx] = op.from_theta(theta0, (r_idx, s_idx))
            z[r_idx, s_idx] = z0
            cold = torch.isnan(z0[:, 0])
            if cold.any():  # starts off the path: logits by a product
                cold_rows = r_idx[cold].unique()  # sorted
                fresh = op.logits(v[cold_rows], cold_rows)
                z[r_idx[cold], s_idx[cold]] = fresh[torch.searchsorted(cold_rows, r_idx[cold]), s_idx[cold]]
            it[r_idx, s_idx], flat[r_idx, s_idx], failed[r_idx, s_idx] = 0, 0, 0
            memory.reset(r_idx, s_idx)
            if previous is not None:
                previous[4][r_idx, s_idx] = False
        active = slot_col >= 0
        if not active.any():
            break
        if since_refresh >= refresh:  # float drift of the tracked logits
            z = op.logits(v)
            since_refresh = 0
        y_rows, sign_rows = y[rows], sign[rows]
        residual = (torch.sigmoid(z) - y_rows) / n
        g, Mg = op.gradient(v, z, residual, penalty, active)
        since_refresh += 1
        f = F.softplus(sign_rows * z).mean(-1) + 0.5 * penalty * op.sq_norm(v, z)
        gn = op.grad_norm(g, Mg, tol)
        if previous is not None:
            s, Ms, g_old, Mg_old, stepped = previous
            y_change, My_change = g - g_old, Mg - Mg_old
            sy = (s * My_change).sum(-1)
            memory.push(s, Ms, y_change, My_change, stepped & (sy > 1e-10 * (s * Ms).sum(-1).clamp_min(1e-30)))
        # ---- record every running column; retire the finished ones
        done_tol = gn <= tol
        finished = active & (done_tol | (flat >= 3) | (failed >= 3) | (it >= max_iter))
        r_idx, s_idx = active.nonzero(as_tuple=True)
        glob, cols = rows[r_idx], slot_col[r_idx, s_idx]
        theta_rec[glob, cols] = op.to_theta(v)[r_idx, s_idx]
        z_rec[glob, cols] = z[r_idx, s_idx]
        n_iter[glob, cols] = it[r_idx, s_idx]
        grad_norm[glob, cols] = gn[r_idx, s_idx]
        converged[glob, cols] = (done_tol | (flat >= 3))[r_idx, s_idx]
        done_rec[glob, cols] = finished[r_idx, s_idx]
        slot_col = torch.where(finished, -1, slot_col)
        active = slot_col >= 0
        jumped = torch.zeros_like(active)
        if restart and warm and finished.any():  # the path moved on: restart columns from it where better
            candidates = active & finished.any(1, keepdim=True)
            r_idx, s_idx = candidates.nonzero(as_tuple=True)
            glob, cols = rows[r_idx], slot_col[r_idx, s_idx]
            theta1, z1, anchor1 = _on_path(glob, cols, start, theta_rec, z_rec, log_C, done_rec, warm)
            v1 = op.from_theta(theta1, (r_idx, s_idx))
            f1 = F.softplus(sign_rows[r_idx, 0] * z1).mean(-1) + 0.5 * penalty[r_idx, s_idx] * op.theta_sq_norm(theta1, z1)
            better = (anchor1 > anchor[r_idx, s_idx]) & (f1 < f[r_idx, s_idx]) & ~torch.isnan(z1[:, 0])
            if better.any():
                r_b, s_b = r_idx[better], s_idx[better]
                v[r_b, s_b], z[r_b, s_b], anchor[r_b, s_b] = v1[better], z1[better], anchor1[better]
                jumped[r_b, s_b] = True
        # ---- drop elements that are done
        alive = active.any(1) | (next_col[rows] < K)
        if not alive.all():
            keep = alive.nonzero()[:, 0]
            rows = rows[keep]
            if len(rows) == 0:
                break
            slot_col, anchor, v, z, it, flat, failed, penalty, g, Mg, f, active, jumped, y_rows, sign_rows = (
                t[keep] for t in (slot_col, anchor, v, z, it, flat, failed, penalty, g, Mg, f, active, jumped,
                                  y_rows, sign_rows))
            op.select(keep)
            op.set_penalty(penalty)
            memory.select(keep)
        moving = active & ~jumped  # restarted slots take their next step from their new gradient
        if not moving.any():
            previous = None
            continue
        # ---- direction and line search (logits move linearly: no product)
        d, Md = memory.direction(g, Mg)
        slope = (g * Md).sum(-1)
        uphill = slope >= 0  # lost curvature information: steepest descent
        if uphill.any():
            d = torch.where(uphill[..., None], -g, d)
            Md = torch.where(uphill[..., None], -Mg, Md)
            slope = torch.where(uphill, -(g * Mg).sum(-1), slope)
        dz = op.direction_logits(d, Md, moving)
        n0, n1, n2 = op.norms(v, z, d, Md)
        step = torch.ones_like(f)
        slack = 16 * torch.finfo(dtype).eps * f.abs()  # rounding noise of f is not a failed step
        for _ in range(30):  # backtracking (Armijo) per problem
            z_try = z + step[..., None] * dz
            f_try = F.softplus(sign_rows * z_try).mean(-1) + 0.5 * penalty * (n0 + step * (2 * n1 + step * n2))
            accepted = (f_try <= f + 1e-4 * step * slope + slack) | ~moving
            if accepted.all():
                break
            step = torch.where(accepted, step, step / 2)
        stepped = moving & accepted
        flat = torch.where(stepped, torch.where(f - f_try <= slack, flat + 1, 0), flat)
        failed = torch.where(moving, torch.where(accepted, 0, failed + 1), failed)
        t = torch.where(stepped, step, torch.zeros_like(step))[..., None]
        s, Ms = t * d, t * Md
        v, z = v + s, z + t * dz
        it = it + active.long()
        previous = (s, Ms, g, Mg, stepped)
    return PathResult(theta_rec, n_iter, converged, grad_norm, z_rec, steps)


def _dtype(op: KernelOperator | FeatureOperator) -> torch.dtype:
    return op.G.dtype if isinstance(op, KernelOperator) else op.Z.dtype


def _on_path(glob: torch.Tensor, cols: torch.Tensor, start: torch.Tensor, theta_rec: torch.Tensor,
             z_rec: torch.Tensor, log_C: torch.Tensor, done_rec: torch.Tensor, warm: bool
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Starts ``[E, D]``, their logits ``[E, n]`` (NaN where a product must give them) and anchors ``[E]`` for
    columns ``cols`` of elements ``glob``: secant extrapolation in ``log C`` through the two highest finished
    columns below each (the anchor is the higher one), the one alone if it is the only one, else ``start``."""
    column_index = torch.arange(done_rec.shape[1], device=done_rec.device)
    last_done = torch.where(done_rec[glob], column_index, -1).cummax(1).values  # [E, K]
    last = last_done.gather(1, (cols - 1).clamp_min(0)[:, None])[:, 0]
    last = torch.where(cols > 0, last, -1)
    before = last_done.gather(1, (last - 1).clamp_min(0)[:, None])[:, 0]
    before = torch.where(last > 0, before, -1)
    if not warm:
        last = torch.full_like(last, -1)
    lc = log_C[glob]
    l1, l0 = last.clamp_min(0), before.clamp_min(0)
    x1, x0, xt = (lc.gather(1, i[:, None]) for i in (l1, l0, cols))
    factor = torch.where((before >= 0)[:, None], (xt - x1) / torch.where(x1 == x0, 1.0, x1 - x0), 0.0)
    t1, t0 = theta_rec[glob, l1], theta_rec[glob, l0]
    z1, z0 = z_rec[glob, l1], z_rec[glob, l0]
    cold = (last < 0)[:, None]
    theta = torch.where(cold, start[glob, cols], t1 + factor * (t1 - t0))
    z = torch.where(cold, torch.full_like(z1, float("nan")), z1 + factor * (z1 - z0))
    return theta, z, last
