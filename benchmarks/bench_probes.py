"""RaptorProbe vs the reference RAPTOR protocol (scikit-learn, layer by layer, warm-started C loop).

Both sides get the same data, the same stratified splits (outer 80/20 train/test, then
train split 80/20 into train/validation, seed 0), the same 100-value C grid (1e-4..1e2),
the same tolerance (sklearn's default tol=1e-4), standardisation on the training part,
selection by validation accuracy with ties to the smallest C, refit on train+validation with
the training part's scaler. The reference is ``benchmarks/raptor_reference.py`` (the authors' loop).

Run (numbers in benchmarks/results_probes.md):

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_probes.py --n 2000 --layers 12 --d 768

``--reference-layers k`` times the scikit-learn loop on the first k layers only and
extrapolates its time linearly to all layers (marked as such in the output).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from raptor_reference import fit_reference  # noqa: E402  (the authors' loop, shared by every RAPTOR benchmark)


def synthetic_activations(n: int, n_layers: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``[n, n_layers, d]`` activation-like data: low-rank correlated structure, uneven feature scales,
    offsets, and a concept whose strength rises then falls with depth; labels are noisy."""
    rng = np.random.default_rng(seed)
    rank = 64
    latent = rng.standard_normal((n, rank))
    teacher = rng.standard_normal(d) / np.sqrt(d)
    base = latent @ rng.standard_normal((rank, d)) * 0.5 + rng.standard_normal((n, d))
    y = (rng.random(n) < 1 / (1 + np.exp(-4 * base @ teacher))).astype(np.int64)
    layers = []
    for layer in range(n_layers):
        strength = np.sin(np.pi * (layer + 1) / (n_layers + 1))  # peaks mid-depth, as truth probes do
        noise = latent @ rng.standard_normal((rank, d)) * 0.5 + rng.standard_normal((n, d))
        scales = np.exp(rng.standard_normal(d) * 0.5)
        layers.append((strength * base + (1 - strength) * noise) * scales + rng.standard_normal(d) * 2)
    return np.stack(layers, axis=1).astype(np.float32), y


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--d", type=int, default=768)
    parser.add_argument("--Cs", type=int, default=100)
    parser.add_argument("--reference-layers", type=int, default=None, help="time sklearn on this many layers only")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from steerlab.probes import RaptorProbe, c_grid
    from steerlab.probes.splits import stratified_split

    X, y = synthetic_activations(args.n, args.layers, args.d)
    outer_train, test = stratified_split(y, 0.2, 0)
    X_train, y_train, X_test, y_test = X[outer_train], y[outer_train], X[test], y[test]
    train, val = stratified_split(y_train, 0.2, 0)  # RaptorProbe's own validation split (random_state=0)
    grid = c_grid(args.Cs)

    RaptorProbe(Cs=[1.0], device=args.device).fit(X_train[:50, :1], y_train[:50])  # warm-up (allocator, threads)
    start = time.perf_counter()
    probe = RaptorProbe(Cs=args.Cs, device=args.device).fit(X_train, y_train)
    ours_seconds = time.perf_counter() - start
    ours_test = probe.score(X_test, y_test)

    reference_layers = args.reference_layers or args.layers
    start = time.perf_counter()
    fits = [fit_reference(X_train[:, l], y_train, train, val, grid) for l in range(reference_layers)]
    reference = [{"C": fit.C, "val_accuracy": float(fit.val_accuracy.max()),
                  "test_accuracy": fit.score(X_test[:, l], y_test), "coef_raw": fit.coef} for l, fit in enumerate(fits)]
    reference_measured = time.perf_counter() - start
    reference_seconds = reference_measured * args.layers / reference_layers

    rows = []
    for l in range(reference_layers):
        cosine = float(np.dot(probe.coef_[l], reference[l]["coef_raw"]) /
                       (np.linalg.norm(probe.coef_[l]) * np.linalg.norm(reference[l]["coef_raw"])))
        rows.append({"layer": l, "C_reference": reference[l]["C"], "C_raptorprobe": float(probe.C_[l]),
                     "val_acc_reference": reference[l]["val_accuracy"],
                     "val_acc_raptorprobe": float(probe.val_accuracy_[l].max()),
                     "test_acc_reference": reference[l]["test_accuracy"], "test_acc_raptorprobe": float(ours_test[l]),
                     "cos_coef": cosine})
    summary = {
        "n": args.n, "layers": args.layers, "d": args.d, "Cs": args.Cs, "threads": args.threads, "device": args.device,
        "raptorprobe_seconds": ours_seconds, "reference_seconds": reference_seconds,
        "reference_layers_timed": reference_layers, "reference_extrapolated": reference_layers < args.layers,
        "speedup": reference_seconds / ours_seconds,
        "mean_test_acc_reference": float(np.mean([r["test_acc_reference"] for r in rows])),
        "mean_test_acc_raptorprobe": float(np.mean([r["test_acc_raptorprobe"] for r in rows])),
        "max_abs_test_acc_gap_points": float(100 * max(abs(r["test_acc_reference"] - r["test_acc_raptorprobe"])
                                                       for r in rows)),
        "best_layer_test_acc_reference": float(max(r["test_acc_reference"] for r in rows)),
        "best_layer_test_acc_raptorprobe": float(max(r["test_acc_raptorprobe"] for r in rows)),
    }
    print("| layer | C ref | C ours | val acc ref | val acc ours | test acc ref | test acc ours | cos(w_ref, w_ours) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['layer']} | {r['C_reference']:.3g} | {r['C_raptorprobe']:.3g} | {r['val_acc_reference']:.4f} | "
              f"{r['val_acc_raptorprobe']:.4f} | {r['test_acc_reference']:.4f} | {r['test_acc_raptorprobe']:.4f} | "
              f"{r['cos_coef']:.5f} |")
    print(json.dumps(summary, indent=1))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"summary": summary, "rows": rows}, handle, indent=1)


if __name__ == "__main__":
    main()
