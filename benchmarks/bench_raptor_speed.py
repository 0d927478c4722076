"""RaptorProbe vs the authors' RAPTOR protocol (benchmarks/raptor_reference.py), side by side in one process.

Cases (issue 16, goal 2):

* ``cities``: SmolLM2-135M-Instruct, last-token ``resid_post`` of all 30 layers (d=576) on the
  Geometry of Truth cities statements (``../shared/data/got_cities.csv``), captured with
  ``steerlab.capture`` (``--activations file.npz`` reuses a capture: arrays ``X [n, L, d]``, ``y``).
* ``synthetic7b``: a 7B-sized synthetic case, 32 layers x d=4096, n=1,500 statements (fewer
  examples than dimensions): low-rank correlated activations with uneven feature scales and
  offsets, a concept whose strength rises then falls with depth, noisy labels (the recipe of
  ``bench_probes.synthetic_activations``, generated layer by layer in float32); or
  ``--synthetic teacher-student`` for :func:`steerlab.probes.make_teacher_student` (isotropic).

Both sides get the same rows: an outer stratified 80/20 fit/test split (seed 0);
RaptorProbe fits the fit rows; the reference runs on the same fit rows with RaptorProbe's
own train/validation split (``steerlab.probes.splits.split``, seed 0), so chosen C and
accuracy compare like for like. Ratio = reference seconds per layer / RaptorProbe seconds per
layer (RaptorProbe always fits every layer at once; ``--reference-layers`` times the reference
on some layers only). Also: RaptorProbe with ``refit_scaler="train+val"`` against the default.

Run (numbers in benchmarks/results_probes.md):

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_raptor_speed.py --case cities
    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 .venv/bin/python benchmarks/bench_raptor_speed.py --case synthetic7b \\
        --reference-layers 0,4,8,12,16,20,24,28
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from raptor_reference import GRID, fit_reference  # noqa: E402

CITIES = ROOT.parent / "shared" / "data" / "got_cities.csv"


def cpu_model() -> str:
    with open("/proc/cpuinfo") as handle:
        return next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), "unknown")


def cities_activations(path: str | None, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """``(X [1496, 30, 576], y)``: SmolLM2-135M-Instruct last-token resid_post on GoT cities (or a saved capture)."""
    if path and os.path.exists(path):
        data = np.load(path)
        return data["X"], data["y"]
    import pandas as pd

    import steerlab
    from steerlab.models import load_model

    table = pd.read_csv(CITIES)
    model = load_model("smollm2-135m-instruct")
    acts = steerlab.capture(model, table.statement.tolist(), site="resid_post", position="last", batch_size=batch_size)
    X, y = acts.numpy(), table.label.to_numpy()
    if path:
        np.savez(path, X=X, y=y)
    return X, y


def synthetic_7b(n: int = 1500, n_layers: int = 32, d: int = 4096, kind: str = "activations", seed: int = 0
                 ) -> tuple[np.ndarray, np.ndarray]:
    """``(X [n, n_layers, d] float32, y)``: see the module docstring."""
    if kind == "teacher-student":
        from steerlab.probes import make_teacher_student

        X, y, _ = make_teacher_student(n, d, n_layers=n_layers, mean_shift=1.0, seed=seed)
        return X, y
    rng = np.random.default_rng(seed)
    rank = 64
    latent = rng.standard_normal((n, rank), dtype=np.float32)
    teacher = rng.standard_normal(d, dtype=np.float32) / np.sqrt(d)
    base = latent @ rng.standard_normal((rank, d), dtype=np.float32) * 0.5 + rng.standard_normal((n, d), dtype=np.float32)
    y = (rng.random(n) < 1 / (1 + np.exp(-4 * base @ teacher))).astype(np.int64)
    X = np.empty((n, n_layers, d), dtype=np.float32)
    for layer in range(n_layers):
        strength = np.sin(np.pi * (layer + 1) / (n_layers + 1))  # peaks mid-depth, as truth probes do
        noise = latent @ rng.standard_normal((rank, d), dtype=np.float32) * 0.5 + rng.standard_normal(
            (n, d), dtype=np.float32)
        scales = np.exp(rng.standard_normal(d, dtype=np.float32) * 0.5)
        X[:, layer] = (strength * base + (1 - strength) * noise) * scales + rng.standard_normal(d, dtype=np.float32) * 2
    return X, y


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def stability(X: np.ndarray, y: np.ndarray, json_path: str | None) -> None:
    """Directional stability of RaptorProbe (K = 20 refits on 80% subsets): batched vs one fit per run."""
    from steerlab.probes import RaptorProbe, directional_stability

    timings = {}
    for batched in (True, False):
        start = time.perf_counter()
        result = directional_stability(RaptorProbe(), X, y, runs=20, batched=batched)
        timings["batched" if batched else "one_fit_per_run"] = (time.perf_counter() - start, result)
    (fast, a), (slow, b) = timings["batched"], timings["one_fit_per_run"]
    summary = {"layers": X.shape[1], "runs": 20, "batched_seconds": fast, "one_fit_per_run_seconds": slow,
               "ratio": slow / fast, "stability_batched": np.round(a.stability, 4).tolist(),
               "stability_one_fit_per_run": np.round(b.stability, 4).tolist(),
               "max_direction_difference": float(np.abs(np.abs((a.directions * b.directions).sum(-1)) - 1).max())}
    print(json.dumps(summary, indent=1))
    if json_path:
        with open(json_path, "w") as handle:
            json.dump(summary, handle, indent=1)


def gcs(X_fit: np.ndarray, y_fit: np.ndarray, X_test: np.ndarray, y_test: np.ndarray, layers: list[int],
        json_path: str | None) -> None:
    """GCSProbe (one batched solve per layer) vs its 1,000 probes as scikit-learn fits (first layer only)."""
    from sklearn.linear_model import LogisticRegression

    from steerlab.probes import GCSProbe
    from steerlab.probes.gcs import gcs_subsamples

    start = time.perf_counter()
    probe = GCSProbe().fit(X_fit[:, layers], y_fit)
    seconds = time.perf_counter() - start
    first = X_fit[:, layers[0]].astype(np.float64)
    standardized = (first - first.mean(0)) / np.where(first.std(0) > 0, first.std(0), 1)
    start = time.perf_counter()
    weights = [LogisticRegression(C=1.0).fit(standardized[rows], y_fit[rows]).coef_[0]
               for rows in gcs_subsamples(y_fit, 1000, 0.1, 0)]
    sklearn_seconds = time.perf_counter() - start
    mean = np.mean(weights, 0) / np.where(first.std(0) > 0, first.std(0), 1)
    summary = {"layers": layers, "gcsprobe_seconds_per_layer": seconds / len(layers),
               "sklearn_1000_fits_seconds_one_layer": sklearn_seconds,
               "ratio_per_layer": sklearn_seconds / (seconds / len(layers)),
               "test_accuracy": np.round(probe.score(X_test[:, layers], y_test), 4).tolist(),
               "cos_to_mean_of_sklearn_probes_first_layer": cosine(probe.concept_vector_[0], mean),
               "unconverged_probes": probe.probe_unconverged_.tolist()}
    print(json.dumps(summary, indent=1))
    if json_path:
        with open(json_path, "w") as handle:
            json.dump(summary, handle, indent=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--case", choices=["cities", "synthetic7b"], default="cities")
    parser.add_argument("--activations", default=None, help="cities: .npz capture to reuse (written if absent)")
    parser.add_argument("--synthetic", choices=["activations", "teacher-student"], default="activations")
    parser.add_argument("--reference-layers", default=None, help="comma-separated layer slots (default: all)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the reference's BLAS follows "
                                                                 "OMP_NUM_THREADS)")
    parser.add_argument("--stability-layers", default=None, help="also time directional stability (K=20 drops of "
                        "20%%) on these layer slots: batched vs one RaptorProbe fit per run (and skip the rest)")
    parser.add_argument("--gcs-layers", default=None, help="also time GCSProbe (1,000 probes on 10%% subsamples) on "
                        "these layer slots, against the same 1,000 scikit-learn fits on the first (and skip the rest)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from steerlab.probes import RaptorProbe
    from steerlab.probes.splits import split, stratified_split

    X, y = cities_activations(args.activations) if args.case == "cities" else synthetic_7b(kind=args.synthetic)
    fit, test = stratified_split(y, 0.2, 0)
    X_fit, y_fit, X_test, y_test = X[fit], y[fit], X[test], y[test]
    train, val = split(y_fit, 0.2, 0)  # RaptorProbe's own validation split (random_state=0)
    n_layers = X.shape[1]
    timed = list(range(n_layers)) if args.reference_layers is None else [int(v) for v in args.reference_layers.split(",")]
    print(f"CPU: {cpu_model()} ({os.cpu_count()} logical cores); torch {torch.__version__}, "
          f"torch threads {torch.get_num_threads()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, "
          f"MKL_NUM_THREADS={os.environ.get('MKL_NUM_THREADS')}; load average {os.getloadavg()[0]:.1f}")
    print(f"case {args.case}: X {X.shape}, fit rows {len(fit)} (train {len(train)}, validation {len(val)}), "
          f"test rows {len(test)}; grid {len(GRID)} values of C")

    RaptorProbe(Cs=[1.0]).fit(X_fit[:50, :2], y_fit[:50])  # warm-up (allocator, threads)
    if args.gcs_layers:
        gcs(X_fit, y_fit, X_test, y_test, [int(v) for v in args.gcs_layers.split(",")], args.json)
        return
    if args.stability_layers:
        stability(X_fit[:, [int(v) for v in args.stability_layers.split(",")]], y_fit, args.json)
        return
    start = time.perf_counter()
    probe = RaptorProbe().fit(X_fit, y_fit)
    ours_seconds = time.perf_counter() - start
    ours_test = probe.score(X_test, y_test)
    start = time.perf_counter()
    variant = RaptorProbe(refit_scaler="train+val").fit(X_fit, y_fit)
    variant_seconds = time.perf_counter() - start
    variant_test = variant.score(X_test, y_test)

    rows, reference_seconds = [], 0.0
    for layer in timed:
        ref = fit_reference(X_fit[:, layer], y_fit, train, val, GRID)
        reference_seconds += ref.seconds
        majority = max(np.mean(y_fit[val]), 1 - np.mean(y_fit[val]))
        rows.append({"layer": layer, "C_reference": ref.C, "C_raptorprobe": float(probe.C_[layer]),
                     "val_acc_reference": float(ref.val_accuracy.max()),
                     "val_acc_raptorprobe": float(probe.val_accuracy_[layer].max()),
                     "above_chance": bool(ref.val_accuracy.max() >= majority + 0.05),
                     "test_acc_reference": ref.score(X_test[:, layer], y_test),
                     "test_acc_raptorprobe": float(ours_test[layer]),
                     "test_acc_train_val_scaler": float(variant_test[layer]),
                     "cos_reference": cosine(probe.coef_[layer], ref.coef),
                     "cos_train_val_scaler_reference": cosine(variant.coef_[layer], ref.coef),
                     "cos_scalers": cosine(probe.coef_[layer], variant.coef_[layer]),
                     "reference_seconds": ref.seconds})
        print(f"  reference layer {layer}: {ref.seconds:.1f} s, C {ref.C:.3g} (RaptorProbe {probe.C_[layer]:.3g})",
              flush=True)
    above = [r for r in rows if r["above_chance"]]
    per_layer_ref = reference_seconds / len(timed)
    per_layer_ours = ours_seconds / n_layers
    summary = {
        "case": args.case, "synthetic": args.synthetic if args.case == "synthetic7b" else None, "shape": list(X.shape),
        "threads": torch.get_num_threads(), "cpu": cpu_model(),
        "raptorprobe_seconds_all_layers": ours_seconds, "raptorprobe_seconds_per_layer": per_layer_ours,
        "reference_layers_timed": timed, "reference_seconds_per_layer": per_layer_ref,
        "ratio_per_layer": per_layer_ref / per_layer_ours,
        "layers_above_chance": len(above),
        "same_C_above_chance": sum(r["C_reference"] == r["C_raptorprobe"] for r in above),
        "max_abs_test_acc_gap_points_above_chance": float(100 * max(
            (abs(r["test_acc_reference"] - r["test_acc_raptorprobe"]) for r in above), default=0.0)),
        "mean_test_acc_reference": float(np.mean([r["test_acc_reference"] for r in rows])),
        "mean_test_acc_raptorprobe": float(np.mean([r["test_acc_raptorprobe"] for r in rows])),
        "mean_test_acc_train_val_scaler": float(np.mean([r["test_acc_train_val_scaler"] for r in rows])),
        "mean_cos_reference": float(np.mean([r["cos_reference"] for r in rows])),
        "mean_cos_train_val_scaler_reference": float(np.mean([r["cos_train_val_scaler_reference"] for r in rows])),
        "min_cos_scalers": float(min(r["cos_scalers"] for r in rows)),
        "train_val_scaler_seconds_all_layers": variant_seconds,
    }
    print("| layer | C ref | C ours | val acc ref | val acc ours | test acc ref | test acc ours | test acc "
          "(train+val scaler) | cos(ours, ref) | cos(train+val scaler, ref) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['layer']}{'' if r['above_chance'] else ' (chance)'} | {r['C_reference']:.3g} | "
              f"{r['C_raptorprobe']:.3g} | {r['val_acc_reference']:.4f} | {r['val_acc_raptorprobe']:.4f} | "
              f"{r['test_acc_reference']:.4f} | {r['test_acc_raptorprobe']:.4f} | {r['test_acc_train_val_scaler']:.4f} "
              f"| {r['cos_reference']:.5f} | {r['cos_train_val_scaler_reference']:.5f} |")
    print(json.dumps(summary, indent=1))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"summary": summary, "rows": rows}, handle, indent=1)


if __name__ == "__main__":
    main()
