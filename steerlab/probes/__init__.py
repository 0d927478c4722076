"""Stage 2: concept probes, truth directions, their geometry and layer sweeps.

* :class:`RaptorProbe`: RAPTOR ridge-adaptive logistic probes (Gao et al., "RAPTOR:
  Ridge-Adaptive Logistic Probes"), all layers and the whole C grid in one torch solve.
* Truth directions (Marks & Tegmark, "The Geometry of Truth"; Ying et al., "The
  Truthfulness Spectrum Hypothesis"): :class:`DiffMeans` (mass-mean), :class:`LDA`,
  :class:`PairedPCA`, :class:`LogisticDirection`; same interface as RaptorProbe.
* :class:`GCSProbe`: the Gaussian Concept Subspace baseline of the RAPTOR paper (1,000
  logistic probes on 10% subsamples, one batched solve).
* :func:`probe_sweep` (every method x every layer), :func:`transfer_matrix` (and
  :func:`transfer_by_layer`) with Mahalanobis
  cosine, :func:`directional_stability`, :func:`penalty_path`, erasure (LEACE, INLP),
  figures, save/load (:func:`load_probe`).
* Token-level hallucination probes live with their losses and workflow in
  :mod:`steerlab.hallucination` (``HallucinationProbe``, ``LinearTokenProbe``); they share
  this package's estimator base (:class:`BinaryClassifier`), metrics and input checks.

Nothing here imports transformers, TransformerLens or nnsight; plotly and
concept-erasure load on first use.

Example:
    >>> from steerlab.probes import RaptorProbe, make_teacher_student
    >>> X, y, _ = make_teacher_student(300, 16, n_layers=4, seed=0)
    >>> probe = RaptorProbe(Cs=30).fit(X, y)
    >>> probe.coef_.shape, probe.C_.shape, probe.predict_proba(X).shape
    ((4, 16), (4,), (300, 4, 2))
"""

from steerlab.probes.base import LinearProbe, load_probe
from steerlab.probes.estimator import BinaryClassifier
from steerlab.probes.directions import LDA, DiffMeans, Direction, PairedPCA
from steerlab.probes.erasure import (INLPEraser, LeaceEraser, erase_from_domains, inlp_rounds_curve,
                                     probe_after_erasure)
from steerlab.probes.figures import (layer_metric_figure, penalty_tradeoff_figure, projection_figure, transfer_heatmap,
                                     transfer_scatter)
from steerlab.probes.gcs import GCSProbe
from steerlab.probes.metrics import (TemperatureScaler, accuracy, auroc, expected_calibration_error, fit_temperature,
                                    recall_at_fpr, roc_curve)
from steerlab.probes.raptor import LogisticDirection, RaptorProbe, c_grid
from steerlab.probes.stability import PenaltyPath, StabilityResult, directional_stability, penalty_path
from steerlab.probes.sweep import METHODS, ProbeSweep, probe_sweep
from steerlab.probes.synthetic import make_teacher_student
from steerlab.probes.transfer import (LayerTransfer, TransferResult, linear_fit_r2, mahalanobis_cosine,
                                      transfer_by_layer, transfer_matrix)
from steerlab.probes.validation import NotFittedError, ProbeInputError

MassMean = DiffMeans  # the name used in "The Geometry of Truth"

__all__ = [
    "BinaryClassifier", "DiffMeans", "Direction", "GCSProbe", "INLPEraser", "LDA", "LayerTransfer", "LeaceEraser",
    "LinearProbe",
    "LogisticDirection", "METHODS", "MassMean", "NotFittedError", "PairedPCA", "PenaltyPath",
    "ProbeInputError", "RaptorProbe", "StabilityResult", "ProbeSweep", "TemperatureScaler",
    "TransferResult", "accuracy", "auroc", "c_grid", "directional_stability", "erase_from_domains",
    "expected_calibration_error",
    "fit_temperature", "inlp_rounds_curve", "layer_metric_figure", "linear_fit_r2", "load_probe", "make_teacher_student",
    "mahalanobis_cosine", "penalty_path", "penalty_tradeoff_figure", "probe_after_erasure", "projection_figure",
    "recall_at_fpr", "roc_curve", "probe_sweep", "transfer_by_layer", "transfer_heatmap", "transfer_matrix",
    "transfer_scatter",
]
