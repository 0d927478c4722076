"""Stage 3: steering vectors injected into forward passes and generation, and their evaluation."""

from steerlab.steering.injection import MODES, POSITIONS, SteeringStats, steer
from steerlab.steering.vector import SteeringVector

__all__ = ["MODES", "POSITIONS", "SteeringStats", "SteeringVector", "steer"]
