"""`load(name, split)`: the built-in datasets by name.

`demo/*` sets are generated on the fly (milliseconds) from the demo world that
the shipped demo model was trained on (world seed 0); `en/*` sets are real-English
CSV files shipped in `steerlab/data/`, written by the project:

* `en/cities`, `en/neg_cities`, `en/larger_than`, `en/smaller_than`, `en/sp_en_trans`:
  true/false statements following the recipes of Marks & Tegmark, "The Geometry of
  Truth" (regenerated from their fact tables by `python -m steerlab.data.make_en_sets`);
  groups are the city, the unordered number pair ("56|72") and the Spanish word.
* `en/facts`: capitals, comparisons and science facts, each with its negation.
* `en/qa`: questions with short checkable answers (capital, currency, official
  language, continent of a country), grouped by country.

Every `en/*` truth set has `verdict_prompts` (statement + " This statement is") and
`verdict_words` ("true", "false"). Splits hold whole groups (30% of the groups test,
seed 0); sets over the same entities split alike (`en/cities` and `en/neg_cities`
test the same cities, the two number sets the same pairs).

Example:
    >>> ds = load("demo/cities", split="test")
    >>> ds.name, ds.verdict_words
    ('demo/cities', ('true', 'false'))
    >>> "demo/qa" in available() and "en/larger_than" in available()
    True
    >>> load("en/larger_than", split="test").texts[0]
    'Fifty-four is larger than fifty-one.'
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING

from steerlab.datasets.concept_dataset import ConceptDataset, QADataset

if TYPE_CHECKING:
    from steerlab.world.world import World

DEMO_WORLD_SEED = 0


@lru_cache(maxsize=4)
def demo_world(seed: int = DEMO_WORLD_SEED) -> "World":
    """The demo world of ``seed`` (cached): the facts the demo datasets and the shipped demo model share."""
    from steerlab.world.world import generate_world

    return generate_world(seed)


def _demo(builder_name: str, module: str, needs_world: bool = True) -> Callable[[str, int], ConceptDataset | QADataset]:
    def build(split: str, world_seed: int) -> ConceptDataset | QADataset:
        import importlib

        builder = getattr(importlib.import_module(f"steerlab.datasets.{module}"), builder_name)
        return builder(demo_world(world_seed), split) if needs_world else builder(split)

    return build


VERDICT_SUFFIX = " This statement is"
EN_TEST_SHARE = 0.3
# name -> (CSV file in steerlab/data, group column, domain)
_EN_TRUTH_SETS = {
    "en/facts": ("en_facts.csv", "group", "facts"),
    "en/cities": ("en_cities.csv", "city", "cities"),
    "en/neg_cities": ("en_neg_cities.csv", "city", "neg_cities"),
    "en/larger_than": ("en_larger_than.csv", "pair", "larger_than"),
    "en/smaller_than": ("en_smaller_than.csv", "pair", "smaller_than"),
    "en/sp_en_trans": ("en_sp_en_trans.csv", "spanish", "sp_en_trans"),
}


def _en_truth(name: str) -> Callable[[str, int], ConceptDataset]:
    file_name, group_column, domain = _EN_TRUTH_SETS[name]

    def build(split: str, world_seed: int) -> ConceptDataset:
        from steerlab.datasets.user_data import from_csv, split_by_group

        with resources.as_file(resources.files("steerlab.data") / file_name) as path:
            ds = from_csv(path, group_column=group_column, name=name, domain=domain)
        ds = dataclasses.replace(
            ds, spans=[(0, len(text)) for text in ds.texts],
            verdict_prompts=[text + VERDICT_SUFFIX for text in ds.texts], verdict_words=("true", "false"),
            metadata={"source": f"steerlab/data/{file_name}", "group": group_column,
                      "recipe": 'Marks & Tegmark, "The Geometry of Truth"'})
        return split_by_group(ds, split, test_share=EN_TEST_SHARE, seed=0)

    return build


def _en_qa(split: str, world_seed: int) -> QADataset:
    """`en/qa`: kinds are the question kind; ``metadata["accepted_answers"]`` maps each question to
    every accepted spelling (the answer first, then its aliases)."""
    import csv

    from steerlab.datasets.user_data import qa_from_csv, split_by_group

    with resources.as_file(resources.files("steerlab.data") / "en_qa.csv") as path:
        qa = qa_from_csv(path, group_column="group", name="en/qa")
        with open(path, encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle))
    kinds = [row["kind"] for row in rows]
    accepted = {row["question"]: [row["answer"], *[a for a in row["aliases"].split(";") if a]] for row in rows}
    qa = dataclasses.replace(qa, kinds=kinds, roles=list(kinds), metadata={
        "source": "steerlab/data/en_qa.csv", "accepted_answers": accepted,
        "roles": "the question kind (capital, currency, language, continent)",
        "frequency": "unknown for real text (0 everywhere)"})
    return split_by_group(qa, split, test_share=EN_TEST_SHARE, seed=0)


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
    **{name: _en_truth(name) for name in _EN_TRUTH_SETS},
    "en/qa": _en_qa,
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
