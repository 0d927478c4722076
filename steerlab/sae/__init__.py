"""Stage 4: the same concepts through sparse-autoencoder features (sae-lens).

* loading and checks: :func:`load_sae` (local dir, the shipped demo SAE, or a hub release);
* training on steerlab's captured activations with sae-lens' ``SAETrainer``:
  :func:`train_sae`, ``python -m steerlab.sae.train``;
* quality: :func:`sae_quality` (explained variance, L0, dead latents, CE loss spliced in);
* alignment of probe / steering directions with decoder rows: :func:`decoder_cosines`,
  :func:`reconstruction_curve`;
* feature probes: :func:`latent_aurocs`, :class:`SparseProbe` (Gurnee et al.), :func:`k_sparse_curve`,
  :func:`choose_k` (k by cross-validation on the train split);
* steering through features: ``SteeringVector.from_sae_feature`` + ``steer`` (decoder row
  added), or :func:`sae_edit` (latent edited, error term kept); :func:`input_scores` and
  :func:`output_scores` (Arad, Mueller & Belinkov);
* :func:`compare_methods` (AxBench-style detection vs steering at matched KL) and
  :func:`world_variable_table` (features matched to the demo world's variables).

sae-lens (about 7 s to import) is imported only by the functions that need it, and the names
here on first use (``steerlab train-sae --help`` stays instant).

Example:
    >>> import steerlab
    >>> from steerlab.sae import load_sae, sae_quality, sae_edit, demo_corpus
    >>> model = steerlab.load_model("demo")                                   # doctest: +SKIP
    >>> sae = load_sae("demo", model=model)                                   # doctest: +SKIP
    >>> sae_quality(model, sae, demo_corpus(300, seed=999))["explained_variance"]  # doctest: +SKIP
    0.97
"""

from steerlab.lazy_exports import lazy_exports

_MODULES = {
    "activations": ("encode", "latents", "site_activations"),
    "alignment": ("decoder_cosines", "reconstruction_curve", "top_aligned"),
    "compare": ("compare_methods",),
    "concepts": ("Concept", "sentiment_concept", "truth_concept"),
    "editing": ("sae_edit", "sae_splice"),
    "feature_probes": ("SparseProbe", "choose_k", "k_sparse_curve", "latent_aurocs"),
    "loading": ("check_sae", "demo_sae_path", "load_sae", "sae_point", "shipped_demo_saes"),
    "quality": ("sae_quality",),
    "scores": ("input_scores", "output_scores"),
    "training": ("demo_corpus", "train_sae"),
    "world_features": ("world_variable_table",),
}
_LAZY = {name: f"steerlab.sae.{module}" for module, names in _MODULES.items() for name in names}
__all__ = sorted(_LAZY)
__getattr__, __dir__ = lazy_exports("steerlab.sae", _LAZY)
