"""The demo world: a seeded synthetic world with known facts, its corpus and tokenizer.

Modules (one job each): `world` (fact table, `generate_world`), `corpus` (training
line stream), `statements`/`templates` (sentence forms), `tokenizer`, `packing`.
The model trained on it lives in `steerlab.organism`. Importing this package does not import torch.

Example:
    >>> from steerlab.world import generate_world
    >>> world = generate_world(seed=0)
    >>> len(world.countries)
    20
"""

from steerlab.world.world import ObjectFacts, Person, World, WorldConfig, generate_world


__all__ = ["ObjectFacts", "Person", "World", "WorldConfig", "generate_world"]
