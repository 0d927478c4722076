"""The demo world: a seeded synthetic world, its corpus, tokenizer and the demo model's training.

Modules (one job each): `world` (fact table, `generate_world`), `corpus` (training
line stream), `statements`/`templates` (sentence forms), `tokenizer`, `packing`,
`train` (`python -m steerlab.world.train`), `evaluate` (`python -m steerlab.world.evaluate`),
`model_card`. Importing this package does not import torch.

Example:
    >>> from steerlab.world import generate_world
    >>> world = generate_world(seed=0)
    >>> len(world.countries)
    20
"""

from steerlab.world.world import ObjectFacts, Person, World, WorldConfig, generate_world


def train_demo_model(*args, **kwargs):
    """Lazy alias of `steerlab.world.train.train_demo_model` (imports torch only when called)."""
    from steerlab.world.train import train_demo_model as _train

    return _train(*args, **kwargs)


__all__ = ["ObjectFacts", "Person", "World", "WorldConfig", "generate_world", "train_demo_model"]
