"""Loading models behind one adapter interface (see :mod:`steerlab.models.adapter`)."""

from steerlab.models.adapter import BACKENDS, ModelAdapter, ModelLike, SiteFn, load_model
from steerlab.models.architectures import ARCHITECTURES
from steerlab.models.tokenization import TokenBatch

__all__ = ["ARCHITECTURES", "BACKENDS", "ModelAdapter", "ModelLike", "SiteFn", "TokenBatch", "load_model"]
