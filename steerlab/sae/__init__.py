"""Stage 4: the same concepts through sparse-autoencoder features (sae-lens).

* loading and checks: :func:`load_sae` (local dir, the shipped demo SAE, the SAE shipped for a
  real model such as ``load_sae("smollm2-135m-instruct", model=model)``, or a hub release);
* training on steerlab's captured activations with sae-lens' ``SAETrainer``:
  :func:`train_sae`, :func:`train_sae_on_activations` (command line: ``steerlab train-sae MODEL``);
* quality: :func:`sae_quality` (explained variance, L0, dead and dense latents, CE loss spliced in);
* every helper leaves each text's first token out by default (``skip_first=True``: the attention
  sink, see :mod:`steerlab.sae.activations`);
* alignment of probe / steering directions with decoder rows: :func:`decoder_cosines`,
  :func:`reconstruction_curve`;
* feature probes: :func:`latent_aurocs`, :class:`SparseProbe` (Gurnee et al.), :func:`k_sparse_curve`,
  :func:`choose_k` (k by cross-validation on the train split), :func:`chosen_k_held_out` (its held-out
  score beside the CV score, flagged when they disagree);
* steering through features: ``SteeringVector.from_sae_feature`` + ``steer`` (decoder row
  added), or :func:`sae_edit` (latent edited, error term kept); :func:`input_scores` and
  :func:`output_scores` (Arad, Mueller & Belinkov);
* what a feature is: :func:`feature_view` (top-activating contexts, the logit lens of its decoder
  row), :func:`write_feature_page` (``steerlab sae-feature``), :func:`feature_section`;
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
    "activations": ("encode_latents", "latents", "site_activations"),
    "alignment": ("decoder_cosines", "reconstruction_curve", "top_aligned"),
    "compare": ("MethodComparison", "compare_methods"),
    "concepts": ("Concept", "sentiment_concept", "truth_concept"),
    "editing": ("sae_edit", "sae_splice"),
    "feature_probes": ("SparseProbe", "choose_k", "chosen_k_held_out", "cv_held_out_flag", "k_sparse_curve",
                       "latent_aurocs"),
    "feature_views": ("FeatureView", "decoder_logit_lens", "feature_section", "feature_view", "write_feature_page"),
    "loading": ("check_sae", "demo_sae_path", "load_sae", "sae_point", "shipped_demo_saes", "shipped_model_sae_path"),
    "quality": ("sae_quality",),
    "scores": ("input_scores", "output_scores"),
    "training": ("demo_corpus", "train_sae", "train_sae_on_activations"),
    "world_features": ("world_variable_table",),
}
_LAZY = {name: f"steerlab.sae.{module}" for module, names in _MODULES.items() for name in names}
__all__ = sorted(_LAZY)
__getattr__, __dir__ = lazy_exports("steerlab.sae", _LAZY)
