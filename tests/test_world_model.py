"""Training code (micro model) and the shipped demo model's held-out targets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import steerlab.datasets as sd
from steerlab.organism.evaluate import auroc, qa_answers, verdict_correct

DEMO_MODEL = Path(__file__).resolve().parents[1] / "assets" / "demo-model"


def test_micro_training_runs_and_saves_a_loadable_model(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from steerlab.organism.train import load_world_config, train_demo_model

    metrics = train_demo_model(tmp_path, steps=12, d_model=32, n_layers=1, n_heads=2, batch_size=8, progress=False)
    assert metrics["steps"] == 12 and 12 * 8 * 4 < metrics["tokens"] < 12 * 8 * 64  # real (unpadded) tokens
    assert 0 < metrics["final_loss"] < 7.5  # below uniform over ~1.6k tokens (ln 1581 = 7.37) + noise
    assert (tmp_path / "model.safetensors").exists()
    model = AutoModelForCausalLM.from_pretrained(tmp_path)
    tok = AutoTokenizer.from_pretrained(tmp_path)
    assert model.config.n_embd == 32 and model.config.n_layer == 1
    assert model.config.vocab_size == len(tok)
    seed, config = load_world_config(tmp_path)
    assert seed == 0 and config.n_countries == 20


def test_auroc_matches_known_values():
    assert auroc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == pytest.approx(0.75)
    assert auroc(np.array([1.0, 1.0]), np.array([0, 1])) == pytest.approx(0.5)


@pytest.fixture(scope="module")
def demo():
    if not (DEMO_MODEL / "model.safetensors").exists():
        pytest.skip("assets/demo-model not trained yet")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(DEMO_MODEL, attn_implementation="sdpa", dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(DEMO_MODEL)


# The targets on a 200-row subsample of each held-out split (the full splits measure
# 99.2%, 97.2% and 93.8%; see assets/demo-model/README.md).
@pytest.mark.parametrize(("name", "target"), [("demo/larger_than", 0.95), ("demo/cities", 0.90),
                                              ("demo/neg_cities", 0.85)])
def test_demo_model_verdict_accuracy_on_heldout_subsample(demo, name, target):
    model, tok = demo
    ds = sd.load(name, "test")
    sample = ds.subset(np.random.default_rng(0).choice(len(ds), size=min(200, len(ds)), replace=False))
    accuracy = verdict_correct(model, tok, sample).mean()
    assert accuracy >= target, f"{name}: held-out verdict accuracy {accuracy:.3f} below the target {target}"


def test_demo_model_hallucinates_with_imperfect_confidence(demo):
    model, tok = demo
    correct, confidence, answers = qa_answers(model, tok, sd.load("demo/qa", "test"))
    assert (~correct).sum() >= 75  # the test half of the >= 150 wrong answers
    assert auroc(1 - confidence, ~correct) < 0.99
    assert correct.mean() > 0.4  # but it does know the common facts


def test_demo_model_card_and_metrics_exist():
    if not (DEMO_MODEL / "model.safetensors").exists():
        pytest.skip("assets/demo-model not trained yet")
    metrics = json.loads((DEMO_MODEL / "metrics.json").read_text())
    assert metrics["targets"]["verdict demo/larger_than (test) >= 0.95"]["met"] is True
    assert metrics["targets"]["qa wrong answers >= 150"]["met"] is True
    assert metrics["targets"]["qa confidence AUROC < 0.99"]["met"] is True
    card = (DEMO_MODEL / "README.md").read_text()
    assert "python -m steerlab.organism.train" in card and "python -m steerlab.organism.evaluate" in card
    size = sum(f.stat().st_size for f in DEMO_MODEL.iterdir())
    assert size < 25 * 2**20
