"""Directional stability (RAPTOR's definition), fit time, and the penalty trade-off on the
Gaussian teacher-student model (Gao et al., "RAPTOR: Ridge-Adaptive Logistic Probes").

* Stability: drop 20% of the examples, re-split, refit, K = 20 runs, mean |cos| over all
  pairs of concept vectors; for RaptorProbe, mass-mean, LDA and plain logistic (C = 1).
* Penalty sweep: test accuracy, stability and |cos| to the teacher against C, all C of a
  run in one batched solve; written as a plotly figure.

Run:

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_probes_stability.py --figure /tmp/penalty.html
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--d", type=int, default=200)
    parser.add_argument("--signal", type=float, default=3.0)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--figure", default=None, help="write the penalty trade-off figure (HTML) here")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)

    from steerlab.probes import (LDA, DiffMeans, LogisticDirection, RaptorProbe, directional_stability,
                                 make_teacher_student, penalty_path)

    X, y, w_star = make_teacher_student(args.n, args.d, signal=args.signal, seed=0)
    report = {"n": args.n, "d": args.d, "signal": args.signal, "runs": args.runs, "methods": {}}
    for name, probe in [("raptor", RaptorProbe()), ("diff_means", DiffMeans()), ("lda", LDA()),
                        ("logistic_C1", LogisticDirection(C=1.0))]:
        result = directional_stability(probe, X, y, runs=args.runs)
        teacher = float(np.abs(result.directions @ w_star).mean())
        report["methods"][name] = {"stability": float(result.stability), "fit_seconds": result.fit_seconds,
                                   "teacher_cosine": teacher}
        print(f"{name:12s} stability {result.stability:.4f}  |cos| to teacher {teacher:.4f}  "
              f"fit {result.fit_seconds * 1e3:.1f} ms")
    path = penalty_path(X, y, Cs=np.logspace(-4, 2, 25), runs=args.runs, w_star=w_star)
    report["penalty_path"] = {"Cs": path.Cs.tolist(), "test_accuracy": path.test_accuracy.tolist(),
                              "stability": path.stability.tolist(), "teacher_cosine": path.teacher_cosine.tolist()}
    for C, acc, stab, teach in zip(path.Cs[::4], path.test_accuracy[::4], path.stability[::4], path.teacher_cosine[::4]):
        print(f"C={C:9.4g}  test acc {acc:.3f}  stability {stab:.3f}  |cos| teacher {teach:.3f}")
    if args.figure:
        path.figure().write_html(args.figure)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=1)


if __name__ == "__main__":
    main()
