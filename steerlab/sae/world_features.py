"""Which SAE features correspond to variables of the demo world (ground truth is known).

For each value of a world variable (each country, each sentiment, each topic), the
feature whose activation best detects "this text has that value" (AUROC), read at one
token position:

* ``country (answer slot)``: "q : where is {city} ? a :" at the last token, labelled by
  the city's true country: does one feature carry "the answer is country c"?
* ``country (country token)``: "{city} is in {country} ." at the country token;
* ``sentiment`` / ``topic``: review and sport/cooking sentences at their last token;
* ``truth``: held-out city statements at their last token.

The AUROCs are IN-SAMPLE: the best of ``d_sae`` latents is chosen and scored on the same
texts, so they are optimistic (with 512 latents and a few positives, some latent fits by
chance); ``runner_up_in_sample_auroc`` shows how far ahead the chosen one is. Read them as
"a latent lines up with this value", not as a held-out detection score.

Example:
    >>> rows = world_variable_table(model, sae)                                   # doctest: +SKIP
    >>> [r for r in rows if r["variable"] == "country (country token)"][0]       # doctest: +SKIP
    {'variable': 'country (country token)', 'value': 'bunai', 'feature': 17, 'in_sample_auroc': 1.0, ...}
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from steerlab.datasets import load
from steerlab.datasets import demo_world
from steerlab.sae.activations import latents
from steerlab.sae.feature_probes import latent_aurocs
from steerlab.world import templates as tp

if TYPE_CHECKING:
    from sae_lens import SAE
    from steerlab.models.adapter import ModelLike


def best_feature_per_value(z: Any, values: Sequence[str], variable: str) -> list[dict[str, Any]]:
    """For each distinct value, the feature of ``z`` ``[n, d_sae]`` with the highest in-sample AUROC for
    ``values == value`` (one-vs-rest; chosen and scored on the same rows)."""
    values = np.asarray(values)
    rows = []
    for value in sorted(set(values.tolist())):
        labels = (values == value).astype(np.int64)
        if labels.sum() in (0, len(labels)):
            continue
        aurocs = latent_aurocs(z, labels)
        order = np.argsort(-aurocs)
        rows.append({"variable": variable, "value": str(value), "feature": int(order[0]),
                     "in_sample_auroc": float(aurocs[order[0]]),
                     "runner_up_in_sample_auroc": float(aurocs[order[1]]),
                     "n_positive": int(labels.sum())})
    return rows


def world_variable_table(model: ModelLike, sae: SAE, world_seed: int = 0) -> list[dict[str, Any]]:
    """Rows ``{variable, value, feature, in_sample_auroc, runner_up_in_sample_auroc, n_positive}`` per world value."""
    world = demo_world(world_seed)
    cities = [city for city in sorted(world.cities) if world.city_role[city] != "unseen"]
    countries = [world.cities[city] for city in cities]
    rows = []
    questions = [tp.CITY_QUESTION.format(city=city) for city in cities]
    rows += best_feature_per_value(latents(model, sae, questions), countries, "country (answer slot)")
    facts = [tp.CITY_MAIN_TEMPLATE.format(city=city, country=country) + " ." for city, country in zip(cities, countries)]
    rows += best_feature_per_value(latents(model, sae, facts, position=-2), countries, "country (country token)")
    for name, variable, value_names in (("sentiment", "sentiment", ("negative", "positive")),
                                        ("topic", "topic", ("cooking", "sport")),
                                        ("cities", "truth", ("false", "true"))):
        dataset = load(f"demo/{name}", split="test")
        z = latents(model, sae, dataset.texts)
        rows += best_feature_per_value(z, [value_names[y] for y in dataset.labels], variable)
    return rows


def summarize(rows: Sequence[dict[str, Any]], threshold: float = 0.9) -> list[dict[str, Any]]:
    """Per variable: values, how many have a feature with in-sample AUROC >= threshold, distinct best features,
    mean best in-sample AUROC."""
    summary = []
    for variable in dict.fromkeys(row["variable"] for row in rows):
        mine = [row for row in rows if row["variable"] == variable]
        summary.append({"variable": variable, "values": len(mine),
                        f"values with in-sample AUROC >= {threshold}":
                            sum(row["in_sample_auroc"] >= threshold for row in mine),
                        "distinct best features": len({row["feature"] for row in mine}),
                        "mean best in-sample AUROC": float(np.mean([row["in_sample_auroc"] for row in mine]))})
    return summary
