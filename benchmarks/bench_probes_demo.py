"""Probes on the demo model: per-layer sweeps per truth domain, held-out cities, transfer geometry.

What issue 4 asks to show on the demo model:
* a per-layer sweep (RAPTOR, mass-mean, LDA, logistic) on each demo truth domain
  (group split by entity inside the domain's train split);
* best-layer RaptorProbe accuracy on held-out cities (train on ``demo/cities`` train,
  test on its test split, whose cities never appear in training): goal >= 0.90;
* the transfer matrix across demo truth domains at that layer (train split of A,
  AUROC on the test split of B, plus the union) and the R^2 of a linear fit of
  cross-domain AUROC against the Mahalanobis cosine, beside the plain cosine's.

Run:

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_probes_demo.py --json /tmp/demo_probes.json

Optional figures (HTML) go to ``--figures DIR``. ``--model DIR`` runs it on any checkpoint
trained on the demo world (e.g. one from ``python -m steerlab.organism.train``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

DOMAINS = ["cities", "neg_cities", "larger_than", "people", "objects"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="demo")
    parser.add_argument("--site", default="resid_post")
    parser.add_argument("--position", default="last")
    parser.add_argument("--domains", nargs="+", default=DOMAINS)
    parser.add_argument("--stability-runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None)
    parser.add_argument("--figures", default=None, help="directory for HTML figures")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import steerlab
    import steerlab.datasets as sd
    from steerlab.probes import RaptorProbe, auroc, projection_figure, probe_sweep, transfer_matrix

    model = steerlab.load_model(args.model)
    activations, labels, groups = {}, {}, {}
    start = time.perf_counter()
    for domain in args.domains:
        for split in ("train", "test"):
            ds = sd.load(f"demo/{domain}", split=split)
            activations[domain, split] = steerlab.capture(model, ds.texts, site=args.site, position=args.position,
                                                          progress=False)
            labels[domain, split], groups[domain, split] = ds.labels, np.asarray(ds.groups)
    capture_seconds = time.perf_counter() - start
    layers = activations[args.domains[0], "train"].layers

    report: dict = {"model": args.model, "site": args.site, "position": args.position, "layers": layers,
                    "capture_seconds": capture_seconds, "sweeps": {}, "heldout": {}}
    for domain in args.domains:  # per-layer sweep inside each domain's train split, grouped by entity
        result = probe_sweep(activations[domain, "train"], labels[domain, "train"],
                       methods=["raptor", "diff_means", "lda", "logistic"], groups=groups[domain, "train"],
                       stability_runs=args.stability_runs)
        report["sweeps"][domain] = {"rows": result.to_records(), "best_layers": result.best_layers(),
                                    "best": result.best()}
        print(f"\n== sweep {domain} ==\n{result}")
        if args.figures:
            Path(args.figures).mkdir(parents=True, exist_ok=True)
            result.figure("accuracy", title=f"{domain}: test accuracy by layer").write_html(
                Path(args.figures) / f"sweep_{domain}.html")

    for domain in args.domains:  # RaptorProbe on the train split, held-out entities as test
        probe = RaptorProbe().fit(activations[domain, "train"], labels[domain, "train"], groups=groups[domain, "train"])
        accuracy = probe.score(activations[domain, "test"].values, labels[domain, "test"])
        scores = probe.decision_function(activations[domain, "test"].values)
        aurocs = [auroc(labels[domain, "test"], scores[:, slot]) for slot in range(len(layers))]
        best = int(np.argmax(accuracy))
        report["heldout"][domain] = {"accuracy_by_layer": accuracy.tolist(), "auroc_by_layer": aurocs,
                                     "best_layer": layers[best],
                                     "best_accuracy": float(accuracy[best]), "C_": probe.C_.tolist(),
                                     "fit_seconds": probe.fit_seconds_}
        print(f"held-out {domain}: best layer {layers[best]} accuracy {accuracy[best]:.4f} "
              f"(by layer: {np.round(accuracy, 3).tolist()}; AUROC {np.round(aurocs, 3).tolist()})")

    layer = report["heldout"][args.domains[0]]["best_layer"]  # the best held-out-cities layer
    slot = layers.index(layer)
    domains = {d: {"train": (activations[d, "train"].values[:, slot], labels[d, "train"]),
                   "test": (activations[d, "test"].values[:, slot], labels[d, "test"])} for d in args.domains}
    transfer = transfer_matrix(domains, probe=RaptorProbe())
    fits = transfer.fit_r2()
    report["transfer"] = {"layer": layer, "records": transfer.to_records(), "auroc": transfer.auroc.tolist(),
                          "train_domains": transfer.train_domains, "domains": transfer.domains,
                          "mahalanobis_cosine": transfer.mahalanobis_cosine.tolist(),
                          "cosine": transfer.cosine.tolist(), "fits": fits}
    print(f"\n== transfer at layer {layer} ==\n{transfer}")
    if args.figures:
        transfer.figure().write_html(Path(args.figures) / "transfer.html")
        X = np.concatenate([activations[d, "test"].values[:, slot].numpy() for d in args.domains])
        y = np.concatenate([labels[d, "test"] for d in args.domains])
        names = np.concatenate([[d] * len(labels[d, "test"]) for d in args.domains])
        projection_figure(X, y, names, title=f"layer {layer}: test statements").write_html(
            Path(args.figures) / "projection.html")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=float))


if __name__ == "__main__":
    main()
