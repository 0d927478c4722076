"""Stage 4: the same concepts through sparse-autoencoder features (sae-lens).

* loading and checks: :func:`load_sae` (local dir, the shipped demo SAE, or a hub release);
* training on steerlab's captured activations with sae-lens' ``SAETrainer``:
  :func:`train_sae`, ``python -m steerlab.sae.train``;
* quality: :func:`sae_quality` (explained variance, L0, dead latents, CE loss spliced in);
* alignment of probe / steering directions with decoder rows: :func:`decoder_cosines`,
  :func:`reconstruction_curve`;
* feature probes: :func:`latent_aurocs`, :class:`SparseProbe` (Gurnee et al.), :func:`k_sparse_curve`;
* steering through features: ``SteeringVector.from_sae_feature`` + ``steer`` (decoder row
  added), or :func:`sae_edit` (latent edited, error term kept); :func:`input_scores` and
  :func:`output_scores` (Arad, Mueller & Belinkov);
* :func:`compare_methods` (AxBench-style detection vs steering at matched KL) and
  :func:`world_variable_table` (features matched to the demo world's variables).

sae-lens (about 7 s to import) is imported only by the functions that need it.

Example:
    >>> import steerlab
    >>> from steerlab.sae import load_sae, sae_quality, sae_edit, demo_corpus
    >>> model = steerlab.load_model("demo")                                   # doctest: +SKIP
    >>> sae = load_sae("demo", model=model)                                   # doctest: +SKIP
    >>> sae_quality(model, sae, demo_corpus(300, seed=999))["explained_variance"]  # doctest: +SKIP
    0.97
"""

from steerlab.sae.activations import encode, latents, site_activations
from steerlab.sae.alignment import decoder_cosines, reconstruction_curve, top_aligned
from steerlab.sae.compare import compare_methods
from steerlab.sae.concepts import Concept, sentiment_concept, truth_concept
from steerlab.sae.editing import sae_edit, sae_splice
from steerlab.sae.feature_probes import SparseProbe, k_sparse_curve, latent_aurocs
from steerlab.sae.loading import check_sae, demo_sae_path, load_sae, sae_point, shipped_demo_saes
from steerlab.sae.quality import sae_quality
from steerlab.sae.scores import input_scores, output_scores
from steerlab.sae.training import demo_corpus, train_sae
from steerlab.sae.world_features import world_variable_table

__all__ = [
    "Concept", "SparseProbe", "check_sae", "compare_methods", "decoder_cosines", "demo_corpus", "demo_sae_path",
    "encode", "input_scores", "k_sparse_curve", "latent_aurocs", "latents", "load_sae", "output_scores",
    "reconstruction_curve", "sae_edit", "sae_point", "sae_quality", "sae_splice", "sentiment_concept",
    "shipped_demo_saes", "site_activations", "top_aligned", "train_sae", "truth_concept", "world_variable_table",
]
