"""`demo/qa`: questions the demo model never saw in Q/A form, for hallucination work.

Asks about every city and person that is not in the Q/A part of the training
text: known entities (answerable from plain facts), rare ones (mentioned a few
times, often guessed wrong), conflicted cities (training text mostly names a
wrong country: confidently wrong answers) and never-seen entities (always a
plausible wrong guess). Split by entity, half train half test.

Example:
    >>> from steerlab.world.world import generate_world
    >>> qa = build_qa(generate_world(0), split="test")
    >>> qa.texts[0].endswith("a :"), len(qa) == len(qa.answers)
    (True, True)
"""

from __future__ import annotations

import random

import numpy as np

from steerlab.datasets.concept_dataset import QADataset
from steerlab.world import templates as tp
from steerlab.world.world import World


def build_qa(world: World, split: str) -> QADataset:
    """The train or test half (by entity) of the QA evaluation questions."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    rows: list[tuple[str, str, str, str, str, float]] = []  # prompt, answer, entity, kind, role, weight
    for city in sorted(world.cities):
        if city not in world.qa_trained_cities:
            rows.append((tp.CITY_QUESTION.format(city=city), world.cities[city], city, "city",
                         world.city_role[city], world.city_weight[city]))
    for person in sorted(world.people):
        if person not in world.qa_trained_people:
            rows.append((tp.PERSON_QUESTION.format(person=person), world.people[person].job, person, "person",
                         world.person_role[person], world.person_weight[person]))
    rng = random.Random(f"qa-split-{world.seed}")
    in_test = {entity: rng.random() < 0.5 for _, _, entity, _, _, _ in rows}
    rows = [r for r in rows if in_test[r[2]] == (split == "test")]
    return QADataset(
        name="demo/qa",
        texts=[r[0] for r in rows],
        answers=[r[1] for r in rows],
        groups=[r[2] for r in rows],
        kinds=[r[3] for r in rows],
        roles=[r[4] for r in rows],
        frequency=np.array([r[5] for r in rows], dtype=np.float64),
        split=split,
        metadata={"world_seed": world.seed, "frequency": "relative mention weight in training text, 0 = never seen"},
    )
