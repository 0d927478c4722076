"""Stage 3: steering vectors injected into forward passes and generation, and their evaluation.

Methods: ActAdd (Turner et al., "Activation Addition"), CAA (Rimsky et al., "Steering
Llama 2 via Contrastive Activation Addition"), directional ablation, and RAPTOR's
target-probability edit (Gao et al., "RAPTOR: Ridge-Adaptive Logistic Probes").
"""

from steerlab.steering.evaluation import (KL_BUDGET, FlipRate, NextTokenEfficacy, SteeringResult, SteeringSweep, evaluate,
                                          evaluate_many, flip_rate, judged_generations, random_control, steering_sweep,
                                          word_set_flip_rate)
from steerlab.steering.figures import plot_generations, plot_sweep
from steerlab.steering.injection import MODES, STEER_POSITIONS, SteeringStats, steer
from steerlab.steering.metrics import (kl_divergence, logprob_difference, mean_nll, perplexity, probe_scores, token_logprobs,
                                       word_rate)
from steerlab.steering.vector import SteeringVector

__all__ = ["KL_BUDGET", "MODES", "STEER_POSITIONS", "FlipRate", "NextTokenEfficacy", "SteeringResult", "SteeringStats",
           "SteeringVector", "SteeringSweep", "evaluate", "evaluate_many", "flip_rate", "word_set_flip_rate", "judged_generations", "kl_divergence", "logprob_difference", "perplexity", "plot_generations",
           "plot_sweep", "probe_scores", "random_control", "steer", "steering_sweep", "token_logprobs", "word_rate"]
