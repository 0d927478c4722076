"""Training an SAE with sae-lens' own ``SAETrainer`` on activations captured by steerlab.

The data provider is an endless iterator of shuffled ``[batch, d_in]`` tensors cut
from ``capture(..., position="all")`` over the text you give (the demo corpus by
default), first tokens left out (BOS where the tokenizer adds one, else the first word; an
attention sink with a norm several times the others). ``cfg.metadata.prepend_bos`` records
whether the tokenizer adds a BOS (steerlab itself never adds one).

TopK ("Scaling and evaluating sparse autoencoders", Gao et al.) and the standard L1 SAE
("Towards Monosemanticity", Bricken et al.) are both sae-lens training classes; activations are normalised to
an expected norm of sqrt(d_in) during training and the factor folded back into the
weights afterwards, so the saved SAE reads raw activations.

Example:
    >>> import steerlab
    >>> from steerlab.sae import train_sae, demo_corpus
    >>> model = steerlab.load_model("demo")                                      # doctest: +SKIP
    >>> sae = train_sae(model, demo_corpus(4000), layer=1, architecture="topk", k=16)  # doctest: +SKIP
    >>> sae.save_model("my-sae")                                                 # doctest: +SKIP
"""

from __future__ import annotations

import tempfile
import time
from typing import Any, Iterator, Sequence

import torch

ARCHITECTURES = ("topk", "standard")


def demo_corpus(n_lines: int, seed: int = 1000, world_seed: int = 0) -> list[str]:
    """``n_lines`` lines of the demo world's training stream (facts, statements, reviews, Q/A...).

    Seeds >= 1000 are used for SAE training text and 999 for evaluation text; the
    demo model itself was trained on other draws of the same stream.
    """
    from steerlab.datasets.builtin import _world
    from steerlab.world.corpus import CorpusStream

    stream = CorpusStream(_world(world_seed), seed=seed)
    return [stream.next_line() for _ in range(n_lines)]


def activation_batches(activations: torch.Tensor, batch_size: int, seed: int = 0) -> Iterator[torch.Tensor]:
    """Endless shuffled ``[batch_size, d_in]`` batches of ``activations`` ``[n, d_in]`` (a new order each epoch)."""
    if len(activations) < batch_size:
        raise ValueError(f"Only {len(activations)} activation rows for batches of {batch_size}: capture more text "
                         "or lower batch_size.")
    generator = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(len(activations), generator=generator)
        for start in range(0, len(order) - batch_size + 1, batch_size):
            yield activations[order[start:start + batch_size]]


def training_config(architecture: str, d_in: int, d_sae: int, *, k: int, l1_coefficient: float, hook_name: str,
                    model_name: str, prepend_bos: bool) -> Any:
    """The sae-lens TrainingSAE config for ``"topk"`` or ``"standard"`` (L1).

    ``prepend_bos``: whether the training text started with a BOS token (the tokenizer's doing).
    """
    from sae_lens import StandardTrainingSAEConfig, TopKTrainingSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    metadata = SAEMetadata(hook_name=hook_name, model_name=model_name, prepend_bos=prepend_bos)
    common = dict(d_in=d_in, d_sae=d_sae, normalize_activations="expected_average_only_in", metadata=metadata)
    if architecture == "topk":
        return TopKTrainingSAEConfig(k=k, **common)
    if architecture == "standard":
        return StandardTrainingSAEConfig(l1_coefficient=l1_coefficient, l1_warm_up_steps=100, **common)
    raise ValueError(f"Unknown architecture {architecture!r}: choose one of {', '.join(ARCHITECTURES)}.")


def train_sae(model: Any, texts: Sequence[str], *, layer: int, site: str = "resid_post", architecture: str = "topk",
              d_sae: int = 512, k: int = 16, l1_coefficient: float = 2.0, steps: int = 3000, batch_size: int = 512,
              lr: float = 1e-3, seed: int = 0) -> Any:
    """Train an SAE on ``model``'s ``site`` at ``layer`` over ``texts``; returns an inference sae-lens SAE.

    Args:
        model: a :class:`~steerlab.models.ModelAdapter`.
        texts: training text; every token but the first of each text (BOS where the tokenizer adds
            one, else the first word) is one training row.
        layer, site: where to read (``cfg.metadata.hook_name`` becomes ``blocks.{layer}.hook_{site}``).
        architecture: ``"topk"`` (k active latents per token) or ``"standard"`` (ReLU + L1 penalty).
        d_sae: number of latents; k: active latents (topk); l1_coefficient: sparsity penalty (standard).
        steps, batch_size: ``steps * batch_size`` training rows (re-shuffled each epoch).
        lr: Adam learning rate, warm-up over 5% of steps, cosine decay to lr / 10.

    Returns:
        A ``TopKSAE`` or ``StandardSAE`` (eval mode) with ``cfg.metadata`` recording
        the hook, model and training settings (``metadata.steerlab_training``).
    """
    from sae_lens import SAE
    from sae_lens.config import LoggingConfig, SAETrainerConfig
    from sae_lens.saes.sae import TrainingSAE
    from sae_lens.training.sae_trainer import SAETrainer

    from steerlab.sae.activations import token_rows, tokenizer_adds_bos

    torch.manual_seed(seed)
    point = model.point(site, layer)
    started = time.perf_counter()
    activations = token_rows(model, point, texts)[0]
    cfg = training_config(architecture, model.d_model, d_sae, k=k, l1_coefficient=l1_coefficient,
                          hook_name=point.hook_name, model_name=model.name,
                          prepend_bos=tokenizer_adds_bos(model.tokenizer))
    training_sae = TrainingSAE.from_dict(cfg.to_dict())
    trainer_cfg = SAETrainerConfig(
        total_training_samples=steps * batch_size, train_batch_size_samples=batch_size, lr=lr, lr_end=lr / 10,
        lr_scheduler_name="cosineannealing", lr_warm_up_steps=max(1, steps // 20), lr_decay_steps=0,
        dead_feature_window=max(50, steps // 10), feature_sampling_window=max(100, steps // 5),
        n_batches_for_norm_estimate=min(50, max(1, len(activations) // batch_size)),
        logger=LoggingConfig(log_to_wandb=False))
    trainer = SAETrainer(cfg=trainer_cfg, sae=training_sae, data_provider=activation_batches(activations, batch_size, seed))
    trainer.fit()
    training_sae.cfg.metadata.steerlab_training = {
        "texts": len(texts), "tokens": len(activations), "steps": steps, "batch_size": batch_size, "lr": lr,
        "seed": seed, "k": k if architecture == "topk" else None,
        "l1_coefficient": l1_coefficient if architecture == "standard" else None,
        "seconds": round(time.perf_counter() - started, 1)}
    with tempfile.TemporaryDirectory() as directory:
        training_sae.save_inference_model(directory)  # folds TopK's decoder norm; drops training-only fields
        sae = SAE.load_from_disk(directory)
    return sae.eval()

