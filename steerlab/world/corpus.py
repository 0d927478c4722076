"""The training text of the demo world: an endless, seeded stream of lines.

Each line is one short document (a fact, a Q/A pair, a labelled statement, a
review...). Lines are drawn fresh every time, so a false labelled statement
names a random wrong country each time: the model cannot memorise
"statement -> label" and has to learn "compare with the fact I know" (the
feasibility prototype's main trap). Held-out entities, templates and number
pairs are never drawn.

Example:
    >>> from steerlab.world.world import generate_world
    >>> stream = CorpusStream(generate_world(seed=0), seed=1)
    >>> lines = [stream.next_line() for _ in range(3)]
    >>> all(isinstance(line, str) and line for line in lines)
    True
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence

from steerlab.world import statements as st
from steerlab.world import templates as tp
from steerlab.world.world import World

# Share of each line kind in the stream. Labelled statements are sampled
# uniformly over their entities (flat label frequency); plain facts and Q/A
# follow the entities' log-uniform mention weights.
CORPUS_MIX: dict[str, float] = {
    "city_fact": 0.20,
    "city_qa": 0.05,
    "city_labelled": 0.22,
    "city_negated": 0.15,
    "number_labelled": 0.15,
    "number_sequence": 0.02,
    "person_fact": 0.06,
    "person_qa": 0.02,
    "person_labelled": 0.03,
    "object_fact": 0.03,
    "object_labelled": 0.02,
    "review": 0.03,
    "topic": 0.02,
}
# Curriculum, in three phases:
# 1. facts only (no labelled entity statements), so the model knows the facts when
#    labels arrive; judging "X is in Y" by reusing that knowledge is then cheaper than
#    memorising a verdict per city (mixed from the start, a run reached 96% on
#    labelled cities and 69% on held-out ones);
# 2. + labelled statements (not negated): the comparison circuit forms (held-out
#    cities 85% after 800 steps);
# 3. + negated statements: introduced together with phase 2, negation was memorised
#    per city (93% labelled, 51% held-out); after it, negation can reuse the comparison.
FACTS_PHASE_DROPPED = ("city_labelled", "city_negated", "person_labelled", "object_labelled")
NEGATION_KINDS = ("city_negated",)


def facts_phase_mix(mix: dict[str, float] | None = None) -> dict[str, float]:
    """The corpus mix without labelled entity statements (phase 1 of training)."""
    return {k: v for k, v in (mix or CORPUS_MIX).items() if k not in FACTS_PHASE_DROPPED}


def affirmative_phase_mix(mix: dict[str, float] | None = None) -> dict[str, float]:
    """The corpus mix without negated statements (phase 2 of training)."""
    return {k: v for k, v in (mix or CORPUS_MIX).items() if k not in NEGATION_KINDS}


SMALLER_SHARE = 0.0  # "a is smaller than b" flips the comparison: an XOR that slows learning a lot
GAP_SHARE = 0.3  # share of labelled statements in the gap form
RATING_SHARE = 0.4  # share of reviews followed by "rating : good/bad"
TOPIC_LABEL_SHARE = 0.3


class _WeightedPicker:
    """Draw items with probability proportional to fixed weights (zero weights never drawn)."""

    def __init__(self, items: Sequence[str], weights: Sequence[float]) -> None:
        kept = [(i, w) for i, w in zip(items, weights) if w > 0]
        self.items = [i for i, _ in kept]
        self.cum_weights = list(itertools.accumulate(w for _, w in kept))

    def __call__(self, rng: random.Random) -> str:
        return rng.choices(self.items, cum_weights=self.cum_weights)[0]


def review_sentence(rng: random.Random, positive: bool, template: str | None = None) -> str:
    """A review-like sentence of the given sentiment (without final full stop)."""
    adjectives = tp.POSITIVE_ADJECTIVES if positive else tp.NEGATIVE_ADJECTIVES
    verbs = tp.POSITIVE_VERBS if positive else tp.NEGATIVE_VERBS
    adj, adj2 = rng.sample(adjectives, 2)
    template = template or rng.choice(tp.REVIEW_TRAIN_TEMPLATES)
    return template.format(thing=rng.choice(tp.REVIEW_THINGS), adj=adj, adj2=adj2, verb=rng.choice(verbs))


def topic_sentence(rng: random.Random, sport: bool) -> str:
    """A sentence about sport (True) or cooking (False), without final full stop."""
    subjects, verbs, objects = (
        (tp.SPORT_SUBJECTS, tp.SPORT_VERBS, tp.SPORT_OBJECTS)
        if sport
        else (tp.FOOD_SUBJECTS, tp.FOOD_VERBS, tp.FOOD_OBJECTS)
    )
    template = rng.choice(tp.TOPIC_TEMPLATES)
    return template.format(subj=rng.choice(subjects), verb=rng.choice(verbs), obj=rng.choice(objects))


def filler_sentence(rng: random.Random) -> str:
    """Text put between a statement and its verdict in the gap form."""
    u = rng.random()
    if u < 0.5:
        return rng.choice(tp.NEUTRAL_FILLERS)
    if u < 0.75:
        return review_sentence(rng, positive=rng.random() < 0.5)
    return topic_sentence(rng, sport=rng.random() < 0.5)


class CorpusStream:
    """Endless seeded stream of training lines drawn from `world`."""

    def __init__(self, world: World, seed: int = 0, mix: dict[str, float] | None = None) -> None:
        self.world = world
        self.rng = random.Random(seed)
        self.set_mix(mix or CORPUS_MIX)
        cities = sorted(world.cities)
        self._city_by_weight = _WeightedPicker(cities, [world.city_weight[c] for c in cities])
        qa_cities = sorted(world.qa_trained_cities)
        self._qa_city_by_weight = _WeightedPicker(qa_cities, [world.city_weight[c] for c in qa_cities])
        self._labelled_cities = world.cities_with_role("labelled")
        people = sorted(world.people)
        self._person_by_weight = _WeightedPicker(people, [world.person_weight[p] for p in people])
        qa_people = sorted(world.qa_trained_people)
        self._qa_person_by_weight = _WeightedPicker(qa_people, [world.person_weight[p] for p in qa_people])
        self._labelled_people = world.people_with_role("labelled")
        self._objects = sorted(world.objects)
        self._labelled_objects = world.objects_with_role("labelled")

    def set_mix(self, mix: dict[str, float]) -> None:
        """Change the share of each line kind from now on (used by the training curriculum)."""
        self.negation_enabled = any(k in mix for k in NEGATION_KINDS)
        self._kinds = list(mix)
        self._kind_cum = list(itertools.accumulate(mix.values()))

    # -- line kinds ------------------------------------------------------------
    def _labelled(self, statement: str, is_true: bool) -> str:
        if self.rng.random() < GAP_SHARE:
            prompt = st.gap_prompt(statement, filler_sentence(self.rng))
        else:
            prompt = st.direct_prompt(statement)
        return st.with_verdict(prompt, is_true)

    def _other(self, options: Sequence[str], avoid: str) -> str:
        while True:
            pick = self.rng.choice(options)
            if pick != avoid:
                return pick

    def city_fact(self) -> str:
        w, rng = self.world, self.rng
        city = self._city_by_weight(rng)
        country = w.cities[city]
        if w.city_role[city] == "conflicted" and rng.random() < w.config.conflicted_wrong_share:
            country = w.corpus_country[city]
        return st.plain(rng.choice(tp.CITY_FACT_TEMPLATES).format(city=city, country=country))

    def city_qa(self) -> str:
        city = self._qa_city_by_weight(self.rng)
        return f"{tp.CITY_QUESTION.format(city=city)} {self.world.cities[city]} ."

    def city_labelled(self) -> str:
        city = self.rng.choice(self._labelled_cities)
        is_true = self.rng.random() < 0.5
        true_country = self.world.cities[city]
        country = true_country if is_true else self._other(self.world.countries, true_country)
        template = self.rng.choice(tp.CITY_LABELLED_TEMPLATES)
        return self._labelled(template.format(city=city, country=country), is_true)

    def city_negated(self) -> str:
        city = self.rng.choice(self._labelled_cities)
        is_true = self.rng.random() < 0.5  # truth of the negated statement
        true_country = self.world.cities[city]
        country = self._other(self.world.countries, true_country) if is_true else true_country
        template = self.rng.choice(tp.CITY_NEGATED_TEMPLATES)
        return self._labelled(template.format(city=city, country=country), is_true)

    def number_labelled(self) -> str:
        rng = self.rng
        while True:
            a, b = rng.randint(0, tp.NUMBER_MAX), rng.randint(0, tp.NUMBER_MAX)
            if a != b and not self.world.number_pair_is_heldout(a, b):
                break
        if rng.random() < SMALLER_SHARE:
            return self._labelled(tp.SMALLER_TEMPLATE.format(a=a, b=b), a < b)
        return self._labelled(tp.LARGER_TEMPLATE.format(a=a, b=b), a > b)

    def number_sequence(self) -> str:
        """A run of consecutive numbers ("count : 41 42 43 44 ."), which teaches their order."""
        length = self.rng.randint(3, 8)
        start = self.rng.randint(0, tp.NUMBER_MAX + 1 - length)
        return f"{tp.COUNT_PREFIX} " + " ".join(str(n) for n in range(start, start + length)) + " ."

    def person_fact(self) -> str:
        person = self._person_by_weight(self.rng)
        facts = self.world.people[person]
        if self.rng.random() < 0.6:
            return st.plain(self.rng.choice(tp.PERSON_JOB_TEMPLATES).format(person=person, job=facts.job))
        return st.plain(tp.PERSON_HOME_TEMPLATE.format(person=person, city=facts.home))

    def person_qa(self) -> str:
        person = self._qa_person_by_weight(self.rng)
        return f"{tp.PERSON_QUESTION.format(person=person)} {self.world.people[person].job} ."

    def person_labelled(self) -> str:
        person = self.rng.choice(self._labelled_people)
        true_job = self.world.people[person].job
        is_true = self.rng.random() < 0.5
        if self.negation_enabled and self.rng.random() < 0.3:  # negated form
            job = self._other(tp.PROFESSIONS, true_job) if is_true else true_job
            return self._labelled(tp.PERSON_JOB_NEGATED_TEMPLATE.format(person=person, job=job), is_true)
        job = true_job if is_true else self._other(tp.PROFESSIONS, true_job)
        return self._labelled(tp.PERSON_JOB_MAIN_TEMPLATE.format(person=person, job=job), is_true)

    def object_fact(self) -> str:
        obj = self.rng.choice(self._objects)
        facts = self.world.objects[obj]
        if self.rng.random() < 0.5:
            return st.plain(tp.OBJECT_COLOUR_TEMPLATE.format(obj=obj, colour=facts.colour))
        return st.plain(tp.OBJECT_MATERIAL_TEMPLATE.format(obj=obj, material=facts.material))

    def object_labelled(self) -> str:
        obj = self.rng.choice(self._labelled_objects)
        facts = self.world.objects[obj]
        is_true = self.rng.random() < 0.5
        if self.rng.random() < 0.5:
            colour = facts.colour if is_true else self._other(tp.COLOURS, facts.colour)
            return self._labelled(tp.OBJECT_COLOUR_TEMPLATE.format(obj=obj, colour=colour), is_true)
        material = facts.material if is_true else self._other(tp.MATERIALS, facts.material)
        return self._labelled(tp.OBJECT_MATERIAL_TEMPLATE.format(obj=obj, material=material), is_true)

    def review(self) -> str:
        positive = self.rng.random() < 0.5
        sentence = review_sentence(self.rng, positive)
        if self.rng.random() < RATING_SHARE:
            return f"{sentence} . {tp.RATING_TAIL} {tp.RATING_WORDS[0] if positive else tp.RATING_WORDS[1]}"
        return st.plain(sentence)

    def topic(self) -> str:
        sport = self.rng.random() < 0.5
        sentence = topic_sentence(self.rng, sport)
        if self.rng.random() < TOPIC_LABEL_SHARE:
            return f"{sentence} . {tp.TOPIC_TAIL} {tp.TOPIC_WORDS[0] if sport else tp.TOPIC_WORDS[1]}"
        return st.plain(sentence)

    # -- stream ------------------------------------------------------------------
    def next_line(self) -> str:
        """One training line of a kind drawn from the mix."""
        kind = self.rng.choices(self._kinds, cum_weights=self._kind_cum)[0]
        return getattr(self, kind)()
