"""True/false statement sets about the demo world (one builder per domain).

Each builder returns the rows of one split: `train` uses entities the model saw
in labelled form, `test` uses held-out entities (known from plain facts only) or
held-out number pairs, so test statements never share an entity with train.
Every entity contributes a true and a false statement (balanced classes).

Example:
    >>> from steerlab.world.world import generate_world
    >>> ds = build_cities(generate_world(0), split="test")
    >>> ds.texts[0].endswith(" ."), set(ds.labels.tolist())
    (True, {0, 1})
"""

from __future__ import annotations

import random

import numpy as np

from steerlab.datasets.concept_dataset import ConceptDataset
from steerlab.world import statements as st
from steerlab.world import templates as tp
from steerlab.world.corpus import filler_sentence
from steerlab.world.world import World

_SPLIT_ROLE = {"train": "labelled", "test": "heldout"}


def _check_split(split: str) -> str:
    if split not in _SPLIT_ROLE:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return _SPLIT_ROLE[split]


def _truth_dataset(
    name: str, domain: str, split: str, world: World,
    rows: list[tuple[str, int, str]], gap_rng: random.Random | None = None,
) -> ConceptDataset:
    """rows: (statement without ' .', label, group). With `gap_rng`, prompts use the gap form."""
    texts, spans, prompts = [], [], []
    for statement, _, _ in rows:
        prompt = st.gap_prompt(statement, filler_sentence(gap_rng)) if gap_rng else st.direct_prompt(statement)
        text = prompt if gap_rng else st.plain(statement)
        texts.append(text)
        spans.append((0, len(statement)))
        prompts.append(prompt)
    return ConceptDataset(
        name=name,
        texts=texts,
        labels=np.array([label for _, label, _ in rows], dtype=np.int64),
        domain=domain,
        groups=[group for _, _, group in rows],
        split=split,
        spans=spans,
        verdict_prompts=prompts,
        verdict_words=tp.VERDICT_WORDS,
        metadata={"world_seed": world.seed},
    )


def _wrong(rng: random.Random, options: tuple[str, ...] | list[str], right: str) -> str:
    return rng.choice([o for o in options if o != right])


def city_rows(world: World, split: str, negated: bool, template: str | None = None) -> list[tuple[str, int, str]]:
    """(statement, label, city) rows: one true and one false statement per city of the split."""
    rng = random.Random(f"cities-{world.seed}-{split}-{negated}")
    if template is None:
        template = tp.CITY_NEGATED_MAIN_TEMPLATE if negated else tp.CITY_MAIN_TEMPLATE
    rows = []
    for city in world.cities_with_role(_check_split(split)):
        right, wrong = world.cities[city], _wrong(rng, world.countries, world.cities[city])
        # a negated statement is true when it names a wrong country
        rows.append((template.format(city=city, country=wrong if negated else right), 1, city))
        rows.append((template.format(city=city, country=right if negated else wrong), 0, city))
    return rows


def build_cities(world: World, split: str) -> ConceptDataset:
    """`demo/cities`: "varno is in keldar ." statements."""
    return _truth_dataset("demo/cities", "cities", split, world, city_rows(world, split, negated=False))


def build_neg_cities(world: World, split: str) -> ConceptDataset:
    """`demo/neg_cities`: "varno is not in keldar ." statements."""
    return _truth_dataset("demo/neg_cities", "neg_cities", split, world, city_rows(world, split, negated=True))


def build_cities_gap(world: World, split: str) -> ConceptDataset:
    """`demo/cities_gap`: city statements with another sentence before the verdict slot."""
    rng = random.Random(f"gap-{world.seed}-{split}")
    return _truth_dataset("demo/cities_gap", "cities", split, world, city_rows(world, split, negated=False), rng)


def build_cities_new_template(world: World, split: str) -> ConceptDataset:
    """`demo/cities_new_template`: "varno lies in keldar ." — a phrasing never labelled in training."""
    rows = city_rows(world, split, negated=False, template=tp.CITY_HELDOUT_TEMPLATE)
    return _truth_dataset("demo/cities_new_template", "cities", split, world, rows)


def build_larger_than(world: World, split: str, n_pairs: int = 600) -> ConceptDataset:
    """`demo/larger_than`: "37 is larger than 12 ."; test pairs never occur in training."""
    _check_split(split)
    rng = random.Random(f"larger-{world.seed}-{split}")
    pairs = sorted(
        (a, b) for a in range(tp.NUMBER_MAX + 1) for b in range(a + 1, tp.NUMBER_MAX + 1)
        if world.number_pair_is_heldout(a, b) == (split == "test")
    )
    pairs = rng.sample(pairs, min(n_pairs, len(pairs)))
    rows = []
    for small, large in pairs:
        a, b = (large, small) if rng.random() < 0.5 else (small, large)
        rows.append((tp.LARGER_TEMPLATE.format(a=a, b=b), int(a > b), f"{small}-{large}"))
    return _truth_dataset("demo/larger_than", "numbers", split, world, rows)


def build_people(world: World, split: str) -> ConceptDataset:
    """`demo/people`: "kogor is a lawyer ." statements."""
    rng = random.Random(f"people-{world.seed}-{split}")
    rows = []
    for person in world.people_with_role(_check_split(split)):
        job = world.people[person].job
        rows.append((tp.PERSON_JOB_MAIN_TEMPLATE.format(person=person, job=job), 1, person))
        rows.append((tp.PERSON_JOB_MAIN_TEMPLATE.format(person=person, job=_wrong(rng, tp.PROFESSIONS, job)), 0, person))
    return _truth_dataset("demo/people", "people", split, world, rows)


def build_objects(world: World, split: str) -> ConceptDataset:
    """`demo/objects`: "the stekpu is made of stone ." / "the stekpu is red ." statements."""
    rng = random.Random(f"objects-{world.seed}-{split}")
    rows = []
    for obj in world.objects_with_role(_check_split(split)):
        facts = world.objects[obj]
        for template, key, options in (
            (tp.OBJECT_COLOUR_TEMPLATE, "colour", tp.COLOURS),
            (tp.OBJECT_MATERIAL_TEMPLATE, "material", tp.MATERIALS),
        ):
            right = getattr(facts, key)
            rows.append((template.format(obj=obj, **{key: right}), 1, obj))
            rows.append((template.format(obj=obj, **{key: _wrong(rng, options, right)}), 0, obj))
    return _truth_dataset("demo/objects", "objects", split, world, rows)
