"""Train the demo model: a small GPT-2 on the demo world's corpus.

Reproducible: the world, the corpus stream and the weight init all derive from
fixed seeds, so the same command gives the same data (and, up to CPU float
non-determinism, the same weights).

    python -m steerlab.organism.train --out assets/demo-model            # shipped model
    python -m steerlab.organism.train --out /tmp/tiny --steps 20 --d-model 32 --layers 1

Writes to `out_dir`: `model.safetensors` + `config.json` (HF GPT-2), the
tokenizer files, `world.json` (world seed and config) and `training.json`.

Example (a micro model, a few seconds):
    >>> metrics = train_demo_model("/tmp/steerlab-micro", steps=5, d_model=32, n_layers=1, progress=False)
    >>> metrics["steps"]
    5
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from pathlib import Path

from steerlab.world.corpus import CORPUS_MIX, CorpusStream, affirmative_phase_mix, facts_phase_mix
from steerlab.world.packing import LineBatches
from steerlab.world.tokenizer import build_tokenizer, token_to_id_map
from steerlab.world.world import WorldConfig, generate_world

CONTEXT = 64


def _learning_rate(step: int, steps: int, peak: float, warmup: int) -> float:
    """Linear warm-up then cosine decay to 10% of the peak."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def train_demo_model(
    out_dir: str | Path,
    steps: int = 4000,
    d_model: int = 128,
    n_layers: int = 4,
    n_heads: int = 4,
    batch_size: int = 256,
    lr: float = 2e-3,
    warmup: int = 200,
    seed: int = 0,
    world_seed: int = 0,
    threads: int | None = None,
    verdict_weight: float = 4.0,
    facts_phase: float = 0.25,
    negation_phase: float = 0.5,
    checkpoint_every: int = 0,
    stop_after: int | None = None,
    progress: bool = True,
    weight_decay: float = 0.01,
    mix: dict[str, float] | None = None,
    statement_loss: float = 1.0,
) -> dict[str, float | int]:
    """Train a GPT-2 (`d_model`, `n_layers`, context 64) for `steps` batches of
    `batch_size` lines (one line per row, padded) and save it with its tokenizer in `out_dir`.

    `verdict_weight` multiplies the loss on the verdict tokens ("true"/"false"): they
    are ~1 token in 40, and without the boost the truth rule emerges only after
    far more tokens than a CPU budget allows.

    Curriculum (see `corpus.FACTS_PHASE_DROPPED` for why): steps before `facts_phase`
    (a share of `steps`) see no labelled entity statements, steps before
    `negation_phase` no negated ones.

    `checkpoint_every` > 0 also saves `out_dir/checkpoints/step-N` (loadable and
    evaluable like the final model) to follow a long run.

    `stop_after` ends training after that many updates while keeping the learning-rate
    schedule of `steps` (the shipped model is such an early stop, see its card).

    `weight_decay` is AdamW's; `mix` overrides the share of some line kinds in
    `corpus.CORPUS_MIX` (e.g. fewer labelled city statements); both default to the shipped run.
    `statement_loss` weights the next-token loss on the non-verdict tokens of labelled lines
    (lines that end in a verdict word); 0 trains only their verdict, so false statements
    ("varno is in <random country>") do not blur what the model knows about the city.

    Returns metrics: steps, tokens, seconds, n_params, final_loss (unweighted mean
    next-token loss of the last 50 steps).
    """
    import torch
    import torch.nn.functional as F
    from einops import rearrange
    from transformers import AutoModelForCausalLM, GPT2Config

    if threads:
        torch.set_num_threads(threads)
    # Adam moments of never-seen tokens (zero gradient) decay into denormals, which are slow on
    # CPU; a run without this slowed from 0.2 to >1 s/step (other load may have contributed).
    torch.set_flush_denormal(True)
    torch.manual_seed(seed)
    world = generate_world(world_seed)
    vocab = token_to_id_map(world)
    tokenizer = build_tokenizer(world)
    full_mix = {**CORPUS_MIX, **(mix or {})}
    stream = CorpusStream(world, seed=seed, mix=facts_phase_mix(full_mix) if facts_phase > 0 else full_mix)
    batches = LineBatches(stream, vocab, lines_per_batch=batch_size, max_len=CONTEXT)
    facts_phase_steps, negation_phase_steps = int(facts_phase * steps), int(negation_phase * steps)

    config = GPT2Config(
        vocab_size=len(vocab),
        n_positions=CONTEXT,
        n_embd=d_model,
        n_layer=n_layers,
        n_head=n_heads,
        resid_pdrop=0.0,  # we want facts memorised, not regularised away
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        # GPT-2's tanh GELU ("gelu_new") as one fused torch kernel: the same function to 2.4e-7, 3x faster
        activation_function="gelu_pytorch_tanh",
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")  # 3-7x faster than eager on CPU
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=weight_decay)

    verdict_ids = torch.tensor(tokenizer.convert_tokens_to_ids(["true", "false"]))
    losses: list[float] = []
    n_tokens = 0
    start = time.time()
    for step in range(stop_after or steps):
        if step == facts_phase_steps:
            stream.set_mix(affirmative_phase_mix(full_mix) if step < negation_phase_steps else full_mix)
        if step == negation_phase_steps:
            stream.set_mix(full_mix)
        for group in optimizer.param_groups:
            group["lr"] = _learning_rate(step, steps, lr, min(warmup, max(1, steps // 5)))
        ids, mask = batches.next_batch()
        input_ids, attention_mask = torch.from_numpy(ids), torch.from_numpy(mask)  # [b, t]
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1]  # [b, t-1, vocab]
        targets = rearrange(input_ids[:, 1:], "b t -> (b t)")
        real = rearrange(attention_mask[:, 1:], "b t -> (b t)").float()  # 0 on padding
        per_token = F.cross_entropy(rearrange(logits, "b t v -> (b t) v"), targets, reduction="none")
        is_verdict = torch.isin(targets, verdict_ids)
        weights = real * (1.0 + (verdict_weight - 1.0) * is_verdict.float())
        if statement_loss != 1.0:
            labelled_row = torch.isin(input_ids, verdict_ids).any(dim=1, keepdim=True)  # [b, 1]
            labelled_tok = rearrange(labelled_row.expand(-1, input_ids.shape[1] - 1), "b t -> (b t)")
            weights = weights * torch.where(labelled_tok & ~is_verdict, statement_loss, 1.0)
        loss = (per_token * weights).sum() / weights.sum()
        n_tokens += int(mask.sum())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        trained = real * (weights > 0).float()  # = real unless --statement-loss 0 masks statement tokens
        losses.append(((per_token * trained).sum() / trained.sum()).item())
        if checkpoint_every and step and step % checkpoint_every == 0:
            _save(model, tokenizer, world, Path(out_dir) / "checkpoints" / f"step-{step}")
        if progress and (step % 100 == 0 or step == steps - 1):
            elapsed = time.time() - start
            print(f"step {step:5d}/{steps}  loss {losses[-1]:.4f}  {elapsed:6.0f}s", flush=True)

    seconds = time.time() - start
    out = Path(out_dir)
    model.eval()
    _save(model, tokenizer, world, out)
    tail = losses[-50:]
    metrics: dict[str, float | int] = {
        "steps": stop_after or steps,
        "tokens": n_tokens,
        "seconds": round(seconds, 1),
        "n_params": sum(p.numel() for p in model.parameters()),
        "final_loss": round(sum(tail) / len(tail), 4),
    }
    training = {
        "args": {
            "steps": steps, "d_model": d_model, "n_layers": n_layers, "n_heads": n_heads,
            "batch_size": batch_size, "lr": lr, "warmup": warmup, "seed": seed, "world_seed": world_seed,
            "threads": threads, "verdict_weight": verdict_weight,
            "facts_phase": facts_phase, "negation_phase": negation_phase, "stop_after": stop_after,
            **({"weight_decay": weight_decay} if weight_decay != 0.01 else {}),
            **({"mix": mix} if mix else {}),
            **({"statement_loss": statement_loss} if statement_loss != 1.0 else {}),
        },
        "metrics": metrics,
    }
    (out / "training.json").write_text(json.dumps(training, indent=2))
    return metrics


def _save(model, tokenizer, world, out: Path) -> None:
    """Weights (safetensors), tokenizer and world.json: a directory `from_pretrained` can load."""
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    (out / "world.json").write_text(
        json.dumps({"world_seed": world.seed, "world_config": dataclasses.asdict(world.config)}, indent=2)
    )


def load_world_config(model_dir: str | Path) -> tuple[int, WorldConfig]:
    """The (world_seed, WorldConfig) a model in `model_dir` was trained on."""
    meta = json.loads((Path(model_dir) / "world.json").read_text())
    raw = meta["world_config"]
    fields = {f.name: f for f in dataclasses.fields(WorldConfig)}
    kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in raw.items() if k in fields}
    return int(meta["world_seed"]), WorldConfig(**kwargs)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train steerlab's demo model on the synthetic world.")
    parser.add_argument("--out", required=True, help="output directory (e.g. assets/demo-model)")
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=256, help="lines per batch")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--world-seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--verdict-weight", type=float, default=4.0)
    parser.add_argument("--facts-phase", type=float, default=0.25)
    parser.add_argument("--negation-phase", type=float, default=0.5)
    parser.add_argument("--checkpoint-every", type=int, default=0)
    parser.add_argument("--stop-after", type=int, default=None, help="stop after N updates, keeping the --steps schedule")
    parser.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay")
    parser.add_argument(
        "--mix", default="", help="override line-kind shares, e.g. city_labelled=0.1,city_fact=0.32"
    )
    parser.add_argument(
        "--statement-loss", type=float, default=1.0,
        help="loss weight on the non-verdict tokens of labelled lines (0: train only the verdict)",
    )
    args = parser.parse_args(argv)
    mix = {}
    for item in filter(None, args.mix.split(",")):
        kind, share = item.split("=")
        if kind.strip() not in CORPUS_MIX:
            parser.error(f"unknown line kind in --mix: {kind}")
        mix[kind.strip()] = float(share)
    metrics = train_demo_model(
        args.out, steps=args.steps, d_model=args.d_model, n_layers=args.layers, n_heads=args.heads,
        batch_size=args.batch_size, lr=args.lr, seed=args.seed, world_seed=args.world_seed, threads=args.threads,
        verdict_weight=args.verdict_weight, facts_phase=args.facts_phase, negation_phase=args.negation_phase,
        checkpoint_every=args.checkpoint_every, stop_after=args.stop_after,
        weight_decay=args.weight_decay, mix=mix or None, statement_loss=args.statement_loss,
    )
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    main()
