"""SteeringVector compares, hashes and applies itself like the small typed objects of steering-vectors."""

from __future__ import annotations

import torch

from steerlab import SteeringVector, steer


def test_vectors_compare_by_content_and_hash_consistently():
    a = SteeringVector(torch.ones(4), layers=2, provenance={"method": "x"})
    b = SteeringVector(torch.ones(4), layers=2, provenance={"method": "x"})
    c = SteeringVector(torch.ones(4) * 2, layers=2)
    assert a == b and hash(a) == hash(b)
    assert a != c and a != a.at(1) and a != SteeringVector(torch.ones(4), layers=2, provenance={"method": "y"})
    assert len({a, b, c}) == 2
    assert (a == "not a vector") is False


def test_apply_is_steer():
    import steerlab

    model = steerlab.load_model("demo")
    vector = SteeringVector(torch.randn(model.d_model, generator=torch.Generator().manual_seed(0)) * 5,
                            layers=1, model_name=model.name)
    batch = model.tokenize(["bakli is in"])
    plain = model.forward(batch)
    with vector.apply(model, alpha=2.0, positions="all"):
        applied = model.forward(batch)
    with steer(model, vector, alpha=2.0, positions="all"):
        steered = model.forward(batch)
    assert torch.equal(applied, steered) and not torch.allclose(applied, plain)
    assert torch.equal(model.forward(batch), plain)  # hooks gone after the block
