"""Training an SAE with sae-lens' own ``SAETrainer`` on activations captured by steerlab.

The data provider is an endless iterator of shuffled ``[batch, d_in]`` tensors cut
from ``capture(..., position="all")`` over the text you give (the demo corpus by
default), first tokens left out by default (``skip_first``: BOS where the tokenizer adds one,
else the first word; an attention sink with a norm several times the others, ~130x the median
on SmolLM2's layer 15). ``cfg.metadata.prepend_bos`` records whether the tokenizer adds a BOS
(steerlab itself never adds one). :func:`train_sae_on_activations` trains on rows you captured
yourself (e.g. streamed to disk with ``capture(..., out=DIR)`` for a corpus too large to redo).

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
    >>> rows = torch.randn(4096, 128)                      # or rows from steerlab.capture(..., position="all")
    >>> sae = train_sae_on_activations(rows, hook_name="blocks.1.hook_resid_post", model_name="demo",
    ...                                prepend_bos=True, k=8, steps=200)      # doctest: +SKIP
"""

from __future__ import annotations

import tempfile
import time
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import torch

if TYPE_CHECKING:
    from steerlab.models.adapter import ModelLike

SAE_ARCHITECTURES = ("topk", "standard")


def demo_corpus(n_lines: int, seed: int = 1000, world_seed: int = 0) -> list[str]:
    """``n_lines`` lines of the demo world's training stream (facts, statements, reviews, Q/A...).

    Seeds >= 1000 are used for SAE training text and 999 for evaluation text; the
    demo model itself was trained on other draws of the same stream.
    """
    from steerlab.datasets import demo_world
    from steerlab.world.corpus import CorpusStream

    stream = CorpusStream(demo_world(world_seed), seed=seed)
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
    raise ValueError(f"Unknown architecture {architecture!r}: choose one of {', '.join(SAE_ARCHITECTURES)}.")


def train_sae(model: ModelLike, texts: Sequence[str], *, layer: int, site: str = "resid_post", architecture: str = "topk",
              d_sae: int = 512, k: int = 16, l1_coefficient: float = 2.0, steps: int = 3000, batch_size: int = 512,
              lr: float = 1e-3, seed: int = 0, skip_first: bool = True) -> Any:
    """Train an SAE on ``model``'s ``site`` at ``layer`` over ``texts``; returns an inference sae-lens SAE.

    Args:
        model: a :class:`~steerlab.models.ModelAdapter`.
        texts: training text; every token of each text is one training row, but the first when
            ``skip_first`` (default).
        layer, site: where to read (``cfg.metadata.hook_name`` becomes ``blocks.{layer}.hook_{site}``).
        architecture: ``"topk"`` (k active latents per token) or ``"standard"`` (ReLU + L1 penalty).
        d_sae: number of latents; k: active latents (topk); l1_coefficient: sparsity penalty (standard).
        steps, batch_size: ``steps * batch_size`` training rows (re-shuffled each epoch).
        lr: Adam learning rate, warm-up over 5% of steps, cosine decay to lr / 10.
        skip_first: leave out each text's first token (BOS where the tokenizer adds one, else the
            first word: the attention sink, with a norm several times the others'). The helpers
            that use the SAE (:mod:`steerlab.sae.editing`, :mod:`steerlab.sae.quality`...) skip it
            by default too; ``cfg.metadata.steerlab_training["skip_first"]`` records the choice.

    Returns:
        A ``TopKSAE`` or ``StandardSAE`` (eval mode) with ``cfg.metadata`` recording
        the hook, model and training settings (``metadata.steerlab_training``).
    """
    from steerlab.sae.activations import token_rows, tokenizer_adds_bos

    point = model.point(site, layer)
    started = time.perf_counter()
    activations = token_rows(model, point, texts, skip_first=skip_first)[0]
    sae = train_sae_on_activations(activations, hook_name=point.hook_name, model_name=model.name,
                                   prepend_bos=tokenizer_adds_bos(model.tokenizer), architecture=architecture,
                                   d_sae=d_sae, k=k, l1_coefficient=l1_coefficient, steps=steps,
                                   batch_size=batch_size, lr=lr, seed=seed)
    sae.cfg.metadata.steerlab_training.update(texts=len(texts), skip_first=skip_first,
                                              seconds=round(time.perf_counter() - started, 1))
    return sae


@torch.no_grad()
def _start_at_the_mean(trainer: Any, training_sae: Any, activations: torch.Tensor, chunk: int = 65536) -> None:
    """Set the input scaling (sae-lens' ``expected_average_only_in``: mean norm -> sqrt(d_in)) from every row, and
    start ``b_dec`` at the rows' (scaled) mean, as sae-lens' own runner does with ``b_dec_init_method="mean"``.

    A residual stream's mean is a large share of its norm (57% of the squared norm at SmolLM2's layer 15): from
    a zero ``b_dec`` the latents spend the first hundreds of steps encoding it.
    """
    total, norms = torch.zeros(activations.shape[1], dtype=torch.float64), 0.0
    for start in range(0, len(activations), chunk):
        rows = activations[start:start + chunk].double()
        total += rows.sum(dim=0)
        norms += float(rows.norm(dim=-1).sum())
    factor = activations.shape[1] ** 0.5 / (norms / len(activations))
    if training_sae.cfg.normalize_activations == "expected_average_only_in":
        trainer.activation_scaler.scaling_factor = factor
    else:
        factor = 1.0
    training_sae.b_dec.copy_((total / len(activations) * factor).to(training_sae.b_dec.dtype))


def train_sae_on_activations(activations: torch.Tensor, *, hook_name: str, model_name: str, prepend_bos: bool,
                             architecture: str = "topk", d_sae: int = 512, k: int = 16, l1_coefficient: float = 2.0,
                             steps: int = 3000, batch_size: int = 512, lr: float = 1e-3, seed: int = 0) -> Any:
    """Train an SAE with sae-lens' ``SAETrainer`` on activation rows you captured yourself.

    Args:
        activations: ``[n_tokens, d_in]`` rows (float32 or bfloat16; batches are cast to float32).
        hook_name: the TransformerLens hook they come from (``"blocks.15.hook_resid_post"``).
        model_name: the model's name (``load_sae`` warns when used on another one).
        prepend_bos: whether the tokenizer put a BOS token in front of the texts.
        architecture, d_sae, k, l1_coefficient, steps, batch_size, lr, seed: as in :func:`train_sae`.

    Returns:
        The inference SAE (eval mode); ``cfg.metadata.steerlab_training`` records the settings.
    """
    from sae_lens import SAE
    from sae_lens.config import LoggingConfig, SAETrainerConfig
    from sae_lens.saes.sae import TrainingSAE
    from sae_lens.training.sae_trainer import SAETrainer

    if activations.ndim != 2:
        raise ValueError(f"activations must be [n_tokens, d_in], got shape {tuple(activations.shape)}.")
    torch.manual_seed(seed)
    started = time.perf_counter()
    cfg = training_config(architecture, activations.shape[1], d_sae, k=k, l1_coefficient=l1_coefficient,
                          hook_name=hook_name, model_name=model_name, prepend_bos=prepend_bos)
    training_sae = TrainingSAE.from_dict(cfg.to_dict())
    trainer_cfg = SAETrainerConfig(
        total_training_samples=steps * batch_size, train_batch_size_samples=batch_size, lr=lr, lr_end=lr / 10,
        lr_scheduler_name="cosineannealing", lr_warm_up_steps=max(1, steps // 20), lr_decay_steps=0,
        dead_feature_window=max(50, steps // 10), feature_sampling_window=max(100, steps // 5),
        n_batches_for_norm_estimate=min(50, max(1, len(activations) // batch_size)),
        logger=LoggingConfig(log_to_wandb=False))
    batches = (batch.float() for batch in activation_batches(activations, batch_size, seed))
    trainer = SAETrainer(cfg=trainer_cfg, sae=training_sae, data_provider=batches)
    _start_at_the_mean(trainer, training_sae, activations)
    trainer.fit()
    training_sae.cfg.metadata.steerlab_training = {
        "tokens": len(activations), "steps": steps, "batch_size": batch_size, "lr": lr,
        "seed": seed, "k": k if architecture == "topk" else None,
        "l1_coefficient": l1_coefficient if architecture == "standard" else None,
        "seconds": round(time.perf_counter() - started, 1)}
    with tempfile.TemporaryDirectory() as directory:
        training_sae.save_inference_model(directory)  # folds TopK's decoder norm; drops training-only fields
        sae = SAE.load_from_disk(directory)
    return sae.eval()
