"""The demo model organism: training it on the demo world, measuring it, writing its card.

Modules (one job each): `train` (`python -m steerlab.organism.train`), `evaluate`
(`python -m steerlab.organism.evaluate`: verdict accuracy, QA, against the world's targets),
`model_card`. The world itself (facts, corpus, tokenizer) is `steerlab.world`; the datasets
built from it are `steerlab.datasets`. Importing this package does not import torch.
"""


def train_demo_model(*args, **kwargs):
    """Lazy alias of `steerlab.organism.train.train_demo_model` (imports torch only when called)."""
    from steerlab.organism.train import train_demo_model as _train

    return _train(*args, **kwargs)


__all__ = ["train_demo_model"]
