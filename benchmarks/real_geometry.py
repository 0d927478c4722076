"""Truth geometry on a real model: transfer across domains, Mahalanobis cosine, erasure, projections.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/real_geometry.py \\
        --model smollm2-135m-instruct --out benchmarks/results_real_geometry [--cache /tmp/geometry-acts]

Reproduces, on steerlab's shipped real-English truth sets (Geometry of Truth recipes:
en/cities, en/neg_cities, en/larger_than, en/smaller_than, en/sp_en_trans), the analyses of

* Marks & Tegmark, "The Geometry of Truth": difference-of-means and logistic probes,
  generalisation across datasets, projections on the first two directions with negations;
* Ying et al., "The Truthfulness Spectrum Hypothesis": the train-domain x test-domain
  AUROC matrix, the linear fit of cross-domain AUROC on the Mahalanobis cosine of the two
  probes vs on the plain cosine (paper: R^2 = 0.98), LEACE / INLP erasure.

Each domain is subsampled to ``--per-domain`` statements (whole entity groups, from the
set's own group-disjoint train / test splits), captured once at every layer (resid_post,
last token: the final "."), then every analysis runs on those activations. The layer
(``--layer auto``) is chosen on the training splits only: the best mean in-domain AUROC of
the logistic probe under a group split of the training rows. Writes ``<model>.md``,
``<model>.json`` and plotly HTML figures (offline: plotly.min.js once in the folder) to
``--out``. All numbers come from the library (steerlab.probes.transfer / erasure / figures).
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import steerlab
import steerlab.datasets as sd
from steerlab.probes import (DiffMeans, INLPEraser, LeaceEraser, LogisticDirection, auroc, erase_from_domains,
                             inlp_rounds_curve, probe_after_erasure, projection_figure, transfer_by_layer,
                             transfer_matrix)
from steerlab.probes.figures import project_2d

DOMAINS = ["en/cities", "en/neg_cities", "en/larger_than", "en/smaller_than", "en/sp_en_trans"]
PAPER_R2 = 0.98
CONVERSE_PAIRS = [("cities", "neg_cities"), ("larger_than", "smaller_than")]
PROBES = {"logistic": lambda: LogisticDirection(C=1.0), "diff_means": lambda: DiffMeans()}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def subsample(ds: Any, n_rows: int, seed: int = 0) -> Any:
    """About ``n_rows`` rows of ``ds`` as whole groups (sets over the same entities subsample alike)."""
    groups = sorted(set(ds.groups))
    per_group = len(ds) / len(groups)
    keep = set(random.Random(seed).sample(groups, min(len(groups), max(2, round(n_rows / per_group)))))
    return ds.subset([i for i, g in enumerate(ds.groups) if g in keep])


def load_domains(per_domain: int) -> dict[str, dict[str, Any]]:
    """name -> {"train": ConceptDataset, "test": ConceptDataset}, ~per_domain rows in all (70 / 30)."""
    out = {}
    for name in DOMAINS:
        train, test = sd.load(name, "train"), sd.load(name, "test")
        share = len(test) / (len(train) + len(test))
        out[name.split("/")[1]] = {"train": subsample(train, round(per_domain * (1 - share))),
                                   "test": subsample(test, round(per_domain * share))}
    return out


def matrix_table(names_rows: list[str], names_cols: list[str], values: np.ndarray, corner: str) -> list[str]:
    lines = [f"| {corner} | " + " | ".join(names_cols) + " |", "|---" * (len(names_cols) + 1) + "|"]
    for name, row in zip(names_rows, values):
        lines.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in row) + " |")
    return lines


def choose_layer(arrays: dict[str, dict[str, tuple]], groups: dict[str, np.ndarray]) -> tuple[int, list[float]]:
    """The layer with the best mean in-domain AUROC of the logistic probe, on the training splits only."""
    train_only = {name: (arrays[name]["train"][0], arrays[name]["train"][1], groups[name]) for name in arrays}
    layered = transfer_by_layer(train_only, probe=PROBES["logistic"](), test_fraction=0.3, include_union=False)
    in_domain = [float(np.mean(np.diag(layered.auroc[slot]))) for slot in range(len(layered.layers))]
    return layered.layers[int(np.argmax(in_domain))], in_domain


def at_layer(arrays: dict[str, dict[str, tuple]], slot: int) -> dict[str, dict[str, tuple]]:
    return {name: {side: (X[:, slot], y) for side, (X, y) in sides.items()} for name, sides in arrays.items()}


def erasure_section(flat: dict[str, dict[str, tuple]], groups_all: dict[str, np.ndarray], rounds: list[int]
                    ) -> tuple[dict[str, Any], list[str]]:
    """Per-domain fresh-probe checks and the effect of erasing the domain-general direction."""
    results: dict[str, Any] = {"per_domain": {}, "domain_general": {}}
    lines = ["### Erasure at the chosen layer", "",
             "A fresh logistic probe (C = 1) fitted after erasure on the erased training rows, scored on held-out "
             "erased rows (group split by entity, 30% test). LEACE: `concept-erasure`'s closed form, fitted on the "
             "training rows (after it, the class means of the training rows coincide, so the best linear probe on them "
             "is constant: the fresh probe's weights are about zero and its held-out AUROC is 0.5 up to solver "
             "noise). INLP: k rounds of logistic probe + "
             "projection (Ravfogel et al.).", "",
             "| domain | AUROC before | LEACE: AUROC after | "
             + " | ".join(f"INLP {k}: AUROC after" for k in rounds) + " | chance |",
             "|---" * (4 + len(rounds)) + "|"]
    for name, sides in flat.items():
        X = np.concatenate([sides["train"][0], sides["test"][0]])
        y = np.concatenate([sides["train"][1], sides["test"][1]])
        leace = probe_after_erasure(LeaceEraser(), X, y, groups=groups_all[name])
        curve = inlp_rounds_curve(X, y, rounds, groups=groups_all[name])
        results["per_domain"][name] = {"leace": leace, "inlp": curve}
        lines.append(f"| {name} | {leace['auroc_before']:.3f} | {leace['auroc_after']:.3f} | "
                     + " | ".join(f"{point['auroc_after']:.3f}" for point in curve) + f" | {leace['chance']:.3f} |")
    inlp_rounds = max(rounds)
    lines += ["", "Erasing the domain-general direction: the eraser is fitted on the union of the five "
              "training splits (truth labels), applied to every domain, then the transfer matrix is refitted "
              "(logistic probes) on the erased activations. 'union probe after' is a fresh probe trained on the "
              "erased union: at chance when erasure worked; 'in-domain after' is what each domain keeps of its own "
              f"truth direction. INLP: {inlp_rounds} rounds.", "",
              "| domain | in-domain before | LEACE: in-domain after | LEACE: union probe after | "
              "INLP: in-domain after | INLP: union probe after | union probe before |",
              "|---|---|---|---|---|---|---|"]
    before = transfer_matrix(flat, probe=PROBES["logistic"]())
    after = {kind: transfer_matrix(erase_from_domains(flat, eraser), probe=PROBES["logistic"]())
             for kind, eraser in (("leace", LeaceEraser()), ("inlp", INLPEraser(n_iterations=inlp_rounds)))}
    k = len(before.domains)
    for j, name in enumerate(before.domains):
        lines.append(f"| {name} | {before.auroc[j, j]:.3f} | {after['leace'].auroc[j, j]:.3f} | "
                     f"{after['leace'].auroc[k, j]:.3f} | {after['inlp'].auroc[j, j]:.3f} | "
                     f"{after['inlp'].auroc[k, j]:.3f} | {before.auroc[k, j]:.3f} |")
    summary = {kind: result.summary() for kind, result in after.items()}
    lines += ["", f"Mean cross-domain AUROC (A != B): before {before.summary()['cross_domain']:.3f}, after LEACE "
              f"{summary['leace']['cross_domain']:.3f}, after INLP {summary['inlp']['cross_domain']:.3f}.", "",
              "Cross-domain AUROC after LEACE of the domain-general direction (logistic; rows: train domain):", ""]
    lines += matrix_table(after["leace"].train_domains, after["leace"].domains, after["leace"].auroc, "train \\ test")
    lines += [""]
    results["domain_general"] = {"before": before.to_records(), "before_summary": before.summary(),
                                 **{kind: {"records": result.to_records(), "summary": summary[kind]}
                                    for kind, result in after.items()}}
    return results, lines


def projection_section(flat: dict[str, dict[str, tuple]], layer: int, out: Path, stem: str
                       ) -> tuple[dict[str, Any], list[str]]:
    """Geometry of Truth style projections (test rows) and the numbers that describe them."""
    def rows(names: list[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
        X = np.concatenate([flat[n]["test"][0] for n in names])
        y = np.concatenate([flat[n]["test"][1] for n in names])
        return X, np.where(y == 1, "true", "false"), sum(([n] * len(flat[n]["test"][1]) for n in names), [])

    results, files = {}, []
    for pair in (["cities", "neg_cities"], ["larger_than", "smaller_than"]):
        X, labels, domains = rows(pair)
        figure = projection_figure(X, labels, domains=domains, center_by_domain=True,
                                   title=f"layer {layer}: {' and '.join(pair)}, top two PCs (each set centred)")
        path = out / f"{stem}_projection_{pair[0]}.html"
        figure.write_html(path, include_plotlyjs="directory")
        files.append(path.name)
        # how the figure reads: AUROC of each set's coordinate on each axis
        points, _ = project_2d(X, domains, center_by_domain=True)
        y01 = (labels == "true").astype(int)
        for axis in range(2):
            for name in pair:
                mask = np.array(domains) == name
                results[f"{name}: PC{axis + 1} AUROC"] = auroc(y01[mask], points[mask, axis])
    everything = list(flat)
    X, labels, domains = rows(everything)
    union = DiffMeans().fit(np.concatenate([flat[n]["train"][0] for n in everything]),
                            np.concatenate([flat[n]["train"][1] for n in everything]))
    figure = projection_figure(X, labels, domains=domains, direction=union.coef_,
                               title=f"layer {layer}: all five sets on the union difference-of-means direction")
    points, _ = project_2d(X, domains, direction=union.coef_)
    for name in everything:
        mask = np.array(domains) == name
        results[f"{name}: union difference-of-means direction AUROC"] = auroc((labels[mask] == "true").astype(int),
                                                                             points[mask, 0])
    path = out / f"{stem}_projection_union.html"
    figure.write_html(path, include_plotlyjs="directory")
    files.append(path.name)
    lines = ["### Projections (test statements, the Geometry of Truth figures)", "",
             "AUROC of the coordinate on each axis (0.5 = the axis carries no truth; below 0.5 = truth points the "
             "other way):", "", "| axis | AUROC |", "|---|---|"]
    lines += [f"| {key} | {value:.3f} |" for key, value in results.items()]
    lines += ["", "Figures: " + ", ".join(f"`{f}`" for f in files), ""]
    return results, lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct", help="a name load_model takes")
    parser.add_argument("--layer", default="auto", help="layer for the single-layer analyses, or 'auto'")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results_real_geometry"))
    parser.add_argument("--per-domain", type=int, default=300, help="statements per domain (whole groups)")
    parser.add_argument("--position", default="last", help="capture position ('last' or 'mean')")
    parser.add_argument("--inlp-rounds", default="10,50,150", help="INLP rounds to report (the largest erases the "
                        "domain-general direction)")
    parser.add_argument("--cache", type=Path, help="stream the activations here (a rerun reuses them)")
    args = parser.parse_args()
    started = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.model.replace("/", "_")
    header = {"torch_threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads(),
              "cpu": cpu_model(), "model": args.model, "position": args.position, "per_domain": args.per_domain}
    print(header, flush=True)

    data = load_domains(args.per_domain)
    order = [(name, side) for name in data for side in ("train", "test")]
    texts = sum((data[name][side].texts for name, side in order), [])
    model = steerlab.load_model(args.model)
    t0 = time.perf_counter()
    spans = sum((data[name][side].spans for name, side in order), []) if args.position == "mean" else None
    cache = args.cache / f"{stem}_{args.position}_{args.per_domain}" if args.cache else None
    cached = cache is not None and cache.exists()  # a finished store is read back, an unfinished one resumed
    acts = steerlab.capture(model, texts, layers=None, position=args.position, spans=spans, out=cache)
    capture_seconds = time.perf_counter() - t0
    values = acts.values.numpy()
    layers = list(acts.layers)
    arrays: dict[str, dict[str, tuple]] = {}
    start = 0
    for name, side in order:
        ds = data[name][side]
        arrays.setdefault(name, {})[side] = (values[start:start + len(ds)], ds.labels)
        start += len(ds)
    groups_train = {name: np.array(data[name]["train"].groups) for name in data}
    groups_all = {name: np.array(data[name]["train"].groups + data[name]["test"].groups) for name in data}

    if args.layer == "auto":
        layer, selection = choose_layer(arrays, groups_train)
        how = "auto: best mean in-domain AUROC of the logistic probe on a group split of the training rows"
    else:
        layer, selection, how = int(args.layer), [], "given with --layer"
    slot = layers.index(layer)

    layered = {kind: transfer_by_layer(arrays, probe=make()) for kind, make in PROBES.items()}
    flat = at_layer(arrays, slot)
    single = {kind: result.at(layer) for kind, result in layered.items()}
    for kind, result in single.items():
        result.scatter_figure(title=f"{args.model}, layer {layer}, {kind}: cross-domain AUROC vs cosine").write_html(
            args.out / f"{stem}_scatter_{kind}.html", include_plotlyjs="directory")
        result.figure(title=f"{args.model}, layer {layer}, {kind}: transfer AUROC").write_html(
            args.out / f"{stem}_transfer_{kind}.html", include_plotlyjs="directory")
    layered["logistic"].figure(title=f"{args.model}: transfer by layer (logistic)").write_html(
        args.out / f"{stem}_layers_logistic.html", include_plotlyjs="directory")

    erasure, erasure_lines = erasure_section(flat, groups_all, [int(k) for k in args.inlp_rounds.split(",")])
    projections, projection_lines = projection_section(flat, layer, args.out, stem)
    total = time.perf_counter() - started

    sizes = {name: (len(data[name]["train"]), len(data[name]["test"])) for name in data}
    md = [f"## {args.model} ({model.n_layers} layers, d = {model.d_model})", "",
          f"Statements per domain (train / test, whole entity groups): "
          + ", ".join(f"{name} {a} / {b}" for name, (a, b) in sizes.items())
          + f". Capture: resid_post, every layer, position {args.position!r}; {capture_seconds:.0f} s for "
          f"{len(texts)} statements{' (read back from --cache, partly or wholly)' if cached else ''}. "
          f"Whole run {total:.0f} s ({header['torch_threads']} torch thread, "
          f"{header['cpu']}).", "",
          f"Chosen layer: **{layer}** ({how}).", ""]
    if selection:
        md += ["In-domain AUROC used for the choice (training rows only), by layer: "
               + ", ".join(f"{l}: {v:.3f}" for l, v in zip(layers, selection)), ""]
    inner = {kind: result.fit_r2(exclude=CONVERSE_PAIRS) for kind, result in single.items()}
    for kind, result in single.items():
        fits = result.fit_r2()
        md += [f"### Transfer AUROC at layer {layer}, {kind} probe (rows: train domain; columns: test domain)", ""]
        md += matrix_table(result.train_domains, result.domains, result.auroc, "train \\ test")
        md += ["", f"Mahalanobis cosine of the probes (entry A, B on B's covariance), {kind}:", ""]
        md += matrix_table(result.domains, result.domains, result.mahalanobis_cosine, "A \\ B")
        md += ["", f"Plain cosine, {kind}:", ""]
        md += matrix_table(result.domains, result.domains, result.cosine, "A \\ B")
        md += ["", f"Linear fit of the 20 cross-domain AUROCs: on the Mahalanobis cosine R^2 = "
               f"**{fits['mahalanobis']['r2']:.3f}** (slope {fits['mahalanobis']['slope']:.3f}, intercept "
               f"{fits['mahalanobis']['intercept']:.3f}); on the plain cosine R^2 = **{fits['cosine']['r2']:.3f}** "
               f"(slope {fits['cosine']['slope']:.3f}). Paper (Ying et al.): {PAPER_R2}. Scatter: "
               f"`{stem}_scatter_{kind}.html`.",
               "", f"Without the 4 high-leverage pairs (a set and its negation / converse: cities-neg_cities, "
               f"larger_than-smaller_than, both orders), 16 points: R^2 on the Mahalanobis cosine "
               f"**{inner[kind]['mahalanobis']['r2']:.3f}**, on the plain cosine "
               f"**{inner[kind]['cosine']['r2']:.3f}**.",
               ""]
    for kind, result in layered.items():
        md += [f"### Across layers, {kind} probe", "",
               "| layer | in-domain | cross-domain | union probe | R^2 Mahalanobis | R^2 cosine |",
               "|---|---|---|---|---|---|"]
        md += [f"| {r['layer']} | {r['in_domain']:.3f} | {r['cross_domain']:.3f} | {r['union']:.3f} | "
               f"{r['r2_mahalanobis']:.3f} | {r['r2_cosine']:.3f} |" for r in result.to_records()]
        md += [""]
    md += erasure_lines + projection_lines
    (args.out / f"{stem}.md").write_text("\n".join(md) + "\n")
    record = {"header": header, "layer": layer, "layer_choice": how, "selection": selection, "sizes": sizes,
              "capture_seconds": capture_seconds, "total_seconds": total,
              "transfer": {kind: {"records": result.to_records(), "fits": result.fit_r2(),
                                  "fits_without_converse_pairs": inner[kind],
                                  "mahalanobis_cosine": result.mahalanobis_cosine.tolist(),
                                  "cosine": result.cosine.tolist()} for kind, result in single.items()},
              "by_layer": {kind: result.to_records() for kind, result in layered.items()},
              "erasure": erasure, "projections": projections}
    (args.out / f"{stem}.json").write_text(json.dumps(record, indent=1, default=float))
    print("\n".join(md))
    print(f"total {total:.0f} s")


if __name__ == "__main__":
    main()
