"""`load(name, split)`: the built-in datasets by name.

`demo/*` sets are generated on the fly (milliseconds) from the demo world that
the shipped demo model was trained on (world seed 0); `english/*` sets are CSV
files shipped in `steerlab/data/`.

Example:
    >>> ds = load("demo/cities", split="test")
    >>> ds.name, ds.verdict_words
    ('demo/cities', ('true', 'false'))
    >>> "demo/qa" in available()
    True
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from importlib import resources

from steerlab.datasets.concept_dataset import ConceptDataset, QADataset

DEMO_WORLD_SEED = 0


@lru_cache(maxsize=4)
def _world(seed: int):
    from steerlab.world.world import generate_world

    return generate_world(seed)


def _demo(builder_name: str, module: str, needs_world: bool = True) -> Callable[[str, int], ConceptDataset | QADataset]:
    def build(split: str, world_seed: int) -> ConceptDataset | QADataset:
        import importlib

        builder = getattr(importlib.import_module(f"steerlab.datasets.{module}"), builder_name)
        return builder(_world(world_seed), split) if needs_world else builder(split)

    return build


def _english_facts(split: str, world_seed: int) -> ConceptDataset:
    from steerlab.datasets.user_data import from_csv, split_by_group

    with resources.as_file(resources.files("steerlab.data") / "english_facts.csv") as path:
        ds = from_csv(path, group_column="group", name="english/facts", domain="english_facts")
    return split_by_group(ds, split, test_share=0.3, seed=0)


_REGISTRY: dict[str, Callable[[str, int], ConceptDataset | QADataset]] = {
    "demo/cities": _demo("build_cities", "demo_truth"),
    "demo/neg_cities": _demo("build_neg_cities", "demo_truth"),
    "demo/cities_gap": _demo("build_cities_gap", "demo_truth"),
    "demo/cities_new_template": _demo("build_cities_new_template", "demo_truth"),
    "demo/larger_than": _demo("build_larger_than", "demo_truth"),
    "demo/people": _demo("build_people", "demo_truth"),
    "demo/objects": _demo("build_objects", "demo_truth"),
    "demo/sentiment": _demo("build_sentiment", "demo_concepts", needs_world=False),
    "demo/topic": _demo("build_topic", "demo_concepts", needs_world=False),
    "demo/qa": _demo("build_qa", "demo_qa"),
    "english/facts": _english_facts,
}


def available() -> list[str]:
    """Names accepted by `load`."""
    return sorted(_REGISTRY)


def load(name: str, split: str = "train", world_seed: int = DEMO_WORLD_SEED) -> ConceptDataset | QADataset:
    """A built-in dataset split ("train" or "test"; entities never overlap between them).

    `world_seed` only matters for `demo/*` sets: keep the default for the shipped
    demo model, or pass the seed a self-trained model used (see its world.json).
    """
    if name not in _REGISTRY:
        raise KeyError(f"unknown dataset {name!r}; available: {', '.join(available())}")
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return _REGISTRY[name](split, world_seed)
