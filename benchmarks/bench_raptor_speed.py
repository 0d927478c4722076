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
layer, in wall-clock time and in process CPU time (the steadier of the two on a shared machine;
both sides single-threaded by default). RaptorProbe always fits every layer at once; the
reference runs on every cities layer and, by default, on 8 of the 32 synthetic layers.
Per layer: both chosen Cs, the reference's validation accuracy at RaptorProbe's C (equal to the
reference's maximum when the two Cs tie on the reference's own curve), test accuracy, and for
a few above-chance layers whose C differs, the C the reference picks when run to convergence.

Run (numbers in benchmarks/results_raptor_speed.md):

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_raptor_speed.py \\
        --activations /tmp/smollm_cities.npz --json /tmp/raptor_speed.json
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


def compare_case(name: str, X: np.ndarray, y: np.ndarray, timed: list[int], tight: int) -> dict:
    """RaptorProbe on every layer, the reference on layer slots ``timed``, side by side; wall and CPU seconds.

    ``tight``: on up to that many above-chance layers whose C differs, rerun the reference converged (float64,
    tol 1e-8, max_iter 10,000) to see which C the protocol picks without the reference's own solver error."""
    from steerlab.probes import RaptorProbe
    from steerlab.probes.splits import split, stratified_split

    fit, test = stratified_split(y, 0.2, 0)
    X_fit, y_fit, X_test, y_test = X[fit], y[fit], X[test], y[test]
    train, val = split(y_fit, 0.2, 0)  # RaptorProbe's own validation split (random_state=0)
    n_layers = X.shape[1]
    print(f"\n## case {name}: X {X.shape}, fit rows {len(fit)} (train {len(train)}, validation {len(val)}), "
          f"test rows {len(test)}; grid {len(GRID)} values of C; load average {os.getloadavg()[0]:.1f}", flush=True)
    RaptorProbe(Cs=[1.0]).fit(X_fit[:50, :2], y_fit[:50])  # warm-up (allocator, threads)
    wall, cpu = time.perf_counter(), time.process_time()
    probe = RaptorProbe().fit(X_fit, y_fit)
    ours_wall, ours_cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"RaptorProbe, all {n_layers} layers: {ours_wall:.1f} s wall, {ours_cpu:.1f} s CPU", flush=True)
    ours_test = probe.score(X_test, y_test)
    rows, ref_wall, ref_cpu = [], 0.0, 0.0
    for layer in timed:
        X_layer = np.ascontiguousarray(X_fit[:, layer])
        wall, cpu = time.perf_counter(), time.process_time()
        ref = fit_reference(X_layer, y_fit, train, val, GRID)
        ref_wall, ref_cpu = ref_wall + time.perf_counter() - wall, ref_cpu + time.process_time() - cpu
        majority = max(np.mean(y_fit[val]), 1 - np.mean(y_fit[val]))
        ours_C = float(probe.C_[layer])
        ours_on_ref_curve = float(ref.val_accuracy[int(np.argmin(np.abs(GRID - ours_C)))])
        rows.append({"layer": layer, "C_reference": ref.C, "C_raptorprobe": ours_C, "same_C": ref.C == ours_C,
                     "val_acc_reference": float(ref.val_accuracy.max()),
                     "val_acc_raptorprobe": float(probe.val_accuracy_[layer].max()),
                     "reference_val_acc_at_our_C": ours_on_ref_curve,
                     "above_chance": bool(ref.val_accuracy.max() >= majority + 0.05),
                     "test_acc_reference": ref.score(X_test[:, layer], y_test),
                     "test_acc_raptorprobe": float(ours_test[layer]),
                     "cos_reference": cosine(probe.coef_[layer], ref.coef), "reference_seconds": ref.seconds,
                     "reference_iterations": int(ref.n_iter.sum())})
        print(f"  reference layer {layer}: {ref.seconds:.1f} s, {int(ref.n_iter.sum())} lbfgs iterations, C {ref.C:.3g} "
              f"(RaptorProbe {ours_C:.3g})", flush=True)
    above = [r for r in rows if r["above_chance"]]
    for r in [r for r in above if not r["same_C"]][:tight]:
        converged = fit_reference(X_fit[:, r["layer"]].astype(np.float64), y_fit, train, val, GRID, tol=1e-8,
                                  max_iter=10_000)
        r["C_reference_converged"] = converged.C
        print(f"  converged reference layer {r['layer']}: C {converged.C:.3g}", flush=True)
    per_layer_ours_wall, per_layer_ours_cpu = ours_wall / n_layers, ours_cpu / n_layers
    summary = {
        "case": name, "shape": list(X.shape), "raptorprobe_wall_seconds_all_layers": ours_wall,
        "raptorprobe_cpu_seconds_all_layers": ours_cpu, "reference_layers_timed": timed,
        "reference_wall_seconds_per_layer": ref_wall / len(timed), "reference_cpu_seconds_per_layer": ref_cpu / len(timed),
        "ratio_wall_per_layer": ref_wall / len(timed) / per_layer_ours_wall,
        "ratio_cpu_per_layer": ref_cpu / len(timed) / per_layer_ours_cpu,
        "layers_above_chance": len(above), "same_C_above_chance": sum(r["same_C"] for r in above),
        "same_C_all": sum(r["same_C"] for r in rows),
        "our_C_a_reference_maximum_above_chance": sum(r["reference_val_acc_at_our_C"] == r["val_acc_reference"]
                                                      for r in above),
        "max_abs_test_acc_gap_points_above_chance": float(100 * max(
            (abs(r["test_acc_reference"] - r["test_acc_raptorprobe"]) for r in above), default=0.0)),
        "max_abs_test_acc_gap_points_all": float(100 * max(
            abs(r["test_acc_reference"] - r["test_acc_raptorprobe"]) for r in rows)),
        "mean_test_acc_reference": float(np.mean([r["test_acc_reference"] for r in rows])),
        "mean_test_acc_raptorprobe": float(np.mean([r["test_acc_raptorprobe"] for r in rows])),
        "mean_cos_reference": float(np.mean([r["cos_reference"] for r in rows])),
        "converged_reference_C": {r["layer"]: r["C_reference_converged"] for r in rows if "C_reference_converged" in r},
    }
    print("| layer | C ref | C ours | val acc ref | val acc ours | ref's val acc at our C | test acc ref | "
          "test acc ours | cos(ours, ref) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        mark = ("" if r["above_chance"] else " (chance)") + ("" if r["same_C"] else " *")
        print(f"| {r['layer']}{mark} | {r['C_reference']:.3g} | {r['C_raptorprobe']:.3g} | {r['val_acc_reference']:.4f} | "
              f"{r['val_acc_raptorprobe']:.4f} | {r['reference_val_acc_at_our_C']:.4f} | {r['test_acc_reference']:.4f} | "
              f"{r['test_acc_raptorprobe']:.4f} | {r['cos_reference']:.5f} |")
    print(json.dumps(summary, indent=1), flush=True)
    return {"summary": summary, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--case", choices=["both", "cities", "synthetic7b"], default="both")
    parser.add_argument("--activations", default=None, help="cities: .npz capture to reuse (written if absent)")
    parser.add_argument("--synthetic", choices=["activations", "teacher-student"], default="activations")
    parser.add_argument("--reference-layers", default=None, help="cities: comma-separated layer slots (default: all)")
    parser.add_argument("--reference-layers-7b", default="0,4,8,12,16,20,24,28",
                        help="synthetic7b: layer slots the reference runs on ('all' for every layer)")
    parser.add_argument("--tight", type=int, default=3, help="cities: rerun the reference converged on up to this "
                        "many above-chance layers whose C differs")
    parser.add_argument("--tight-7b", type=int, default=0, help="the same for synthetic7b (slow: float64 at d=4096)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the reference's BLAS follows "
                                                                 "OMP_NUM_THREADS)")
    parser.add_argument("--stability-layers", default=None, help="cities: time directional stability (K=20 drops of "
                        "20%%) on these layer slots: batched vs one RaptorProbe fit per run (and skip the rest)")
    parser.add_argument("--gcs-layers", default=None, help="cities: time GCSProbe (1,000 probes on 10%% subsamples) on "
                        "these layer slots, against the same 1,000 scikit-learn fits on the first (and skip the rest)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"CPU: {cpu_model()} ({os.cpu_count()} logical cores); torch {torch.__version__}, "
          f"torch threads {torch.get_num_threads()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, "
          f"MKL_NUM_THREADS={os.environ.get('MKL_NUM_THREADS')}; load average {os.getloadavg()[0]:.1f}; "
          f"ratio = reference seconds per layer / RaptorProbe seconds per layer (wall clock and process CPU time)")

    if args.stability_layers or args.gcs_layers:
        from steerlab.probes.splits import stratified_split

        X, y = cities_activations(args.activations)
        fit, test = stratified_split(y, 0.2, 0)
        if args.gcs_layers:
            gcs(X[fit], y[fit], X[test], y[test], [int(v) for v in args.gcs_layers.split(",")], args.json)
        else:
            stability(X[fit][:, [int(v) for v in args.stability_layers.split(",")]], y[fit], args.json)
        return
    results = {}
    if args.case in ("both", "cities"):
        X, y = cities_activations(args.activations)
        timed = (list(range(X.shape[1])) if args.reference_layers is None
                 else [int(v) for v in args.reference_layers.split(",")])
        results["cities"] = compare_case("cities", X, y, timed, args.tight)
        del X
    if args.case in ("both", "synthetic7b"):
        X, y = synthetic_7b(kind=args.synthetic)
        timed = (list(range(X.shape[1])) if args.reference_layers_7b == "all"
                 else [int(v) for v in args.reference_layers_7b.split(",")])
        results["synthetic7b"] = compare_case("synthetic7b", X, y, timed, args.tight_7b)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)


if __name__ == "__main__":
    main()
