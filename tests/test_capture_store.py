"""Streaming to disk, resuming, save/load, span pooling, metadata."""

import json

import pytest
import torch

import steerlab
from conftest import TEXTS
from steerlab.capture import Activations

MANY = [" ".join(f"w{(i * 7 + j) % 60}" for j in range(1 + i % 9)) for i in range(40)]


@pytest.fixture(scope="module")
def model(model_dir):
    return steerlab.load_model(str(model_dir("gpt2")))


def test_streamed_capture_equals_in_memory(model, tmp_path):
    in_memory = steerlab.capture(model, MANY, layers=[0, 2], batch_size=4, progress=False)
    streamed = steerlab.capture(model, MANY, layers=[0, 2], batch_size=4, out=tmp_path / "store", shard_size=16,
                                progress=False)
    manifest = json.loads((tmp_path / "store" / "manifest.json").read_text())
    assert [s["rows"] for s in manifest["shards"]] == [16, 16, 8]
    assert manifest["complete"] and manifest["d_model"] == 32 and manifest["layers"] == [0, 2]
    # shards batch texts differently; padding changes float rounding only
    assert torch.allclose(streamed.values, in_memory.values, atol=1e-5)
    assert sum(chunk.shape[0] for chunk in streamed.iter_shards()) == 40


def test_an_interrupted_capture_resumes_without_recomputing_finished_shards(model, tmp_path):
    out = tmp_path / "store"
    full = steerlab.capture(model, MANY, out=out, shard_size=16, progress=False)
    manifest_path = out / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    # Make it look as if the run died while writing the last shard.
    lost = manifest["shards"].pop()
    (out / lost["file"]).unlink()
    manifest["complete"] = False
    manifest_path.write_text(json.dumps(manifest))
    kept = {s["file"]: (out / s["file"]).stat().st_mtime_ns for s in manifest["shards"]}
    with pytest.raises(ValueError, match="unfinished.*resume"):
        Activations.load(out)

    forwards = []
    with steerlab.record(model, "resid_pre", layers=[0]) as recorded:
        resumed = steerlab.capture(model, MANY, out=out, shard_size=16, progress=False)
        forwards = recorded["blocks.0.hook_resid_pre"]
    assert sum(t.shape[0] for t in forwards) == 8  # only the 8 texts of the lost shard
    assert {f: (out / f).stat().st_mtime_ns for f in kept} == kept
    assert torch.equal(resumed.values, full.values)


def test_nothing_saved_is_overwritten(model, tmp_path):
    out = tmp_path / "store"
    steerlab.capture(model, TEXTS, out=out, progress=False)
    with pytest.raises(FileExistsError, match="different capture.*differs in: .*layers"):
        steerlab.capture(model, TEXTS, layers=[0], out=out, progress=False)
    with pytest.raises(FileExistsError, match="different capture.*texts_fingerprint"):
        steerlab.capture(model, TEXTS[:2], out=out, progress=False)
    other = tmp_path / "notes"
    other.mkdir()
    (other / "mine.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not an activation store"):
        steerlab.capture(model, TEXTS, out=other, progress=False)
    assert (other / "mine.txt").read_text() == "keep me"


def test_save_and_load_round_trip_with_metadata(model, tmp_path):
    acts = steerlab.capture(model, TEXTS, position="all", layers=[1], metadata={"label": [1, 0, 1, 0, 1]},
                            progress=False)
    acts.save(tmp_path / "acts")
    files = sorted(p.name for p in (tmp_path / "acts").iterdir())
    assert files == ["manifest.json", "shard-00000.safetensors", "texts.json"]
    loaded = Activations.load(tmp_path / "acts")
    assert torch.equal(loaded.values, acts.values)
    assert torch.equal(loaded.sequence_index, acts.sequence_index)
    assert loaded.metadata == {"label": [1, 0, 1, 0, 1]} and loaded.texts == TEXTS
    assert (loaded.site, loaded.position, loaded.layers, loaded.d_model) == ("resid_post", "all", [1], 32)
    assert "rows=20" in repr(loaded)
    with pytest.raises(FileExistsError):
        acts.save(tmp_path / "acts")


def test_span_mean_pools_only_the_span(model):
    texts = ["w1 w2 w3 w4", "w5 w6 w7"]
    spans = [(3, 8), (0, 2)]  # "w2 w3" and "w5"
    pooled = steerlab.capture(model, texts, position="mean", spans=spans, progress=False).values
    every = steerlab.capture(model, texts, position="all", progress=False).values
    assert torch.allclose(pooled[0], every[1:3].mean(0), atol=1e-6)
    assert torch.allclose(pooled[1], every[4], atol=1e-6)
    with pytest.raises(ValueError, match="only apply to position='mean'"):
        steerlab.capture(model, texts, position="last", spans=spans)


def test_int_position_out_of_range_and_bad_metadata(model):
    with pytest.raises(ValueError, match="Token index 5 is outside a text of 1 tokens"):
        steerlab.capture(model, TEXTS, position=5, progress=False)
    with pytest.raises(ValueError, match="Unknown position 'first'"):
        steerlab.capture(model, TEXTS, position="first")
    with pytest.raises(ValueError, match=r"metadata\['label'\] has 2 entries for 5 texts"):
        steerlab.capture(model, TEXTS, metadata={"label": [0, 1]})
    acts = steerlab.capture(model, TEXTS, layers=[1], progress=False)
    with pytest.raises(ValueError, match="Layer 0 was not captured"):
        acts.layer(0)
    assert acts.numpy().shape == (5, 1, 32)


def test_non_finite_activations_are_reported_with_their_layer(model):
    blow_up = [(model.point("resid_post", 1), lambda h: h * float("inf"))]
    with model.hooks(blow_up):
        with pytest.warns(UserWarning, match=r"NaN or inf activations at layer\(s\) \[1, 2\]"):
            steerlab.capture(model, TEXTS, layers=[0, 1, 2], progress=False)
