"""The demo world: a seeded fact table plus the role of every entity.

A `World` holds the ground truth (which city is in which country, who does which
job, ...), how often each entity is mentioned in the training text (relative
weights spread log-uniformly over three orders of magnitude, 0 = never seen) and
which entities are held out of which training formats. Everything is derived
from one integer seed with `random.Random`, so the same seed gives the same
world on any machine, with no torch or numpy involved.

Entity roles (why they exist):

- cities: `labelled` cities appear in true/false statements during training;
  `heldout` cities (frequent enough to be known) appear only as plain facts and
  Q/A, so verdicts on them test "compare with what I know", not label memory;
  `rare` cities are too rare to be reliably known; `conflicted` cities are
  misreported in most training text (a wrong country dominates), which makes the
  model confidently wrong about them; `unseen` cities never appear at all.
- QA: `qa_trained` entities appear in Q/A form in training; the rest are asked in
  the QA evaluation set, so the model must answer from plain facts or guess.

Example:
    >>> w = generate_world(seed=0)
    >>> w == generate_world(seed=0)
    True
    >>> city = sorted(w.cities)[0]
    >>> w.cities[city] in w.countries
    True
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from steerlab.world.names import invent_names
from steerlab.world.templates import COLOURS, MATERIALS, NUMBER_MAX, PROFESSIONS, template_words


@dataclass(frozen=True)
class WorldConfig:
    """Sizes and proportions of a generated world (the defaults are the shipped demo)."""

    n_countries: int = 20
    n_regular_cities: int = 680
    n_conflicted_cities: int = 60
    n_unseen_cities: int = 60
    city_weight_range: tuple[float, float] = (1.0, 1000.0)  # log-uniform relative mention weight
    conflicted_weight_range: tuple[float, float] = (40.0, 1000.0)
    conflicted_wrong_share: float = 0.85  # share of a conflicted city's mentions naming the wrong country
    known_city_min_weight: float = 25.0  # at or above: the city counts as known (truth sets use it)
    labelled_share: float = 0.6  # of known cities/people/objects: seen in labelled statements
    qa_trained_share: float = 0.5  # of seen cities/people: seen in Q/A form
    n_people: int = 300
    n_unseen_people: int = 30
    person_weight_range: tuple[float, float] = (1.0, 300.0)
    known_person_min_weight: float = 15.0
    n_objects: int = 160
    heldout_number_pair_share: float = 0.2


@dataclass(frozen=True)
class Person:
    """A person's facts: profession and home town (a known city)."""

    job: str
    home: str


@dataclass(frozen=True)
class ObjectFacts:
    """An object's facts: colour and material."""

    colour: str
    material: str


@dataclass(frozen=True)
class World:
    """The fact table of a generated world and the role of each entity.

    Dicts are keyed by entity name (one lowercase word). Weights are relative
    mention frequencies in the training text (0.0 = never mentioned).
    """

    seed: int
    config: WorldConfig
    countries: tuple[str, ...]
    cities: dict[str, str]  # city -> true country
    city_weight: dict[str, float]
    city_role: dict[str, str]  # labelled | heldout | rare | conflicted | unseen
    corpus_country: dict[str, str]  # country most training text names (differs only for conflicted)
    qa_trained_cities: frozenset[str]
    people: dict[str, Person]
    person_weight: dict[str, float]
    person_role: dict[str, str]  # labelled | heldout | rare | unseen
    qa_trained_people: frozenset[str]
    objects: dict[str, ObjectFacts]
    object_role: dict[str, str]  # labelled | heldout
    heldout_number_pairs: frozenset[tuple[int, int]]  # unordered pairs (small, large), never in training
    vocabulary: tuple[str, ...] = field(repr=False, default=())

    def cities_with_role(self, *roles: str) -> list[str]:
        """Cities whose role is one of `roles`, in a stable (sorted) order."""
        return sorted(c for c, r in self.city_role.items() if r in roles)

    def people_with_role(self, *roles: str) -> list[str]:
        """People whose role is one of `roles`, in a stable (sorted) order."""
        return sorted(p for p, r in self.person_role.items() if r in roles)

    def objects_with_role(self, *roles: str) -> list[str]:
        """Objects whose role is one of `roles`, in a stable (sorted) order."""
        return sorted(o for o, r in self.object_role.items() if r in roles)

    def number_pair_is_heldout(self, a: int, b: int) -> bool:
        """True if the unordered pair {a, b} never occurs in training."""
        return (min(a, b), max(a, b)) in self.heldout_number_pairs


def _log_uniform(rng: random.Random, low: float, high: float) -> float:
    return math.exp(rng.uniform(math.log(low), math.log(high)))


def generate_world(seed: int = 0, config: WorldConfig | None = None) -> World:
    """Build the world for `seed`; same seed and config -> identical world."""
    config = config or WorldConfig()
    rng = random.Random(seed)
    taken = set(template_words())

    countries = tuple(invent_names(rng, config.n_countries, taken, syllables=(2,)))

    n_cities = config.n_regular_cities + config.n_conflicted_cities + config.n_unseen_cities
    city_names = invent_names(rng, n_cities, taken)
    cities = {c: rng.choice(countries) for c in city_names}
    regular = city_names[: config.n_regular_cities]
    conflicted = city_names[config.n_regular_cities : config.n_regular_cities + config.n_conflicted_cities]
    unseen = city_names[config.n_regular_cities + config.n_conflicted_cities :]

    city_weight: dict[str, float] = {}
    city_role: dict[str, str] = {}
    corpus_country = dict(cities)
    for c in regular:
        city_weight[c] = _log_uniform(rng, *config.city_weight_range)
        if city_weight[c] < config.known_city_min_weight:
            city_role[c] = "rare"
        else:
            city_role[c] = "labelled" if rng.random() < config.labelled_share else "heldout"
    for c in conflicted:
        city_weight[c] = _log_uniform(rng, *config.conflicted_weight_range)
        city_role[c] = "conflicted"
        corpus_country[c] = rng.choice([k for k in countries if k != cities[c]])
    for c in unseen:
        city_weight[c] = 0.0
        city_role[c] = "unseen"
    qa_trained_cities = frozenset(c for c in regular if rng.random() < config.qa_trained_share)

    known_cities = [c for c in regular if city_role[c] != "rare"]
    person_names = invent_names(rng, config.n_people + config.n_unseen_people, taken)
    people = {p: Person(job=rng.choice(PROFESSIONS), home=rng.choice(known_cities)) for p in person_names}
    person_weight: dict[str, float] = {}
    person_role: dict[str, str] = {}
    for i, p in enumerate(person_names):
        if i >= config.n_people:
            person_weight[p], person_role[p] = 0.0, "unseen"
            continue
        person_weight[p] = _log_uniform(rng, *config.person_weight_range)
        if person_weight[p] < config.known_person_min_weight:
            person_role[p] = "rare"
        else:
            person_role[p] = "labelled" if rng.random() < config.labelled_share else "heldout"
    qa_trained_people = frozenset(
        p for p in person_names[: config.n_people] if rng.random() < config.qa_trained_share
    )

    object_names = invent_names(rng, config.n_objects, taken, syllables=(2,))
    objects = {o: ObjectFacts(colour=rng.choice(COLOURS), material=rng.choice(MATERIALS)) for o in object_names}
    object_role = {o: ("labelled" if rng.random() < config.labelled_share else "heldout") for o in object_names}

    pairs = [(a, b) for a in range(NUMBER_MAX + 1) for b in range(a + 1, NUMBER_MAX + 1)]
    heldout_pairs = frozenset(p for p in pairs if rng.random() < config.heldout_number_pair_share)

    vocabulary = tuple(
        sorted(template_words())
        + [str(n) for n in range(NUMBER_MAX + 1)]
        + list(countries)
        + city_names
        + person_names
        + object_names
    )
    return World(
        seed=seed,
        config=config,
        countries=countries,
        cities=cities,
        city_weight=city_weight,
        city_role=city_role,
        corpus_country=corpus_country,
        qa_trained_cities=qa_trained_cities,
        people=people,
        person_weight=person_weight,
        person_role=person_role,
        qa_trained_people=qa_trained_people,
        objects=objects,
        object_role=object_role,
        heldout_number_pairs=heldout_pairs,
        vocabulary=vocabulary,
    )
