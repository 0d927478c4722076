"""The commands: each takes the parsed arguments, runs its stage, prints a summary, returns 0.

Heavy imports happen inside each command. Bad input raises ValueError / OSError, which
:func:`steerlab.cli.main` prints as one line (exit code 2).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from steerlab.cli.model_options import load_model_from_args
from steerlab.cli.summary import hallucination_table, print_demo_summary, print_run_summary


def run_capture(args: argparse.Namespace) -> int:
    import torch

    import steerlab
    from steerlab.datasets import read_text_column
    from steerlab.report.terminal import text_table

    texts = list(args.texts) + file_lines(args.file)
    if args.data is not None:
        texts += read_text_column(args.data, args.text_column)
    if not texts:
        raise ValueError("no texts given; pass them as arguments, with --file or with --data.")
    model = load_model_from_args(args)
    acts = steerlab.capture(model, texts, layers=args.layers, site=args.site, position=args.position,
                            batch_size=args.batch_size, out=args.out, dtype=getattr(torch, args.store_dtype),
                            shard=args.shard)
    print(acts)
    print(text_table([{"layer": layer, "mean |h|": norm} for layer, norm in zip(acts.layers, mean_norms(acts))]))
    if args.shard is not None:
        print(f"shard {args.shard[0]}/{args.shard[1]} -> {args.out}; once all {args.shard[1]} are done: "
              f"steerlab merge-captures DIR... --out MERGED")
    return 0


def mean_norms(acts: Any) -> list[float]:
    """Per captured layer, the mean ``||h||`` over rows, read shard by shard (bounded memory)."""
    total, rows = None, 0
    for chunk in acts.iter_shards():  # [rows, n_layers, d_model]
        norms = chunk.float().norm(dim=-1).sum(dim=0)
        total = norms if total is None else total + norms
        rows += chunk.shape[0]
    return (total / rows).tolist()


def run_merge_captures(args: argparse.Namespace) -> int:
    from steerlab.capture import Activations

    acts = Activations.merge(args.dirs, args.out, overwrite=args.overwrite)
    print(acts)
    print(f"steerlab merge-captures -> {args.out} ({len(args.dirs)} shards; shard files hard-linked, not copied, "
          "where the folders share a file system)")
    return 0


def file_lines(path: Path | None) -> list[str]:
    from steerlab.datasets import read_lines

    return [] if path is None else read_lines(path)


def run_pipeline_config(args: argparse.Namespace) -> int:
    from steerlab.pipeline.config import EXAMPLE_CONFIG, load_config

    if args.example:
        print(EXAMPLE_CONFIG, end="")
        return 0
    if args.config is None:
        raise ValueError("give a config file (steerlab run --example > run.toml writes one to start from).")
    from steerlab.pipeline.run import run_pipeline

    config = load_config(args.config)
    out = args.out or Path(config.output.dir)
    metrics = run_pipeline(config, out, overwrite=args.overwrite)
    print_run_summary(out, metrics)
    return 0


def run_probe(args: argparse.Namespace) -> int:
    from steerlab.pipeline.config import parse_config
    from steerlab.pipeline.run import run_pipeline

    data = ({"dataset": args.dataset} if args.dataset else
            {"file": str(Path(args.file).resolve()), "text_column": args.text_column,
             "label_column": args.label_column, "group_column": args.group_column, "concept": args.concept})
    config = parse_config({"model": {"name": args.model, "backend": args.backend, "device": args.device,
                                     "dtype": args.dtype}, "data": data,
                           "capture": {"site": args.site, "layers": args.layers or "all", "position": args.position},
                           "probes": {"methods": [m.strip() for m in args.methods.split(",") if m.strip()]},
                           "steering": {"direction": "none"}}, source="steerlab probe")
    metrics = run_pipeline(config, args.out, overwrite=args.overwrite, steer=False)
    print_run_summary(args.out, metrics)
    return 0


def run_steer(args: argparse.Namespace) -> int:
    import steerlab
    from steerlab.artifacts import artifact_kind
    from steerlab.report.terminal import text_table
    from steerlab.steering import SteeringVector

    prompts = list(args.prompts) + file_lines(args.file)
    if not prompts:
        raise ValueError("no prompts given; pass them as arguments or with --file.")
    if args.mode in ("set", "clamp") and args.target is None:
        raise ValueError(f"--mode {args.mode} needs --target (the projection for set, the probe probability for clamp).")
    # the artifact is read and checked before the model is loaded
    is_vector = artifact_kind(args.vector) == "steering_vector"
    vector = SteeringVector.load(args.vector) if is_vector else None
    probe = None if is_vector else loaded_probe(args)
    # a probe's unit direction always steers in units of the layer's typical token norm
    norm_units = args.norm_units or not is_vector
    recorded = vector.typical_norm if is_vector else getattr(probe, "activation_norm_", None)
    if norm_units and recorded is None:
        raise ValueError(f"{args.vector} records no typical norm, so alpha has no unit: "
                         + ("drop --norm-units (alpha then multiplies the vector's own norm), or save the vector after "
                            "vector.with_typical_norm(model, reference_texts)." if is_vector else
                            "refit and save the probe with this steerlab version (probes record the median norm of "
                            "their training rows)."))
    model = load_model_from_args(args)
    if not is_vector:
        vector = probe_vector(probe, args, model)
    before = model.generate(prompts, max_new_tokens=args.max_new_tokens)
    with steerlab.steer(model, vector, alpha=args.alpha, mode=args.mode, target=args.target,
                        positions=args.positions, norm_units=norm_units):
        after = model.generate(prompts, max_new_tokens=args.max_new_tokens)
    units = f" x the layer's median token norm ({vector.typical_norm:.3g})" if norm_units else ""
    print(f"{vector!r}, alpha={args.alpha}{units}, mode={args.mode}")
    print(text_table([{"prompt": p, "unsteered": b, "steered": a} for p, b, a in zip(prompts, before, after)]))
    return 0


def loaded_probe(args: argparse.Namespace) -> Any:
    """The saved linear probe to steer with; refuses probes without a single direction."""
    from steerlab.probes import load_probe

    probe = load_probe(args.vector)
    if getattr(probe, "coef_", None) is None:  # e.g. a token-level hallucination probe (an MLP)
        raise ValueError(f"{args.vector} is a {type(probe).__name__}: it has no single direction to steer with. "
                         "Use a linear probe (probe_*, raptor_*) or a steering vector (*_vector) artifact.")
    layers = list(getattr(probe, "layers_", None) or [])
    if args.layer is None and len(layers) > 1:
        raise ValueError(f"{args.vector} holds a probe per layer ({layers}): pass --layer (one of them).")
    return probe


def probe_vector(probe: Any, args: argparse.Namespace, model: Any) -> Any:
    """The steering direction of a saved probe at ``--layer`` (negative counts from the end)."""
    from steerlab.sites import resolve_layer
    from steerlab.steering import SteeringVector

    layer = None if args.layer is None else resolve_layer(args.layer, model.n_layers)
    return SteeringVector.from_probe(probe, layer=layer)


def run_hallucination(args: argparse.Namespace) -> int:
    from steerlab.output_folder import check_output, staged_output
    from steerlab.pipeline.run import qa_splits

    out = check_output(args.out, args.overwrite)
    data = qa_splits(args.file, args.question_column, args.answer_column, args.group_column, args.test_share)
    model = load_model_from_args(args)
    with staged_output(out, args.overwrite) as work:  # only once the inputs are known to be good
        metrics = write_hallucination_output(work, model, data, args.max_new_tokens)
    print(f"\nsteerlab hallucination -> {out}/report.html, {out}/metrics.json, {out}/artifacts/")
    print(f"  {metrics['data']['test']['answers']} test answers, {metrics['data']['test']['wrong_answers']} wrong:")
    print(hallucination_table(metrics))
    return 0


def write_hallucination_output(out: Path, model: Any, data: Any, max_new_tokens: int) -> dict[str, Any]:
    """The hallucination stage's metrics.json, sections, report and artifacts in ``out``."""
    from steerlab.pipeline.hallucination_stage import run_hallucination_stage
    from steerlab.pipeline.output import versions, write_json
    from steerlab.report import write_report
    from steerlab.report.sections_file import save_page, save_sections

    metrics, sections = run_hallucination_stage(model, artifacts=out / "artifacts", data=data,
                                                max_new_tokens=max_new_tokens)
    everything = {"schema": 1, "model": {"name": model.name, "n_layers": model.n_layers, "d_model": model.d_model},
                  "hallucination": metrics, "versions": versions()}
    write_json(out / "metrics.json", everything)
    save_sections(out, "hallucination", sections)
    title = f"steerlab hallucination: {model.name}"
    save_page(out, title)
    write_report(out / "report.html", title, sections, metrics=everything)
    return metrics


def run_train_sae(args: argparse.Namespace) -> int:
    import json
    import shlex

    from steerlab.cli.train_sae import run

    command = "steerlab train-sae " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    card = run(args, command)
    print(json.dumps(card["quality_heldout"], indent=1))
    print(f"steerlab train-sae -> {args.out} (load it with steerlab.sae.load_sae({str(args.out)!r}, model=...))")
    return 0


def run_sae_feature(args: argparse.Namespace) -> int:
    """``steerlab sae-feature MODEL FEATURE...``: one HTML page with each feature's contexts and logit lens."""
    from steerlab.sae import feature_view, load_sae, write_feature_page
    from steerlab.sae.loading import SHIPPED_MODEL_SAES

    if args.out.exists() and not args.overwrite:
        raise FileExistsError(f"{args.out} exists: pass --overwrite to replace it, or choose another --out.")
    source = args.sae or ("demo" if args.model == "demo" else args.model if args.model in SHIPPED_MODEL_SAES else None)
    if source is None:
        raise ValueError(f"No SAE is shipped for {args.model!r}: pass --sae DIR (a sae.save_model folder).")
    if source not in ("demo", *SHIPPED_MODEL_SAES) and not (Path(source) / "cfg.json").is_file():
        raise FileNotFoundError(f"--sae {source}: no SAE there (no cfg.json); pass a folder written by "
                                "sae.save_model / steerlab train-sae.")
    if args.file is None and args.model != "demo":
        raise ValueError("Pass --file with the texts to look for activations in (one per line).")
    if args.file is not None:
        from steerlab.datasets import read_lines

        texts = read_lines(args.file)
    else:
        from steerlab.sae import demo_corpus

        texts = demo_corpus(300, seed=999)  # held-out demo text (the demo SAEs were trained on seeds >= 1000)
    model = load_model_from_args(args)
    sae = load_sae(source, model=model)
    views = [feature_view(model, sae, feature, texts, top=args.top) for feature in args.features]
    for view in views:
        print(view)
    print(f"steerlab sae-feature -> {write_feature_page(views, args.out)}")
    return 0


def run_report(args: argparse.Namespace) -> int:
    from steerlab.report.sections_file import rebuild_report

    path = args.dir / "report.html"
    if path.exists() and not args.overwrite:
        raise FileExistsError(f"{path} exists: pass --overwrite to rebuild it.")
    rebuild_report(args.dir, title=args.title)  # the title of the command that wrote DIR unless --title
    print(f"steerlab report -> {path}")
    return 0


def start_demo_sae_stage(args: argparse.Namespace) -> Any:
    """``steerlab demo``'s SAE stage in a second process, started before this one imports torch (the ~12 s of
    imports it needs, sae-lens's ~9, then overlap this process's own); ``run_demo`` below takes it over."""
    from steerlab.cli.threads import chosen_threads, usable_cores
    from steerlab.pipeline.sae_stage_process import SaeStageProcess

    threads = chosen_threads(usable_cores())  # None: OMP_NUM_THREADS or MKL_NUM_THREADS decide (0: the child halves them)
    return SaeStageProcess("demo", 0 if threads is None else max(1, threads // 2))


def run_demo(args: argparse.Namespace) -> int:
    import torch

    from steerlab.pipeline.demo import run_demo

    # The SAE stage runs in a second process beside the others, each process on half the threads the policy gives
    # (at least one): the demo model's small operations scale across processes, not across intra-op threads (quiet
    # 2 cores: one stage at a time on two threads used 135 CPU-s for an 82 s demo), and beside a CPU hog two demo
    # processes get a fair share of two cores where one gets a third of them.
    from steerlab.cli.threads import blas_threads

    threads = max(1, torch.get_num_threads() // 2)
    torch.set_num_threads(threads)  # the command's thread setting is restored when it returns
    beside = args.started if getattr(args, "started", None) is not None else True
    with blas_threads(threads):
        print_demo_summary(args.out, run_demo(args.out, overwrite=args.overwrite, sae_beside=beside))
    return 0


def run_models(args: argparse.Namespace) -> int:
    """``steerlab models``: the real-model table; ``steerlab models pull NAME...``: fetch and convert."""
    from steerlab.models import registry

    if args.action == "pull":
        names = list(registry.MODELS) if "all" in args.names else list(dict.fromkeys(args.names))
        unknown = [name for name in names if name not in registry.MODELS]
        if unknown:
            raise ValueError(f"unknown model {unknown[0]!r}; known: {', '.join(registry.MODELS)} (or 'all').")
        for name in names:
            try:
                folder = registry.pull(name)
            except ImportError as error:  # the gguf package is missing: one line naming the fix
                raise ValueError(str(error)) from error
            print(f"{name}: pulled -> {folder}")
    print_models_table(registry.status())
    return 0


def print_models_table(rows: list[dict[str, Any]]) -> None:
    from steerlab.report.terminal import text_table

    print(text_table([{"name": row["name"], "architecture": row["architecture"], "layers": row["layers"],
                       "d_model": row["d_model"], "pulled": "yes" if row["pulled"] else "no",
                       "size": "" if row["size_bytes"] is None else f"{row['size_bytes'] / 1e6:.0f} MB",
                       "path": row["path"] or f"steerlab models pull {row['name']}"} for row in rows]))


def after_interrupt(args: argparse.Namespace) -> str:
    """What an interrupted command kept, and how to go on (the CLI prints it on Ctrl-C)."""
    if args.command == "capture":
        if args.out is None:
            return "Nothing was written."
        return (f"The finished shards in {args.out} are kept: run the same command again to resume where it "
                "stopped.")
    if args.command == "steer":
        return "Nothing was written."
    if args.command == "models":
        return ("Nothing half-converted was kept: a model is renamed into the cache only once converted. "
                "Run the same command again to pull it.")
    if args.command == "report":
        return f"{args.dir / 'report.html'} is as it was (the page is written aside and renamed at the end)."
    out = getattr(args, "out", None) or "the output folder"
    return (f"{out} is as it was before: outputs are built in a hidden sibling folder and swapped in only when a "
            "run succeeds. Run the same command again to start over.")
