"""Stage 3: steering vectors injected into forward passes and generation, and their evaluation.

Methods: ActAdd (Turner et al., "Activation Addition"), CAA (Rimsky et al., "Steering
Llama 2 via Contrastive Activation Addition"), directional ablation, and RAPTOR's
target-probability edit (Gao et al., "RAPTOR: Ridge-Adaptive Logistic Probes").
"""

from steerlab.steering.evaluation import (KL_BUDGET, FlipRate, NextTokenEfficacy, SteeringResult, SweepResult, evaluate,
                                          evaluate_many, flip_rate, judged_generations, random_control, sweep,
                                          word_set_flip_rate)
from steerlab.steering.figures import plot_generations, plot_sweep
from steerlab.steering.injection import MODES, POSITIONS, SteeringStats, steer
from steerlab.steering.metrics import (kl_divergence, logprob_difference, mean_nll, perplexity, probe_scores, token_logprobs,
                                       word_rate)
from steerlab.steering.vector import SteeringVector

__all__ = ["KL_BUDGET", "MODES", "POSITIONS", "FlipRate", "NextTokenEfficacy", "SteeringResult", "SteeringStats",
           "SteeringVector", "SweepResult", "evaluate", "evaluate_many", "flip_rate", "word_set_flip_rate", "judged_generations", "kl_divergence", "logprob_difference", "perplexity", "plot_generations",
           "plot_sweep", "probe_scores", "random_control", "steer", "sweep", "token_logprobs", "word_rate"]
