"""Stage 3: steering vectors injected into forward passes and generation, and their evaluation.

Methods: ActAdd (Turner et al., "Activation Addition"), CAA (Rimsky et al., "Steering
Llama 2 via Contrastive Activation Addition"), directional ablation, and RAPTOR's
target-probability edit (Gao et al., "RAPTOR: Ridge-Adaptive Logistic Probes").
"""

from steerlab.steering.evaluation import (SteeringResult, SweepResult, evaluate, flip_rate, judged_generations,
                                          random_control, sweep)
from steerlab.steering.figures import plot_generations, plot_sweep
from steerlab.steering.injection import MODES, POSITIONS, SteeringStats, steer
from steerlab.steering.metrics import (kl_divergence, logprob_difference, mean_nll, perplexity, probe_scores, token_logprobs,
                                       word_rate)
from steerlab.steering.vector import SteeringVector

__all__ = ["MODES", "POSITIONS", "SteeringResult", "SteeringStats", "SteeringVector", "SweepResult", "evaluate",
           "flip_rate", "judged_generations", "kl_divergence", "logprob_difference", "perplexity", "plot_generations",
           "plot_sweep", "probe_scores", "random_control", "steer", "sweep", "token_logprobs", "word_rate"]
