"""Real tier (``pytest -m real``): the truth-transfer matrix on SmolLM2 over the shipped English sets.

A few dozen statements per domain (whole entity groups, from each set's own group-disjoint
train / test split), captured at one middle layer: each domain's own probe must find truth on
held-out entities well above chance.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import steerlab
import steerlab.datasets as sd
from steerlab.models import registry
from steerlab.probes import DiffMeans, transfer_matrix

pytestmark = pytest.mark.real

DOMAINS = ["en/cities", "en/neg_cities", "en/larger_than", "en/smaller_than", "en/sp_en_trans"]
LAYER = 16  # a middle layer of 30; benchmarks/results_real_geometry.md has every layer


def first_groups(ds, n_groups):
    keep = set(sorted(set(ds.groups))[:n_groups])
    return ds.subset([i for i, g in enumerate(ds.groups) if g in keep])


def test_smollm2_transfer_matrix_in_domain_auroc_is_well_above_chance():
    name = "smollm2-135m-instruct"
    if registry.cached_folder(name) is None:
        pytest.skip(f"{name} is not pulled: run `{registry.get(name).pull_command}`")
    torch.set_num_threads(min(2, torch.get_num_threads()))
    model = steerlab.load_model(name)
    splits = {d: {"train": first_groups(sd.load(d, "train"), 24), "test": first_groups(sd.load(d, "test"), 12)}
              for d in DOMAINS}
    texts = [t for d in DOMAINS for side in ("train", "test") for t in splits[d][side].texts]
    X = steerlab.capture(model, texts, layers=[LAYER], progress=False).values[:, 0].numpy()
    domains, start = {}, 0
    for d in DOMAINS:
        domains[d] = {}
        for side in ("train", "test"):
            ds = splits[d][side]
            domains[d][side] = (X[start:start + len(ds)], ds.labels)
            start += len(ds)
    assert start == len(X) == 5 * 72
    result = transfer_matrix(domains, probe=DiffMeans())
    in_domain = np.diag(result.auroc[:5])
    assert in_domain.mean() > 0.8 and in_domain.min() > 0.65, dict(zip(DOMAINS, in_domain.round(3)))
    # negation flips the city probe: trained on cities, it ranks neg_cities statements below chance
    assert result.auroc[0, 1] < 0.5, result
