"""Artifacts (safetensors + JSON): names, safe writing, and validation of everything read back.

Each bad artifact below is a real artifact saved by steerlab, then damaged one way; loading
it must raise an ``ArtifactError`` naming the damaged file and the problem.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import steerlab.artifacts as artifacts
from steerlab.artifacts import ArtifactError, artifact_paths, load_artifact, save_artifact
from steerlab.capture.activations import Activations
from steerlab.hallucination import LinearTokenProbe, TokenProbe
from steerlab.probes import DiffMeans, LogisticDirection, RaptorProbe, load_probe
from steerlab.steering import SteeringVector

D = 3


# ------------------------------------------------------------------ fitted objects and helpers


@pytest.fixture(scope="module")
def fitted() -> dict[str, Any]:
    """One of each artifact-writing object, fitted once on tiny data (d_model=3)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 2, D)).astype(np.float32)
    y = (X[:, 0, 0] + X[:, 1, 1] > 0).astype(int)
    activations = Activations(torch.as_tensor(X), layers=[1, 2], site="resid_post", position="last",
                              model_name="demo", d_model=D, texts=[""] * len(X))
    token = LinearTokenProbe(max_epochs=2, anneal_epochs=1).fit(X[:, 0], y, groups=np.arange(len(X)) // 2)
    token.layer_, token.site_, token.model_name_ = 1, "resid_post", "demo"
    return {"probe": DiffMeans().fit(X[:, 0], y),
            "raptor": LogisticDirection(C=0.3).fit(activations, y),  # per layer, standardised, extra arrays
            "vector": SteeringVector(torch.tensor([0.5, -1.0, 2.0]), layers=2, model_name="demo",
                                     provenance={"method": "CAA", "position": "last"}),
            "token": token}


LOADERS: dict[str, Callable[[Path], Any]] = {"probe": load_probe, "raptor": load_probe, "token": TokenProbe.load,
                                             "vector": SteeringVector.load}


def saved(fitted: dict[str, Any], which: str, folder: Path) -> Path:
    """Save ``fitted[which]`` as ``folder/which`` and return that base path."""
    fitted[which].save(folder / which)
    return folder / which


def edit_json(base: Path, change: Callable[[dict[str, Any]], Any]) -> None:
    json_path = artifact_paths(base)[1]
    meta = json.loads(json_path.read_text())
    change(meta)
    json_path.write_text(json.dumps(meta))


def edit_tensors(base: Path, change: Callable[[dict[str, torch.Tensor]], Any]) -> None:
    tensor_path = artifact_paths(base)[0]
    tensors = load_file(str(tensor_path))
    change(tensors)
    save_file(tensors, str(tensor_path))


def write_bytes(suffix: str, data: bytes) -> Callable[[Path], None]:
    return lambda base: base.with_name(base.name + suffix).write_bytes(data)


def _set(name: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda mapping: mapping.__setitem__(name, value)


def _pop(name: str) -> Callable[[dict[str, Any]], None]:
    return lambda mapping: mapping.pop(name)


def _rename(old: str, new: str) -> Callable[[dict[str, Any]], None]:
    return lambda mapping: mapping.__setitem__(new, mapping.pop(old))


def _poison(name: str, value: float, count: int) -> Callable[[dict[str, torch.Tensor]], None]:
    def change(tensors: dict[str, torch.Tensor]) -> None:
        tensor = tensors[name].clone()
        tensor.view(-1)[:count] = value
        tensors[name] = tensor
    return change


def _truncate(base: Path) -> None:
    tensor_path = artifact_paths(base)[0]
    tensor_path.write_bytes(tensor_path.read_bytes()[:-7])


def _swap_direction(base: Path) -> None:  # a valid tensor file from another save, same shapes
    save_file({"direction": torch.tensor([1.0, 2.0, 3.0])}, str(artifact_paths(base)[0]))


# ------------------------------------------------------------------ bad artifacts

S, J = ".safetensors", ".json"

# (id, artifact, damage(base path), damaged file suffix, what the message must say)
BAD_ARTIFACTS: list[tuple[str, str, Callable[[Path], Any], str, str]] = [
    ("truncated safetensors", "probe", _truncate, S, r"not a readable safetensors file .*truncated or corrupt"),
    ("empty safetensors", "vector", write_bytes(S, b""), S, r"not a readable safetensors file"),
    ("garbage safetensors", "token", write_bytes(S, b"not tensors at all, just text"), S,
     r"not a readable safetensors file"),
    ("missing safetensors", "probe", lambda base: artifact_paths(base)[0].unlink(), S, r"file is missing"),
    ("missing json", "vector", lambda base: artifact_paths(base)[1].unlink(), J, r"file is missing"),
    ("invalid json", "probe", write_bytes(J, b'{\n "kind": "probe",\n oops\n}'), J,
     r"invalid JSON at line 3, column 2"),
    ("truncated json", "token", lambda base: artifact_paths(base)[1].write_text(
        artifact_paths(base)[1].read_text()[:40]), J, r"invalid JSON at line \d+"),
    ("json not utf-8", "vector", write_bytes(J, b'{"kind": "\xff\xfe"}'), J, r"not UTF-8 text"),
    ("json not an object", "probe", write_bytes(J, b"[1, 2, 3]"), J, r"must be a JSON object, got list"),
    ("+inf in coef_", "probe", lambda base: edit_tensors(base, _poison("coef_", float("inf"), 3)), S,
     r"tensor 'coef_' has non-finite values \(3 inf\).*re-save the probe"),
    ("NaN in direction", "vector", lambda base: edit_tensors(base, _poison("direction", float("nan"), 1)), S,
     r"tensor 'direction' has non-finite values \(1 NaN\)"),
    ("-inf in token weights", "token", lambda base: edit_tensors(base, _poison("network.0.weight", -float("inf"), 2)),
     S, r"tensor 'network.0.weight' has non-finite values \(2 inf\).*re-save the token probe"),
    ("missing tensor", "vector", lambda base: edit_tensors(base, _rename("direction", "dir")), S,
     r"tensor 'direction' is missing"),
    ("unexpected tensor", "probe", lambda base: edit_tensors(base, _set("extra", torch.zeros(2))), S,
     r"unexpected tensor 'extra'"),
    ("scaler missing", "raptor", lambda base: edit_tensors(base, _pop("mean_")), S, r"tensor 'mean_' is missing"),
    ("scaler on unstandardised probe", "probe", lambda base: edit_tensors(base, _set("mean_", torch.zeros(D))), S,
     r"unexpected tensor 'mean_'"),
    ("direction length != d_model", "vector", lambda base: edit_json(base, _set("d_model", 4)), S,
     r"tensor 'direction' has shape \[3\], expected \[4\] from the metadata \(d_model=4\)"),
    ("coef_ per layer vs n_layers", "raptor", lambda base: edit_json(base, lambda m: m.update(n_layers=1, layers=[1])),
     S, r"tensor '\w+' has shape \[2(, \d+)?\], expected \[1(, \d+|, \.\.\.)?\]"),
    ("token network vs d_model", "token", lambda base: edit_json(base, _set("d_model", 5)), S,
     r"tensor '[\w.]+' has shape \[1?,? ?3\], expected \[1?,? ?5\]"),
    ("coef_ dtype float64", "probe", lambda base: edit_tensors(base, lambda t: t.update(coef_=t["coef_"].double())),
     S, r"tensor 'coef_' has dtype float64, expected float32"),
    ("direction dtype int", "vector",
     lambda base: edit_tensors(base, lambda t: t.update(direction=torch.ones(D, dtype=torch.int64))),
     S, r"tensor 'direction' has dtype int64"),
    ("tensors from another save", "vector", _swap_direction, S, r"sha256 differs"),
    ("unknown kind", "probe", lambda base: edit_json(base, _set("kind", "widget")), J, r"unknown kind 'widget'"),
    ("kind missing", "vector", lambda base: edit_json(base, _pop("kind")), J, r"unknown kind None"),
    ("relabelled kind", "vector", lambda base: edit_json(base, _set("kind", "probe")), J,
     r"holds a 'probe', not a 'steering_vector'"),
    ("unknown class", "probe", lambda base: edit_json(base, _set("class", "QuantumProbe")), J,
     r"unknown probe class 'QuantumProbe'"),
    ("unknown token class", "token", lambda base: edit_json(base, _set("class", "DiffMeans")), J,
     r"unknown token probe class 'DiffMeans'"),
    ("layer not an int", "token", lambda base: edit_json(base, _set("layer", "three")), J,
     r"field 'layer' must be an int or null, got \"three\" \(str\)"),
    ("layer a bool", "token", lambda base: edit_json(base, _set("layer", True)), J,
     r"field 'layer' must be an int or null, got true \(bool\)"),
    ("d_model zero", "probe", lambda base: edit_json(base, _set("d_model", 0)), J,
     r"field 'd_model' must be a positive int, got 0"),
    ("d_model a string", "vector", lambda base: edit_json(base, _set("d_model", "3")), J,
     r"field 'd_model' must be a positive int, got \"3\" \(str\)"),
    ("d_model a float", "token", lambda base: edit_json(base, _set("d_model", 3.5)), J,
     r"field 'd_model' must be a positive int, got 3.5 \(float\)"),
    ("n_layers not an int", "raptor", lambda base: edit_json(base, _set("n_layers", "two")), J,
     r"field 'n_layers' must be a positive int or null"),
    ("layers vs n_layers", "raptor", lambda base: edit_json(base, _set("layers", [1, 2, 3])), J,
     r"field 'layers' lists 3 layers but field 'n_layers' is 2"),
    ("vector without layers", "vector", lambda base: edit_json(base, _set("layers", [])), J,
     r"field 'layers' must be a non-empty list of ints"),
    ("typical_norm NaN", "vector", lambda base: edit_json(base, _set("typical_norm", float("nan"))), J,
     r"field 'typical_norm' must be a finite number or null, got nan"),
    ("classes not a pair", "probe", lambda base: edit_json(base, _set("classes", [0, 1, 2])), J,
     r"field 'classes' must be a list of two class labels"),
    ("params not an object", "probe", lambda base: edit_json(base, _set("params", [])), J,
     r"field 'params' must be a JSON object"),
    ("metadata field missing", "token", lambda base: edit_json(base, _pop("threshold")), J,
     r"field 'threshold' is missing"),
    ("version missing", "probe", lambda base: edit_json(base, _pop("steerlab_version")), J,
     r"field 'steerlab_version' is missing"),
    ("newer format", "vector", lambda base: edit_json(base, _set("format_version", 99)), J,
     r"artifact format 99 .*reads format 1 and older: upgrade steerlab"),
    ("format_version a string", "probe", lambda base: edit_json(base, _set("format_version", "1")), J,
     r"field 'format_version' must be a positive int"),
    ("unknown parameter", "probe", lambda base: edit_json(base, _set("params", {"bogus": 1})), J,
     r"the metadata does not make a DiffMeans: .*bogus"),
    ("unknown site", "vector", lambda base: edit_json(base, _set("site", "resid_middle")), J,
     r"the metadata does not make a valid SteeringVector: .*resid_middle"),
]


@pytest.mark.parametrize("which, damage, suffix, problem", [case[1:] for case in BAD_ARTIFACTS],
                         ids=[case[0] for case in BAD_ARTIFACTS])
def test_bad_artifact_is_refused_naming_the_file_and_the_problem(fitted, tmp_path, which, damage, suffix, problem):
    base = saved(fitted, which, tmp_path)
    damage(base)
    damaged = base.with_name(base.name + suffix)
    with pytest.raises(ArtifactError, match=re.escape(str(damaged)) + ": .*" + problem):
        LOADERS[which](base)


def test_at_least_twenty_distinct_bad_artifacts_are_covered():
    assert len({case[0] for case in BAD_ARTIFACTS}) == len(BAD_ARTIFACTS) >= 20


def test_a_missing_file_is_also_a_file_not_found_error(fitted, tmp_path):
    base = saved(fitted, "probe", tmp_path)
    artifact_paths(base)[1].unlink()
    with pytest.raises(FileNotFoundError, match="probe.json: file is missing"):
        load_probe(base)


def test_loading_with_the_wrong_class_or_kind_is_refused(fitted, tmp_path):
    probe, vector = saved(fitted, "probe", tmp_path), saved(fitted, "vector", tmp_path)
    with pytest.raises(ArtifactError, match=r"probe\.json: holds a DiffMeans, not a RaptorProbe"):
        RaptorProbe.load(probe)
    with pytest.raises(ArtifactError, match=r"vector\.json: holds a 'steering_vector', not a 'probe'"):
        load_probe(vector)
    with pytest.raises(ArtifactError, match=r"probe\.json: holds a 'probe', not a 'steering_vector'"):
        SteeringVector.load(probe)


# ------------------------------------------------------------------ names


def test_dots_in_names_are_kept(fitted, tmp_path):
    probe = fitted["probe"]
    paths = [probe.save(tmp_path / name) for name in ("b", "b.layer1", "raptor_C0.5", "raptor_C0.6")]
    assert [p.name for p in paths] == ["b.safetensors", "b.layer1.safetensors", "raptor_C0.5.safetensors",
                                       "raptor_C0.6.safetensors"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        n + s for n in ("b", "b.layer1", "raptor_C0.5", "raptor_C0.6") for s in (".json", ".safetensors"))
    assert np.allclose(load_probe(tmp_path / "raptor_C0.5").coef_, probe.coef_)


@pytest.mark.parametrize("name", ["x", "x.safetensors", "x.json"])
def test_only_safetensors_and_json_are_suffixes(fitted, tmp_path, name):
    assert artifact_paths(tmp_path / name) == (tmp_path / "x.safetensors", tmp_path / "x.json")
    assert fitted["vector"].save(tmp_path / name) == tmp_path / "x.safetensors"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json", "x.safetensors"]
    assert torch.equal(SteeringVector.load(tmp_path / name).direction, fitted["vector"].direction)


def test_an_artifact_saved_under_a_cut_name_is_pointed_at(fitted, tmp_path):
    fitted["probe"].save(tmp_path / "raptor_C0")  # where steerlab 0.1 wrote save("raptor_C0.5")
    with pytest.raises(ArtifactError, match=r"raptor_C0\.5\.json: file is missing.*raptor_C0\.json exists"):
        load_probe(tmp_path / "raptor_C0.5")


# ------------------------------------------------------------------ writing


@pytest.mark.parametrize("suffix", [".safetensors", ".json"])
def test_writing_through_a_symlinked_file_is_refused(fitted, tmp_path, suffix):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (tmp_path / f"v{suffix}").symlink_to(victim)
    for overwrite in (False, True):
        with pytest.raises(ArtifactError, match=re.escape(str(tmp_path / f"v{suffix}")) + " is a symlink"):
            fitted["vector"].save(tmp_path / "v", overwrite=overwrite)
    assert victim.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["victim.txt", f"v{suffix}"])


def test_a_dangling_symlink_is_refused_too(fitted, tmp_path):
    (tmp_path / "v.json").symlink_to(tmp_path / "elsewhere.json")
    with pytest.raises(ArtifactError, match="v.json is a symlink"):
        fitted["vector"].save(tmp_path / "v", overwrite=True)
    assert not (tmp_path / "elsewhere.json").exists()


def test_writing_into_a_symlinked_folder_is_refused(fitted, tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(ArtifactError, match=re.escape(str(tmp_path / "link")) + " is a symlink"):
        fitted["probe"].save(tmp_path / "link" / "probe")
    assert not any((tmp_path / "real").iterdir())


@pytest.mark.parametrize("existing", [".safetensors", ".json"])
def test_existing_files_are_never_replaced_without_overwrite(fitted, tmp_path, existing):
    (tmp_path / f"p{existing}").write_text("precious")
    with pytest.raises(FileExistsError, match=re.escape(str(tmp_path / f"p{existing}")) + ".*overwrite=True"):
        fitted["probe"].save(tmp_path / "p")
    assert (tmp_path / f"p{existing}").read_text() == "precious"
    assert [p.name for p in tmp_path.iterdir()] == [f"p{existing}"]


def test_overwrite_replaces_both_files_and_leaves_no_temporary_file(fitted, tmp_path):
    fitted["probe"].save(tmp_path / "a")
    fitted["raptor"].save(tmp_path / "a", overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "a.safetensors"]
    assert type(load_probe(tmp_path / "a")) is LogisticDirection


def _crash_on_json(real: Callable[..., None]) -> Callable[..., None]:
    def publish(temporary: Path, target: Path, overwrite: bool) -> None:
        if target.suffix == ".json":
            raise KeyboardInterrupt("crash while writing the metadata")
        real(temporary, target, overwrite)
    return publish


def test_a_crash_while_saving_leaves_no_artifact_and_no_temporary_file(fitted, tmp_path, monkeypatch):
    monkeypatch.setattr(artifacts, "_publish", _crash_on_json(artifacts._publish))
    with pytest.raises(KeyboardInterrupt):
        fitted["probe"].save(tmp_path / "p")
    assert list(tmp_path.iterdir()) == []


def test_a_crash_while_overwriting_is_detected_on_load(fitted, tmp_path, monkeypatch):
    fitted["vector"].save(tmp_path / "v")
    monkeypatch.setattr(artifacts, "_publish", _crash_on_json(artifacts._publish))
    with pytest.raises(KeyboardInterrupt):
        (2 * fitted["vector"]).save(tmp_path / "v", overwrite=True)  # new tensors, old metadata
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.json", "v.safetensors"]
    with pytest.raises(ArtifactError, match=r"v\.safetensors: is not the file v\.json was saved with"):
        SteeringVector.load(tmp_path / "v")


def test_saving_an_unknown_kind_is_refused(tmp_path):
    with pytest.raises(ArtifactError, match="Unknown artifact kind 'widget'"):
        save_artifact(tmp_path / "w", {"x": torch.ones(1)}, {}, kind="widget")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ metadata and compatibility


def test_metadata_records_model_source_site_layers_position_d_model_and_versions(fitted, tmp_path):
    import steerlab

    for which, model_key, layers_key, layers, position in [("raptor", "model", "layers", [1, 2], "last"),
                                                           ("vector", "model", "layers", [2], "last"),
                                                           ("token", "model_name", "layer", 1, "generated")]:
        meta = json.loads(artifact_paths(saved(fitted, which, tmp_path))[1].read_text())
        assert meta[model_key] == "demo" and meta["model_source"] == "demo" and meta["site"] == "resid_post"
        assert meta[layers_key] == layers and meta["position"] == position and meta["d_model"] == D
        assert meta["steerlab_version"] == steerlab.__version__ and meta["format_version"] == 1


def test_model_source():
    assert [artifacts.model_source(name) for name in (None, "demo", "/models/gpt2", "EleutherAI/pythia-70m")] == [
        None, "demo", "local", "hub"]


# Written by steerlab 0.1.0 before this format (no format_version, model_source, tensors_sha256; no position in
# vectors and token probes): the JSON exactly as it wrote it, the tensors as it stored them.
LEGACY: dict[str, tuple[str, dict[str, list[Any]]]] = {
    "logistic": ("""{"kind": "probe", "steerlab_version": "0.1.0", "class": "LogisticDirection",
 "params": {"C": 0.3, "tol": 1e-05, "max_iter": 500}, "model": "demo", "site": "resid_post", "layers": [1, 2],
 "position": "last", "d_model": 3, "n_layers": 2, "classes": [0, 1], "chosen_C": [0.3, 0.3],
 "metrics": {"val_accuracy": [NaN, NaN], "train_accuracy": [0.825, 0.85]}, "standardized": true}""",
                 {"C_": [0.3, 0.3], "Cs_": [0.3], "coef_": [[1.071928, -0.051555, 0.037921],
                                                             [-0.647887, 1.015189, 0.47384]],
                  "concept_vector_": [[0.998222, -0.04801, 0.035314], [-0.500617, 0.784429, 0.366133]],
                  "intercept_": [-0.585912, -0.66885], "mean_": [[-0.059946, 0.251023, -0.068468],
                                                                 [-0.188255, -0.293948, 0.225047]],
                  "n_iter_": [6.0, 6.0], "scale_": [[1.045547, 0.893156, 0.937719], [1.14856, 0.940798, 0.945897]],
                  "val_accuracy_": [[], []]}),
    "diffmeans": ("""{"kind": "probe", "steerlab_version": "0.1.0", "class": "DiffMeans", "params": {},
 "model": null, "site": null, "layers": null, "position": null, "d_model": 3, "n_layers": null, "classes": [0, 1],
 "chosen_C": null, "metrics": {}, "standardized": false}""",
                  {"coef_": [2.099586, 0.152387, 0.276494], "concept_vector_": [0.988883, 0.071773, 0.130226],
                   "intercept_": -0.850068}),
    "vector": ("""{"kind": "steering_vector", "steerlab_version": "0.1.0", "site": "resid_post", "layers": [2],
 "model": "demo", "d_model": 3, "probe_weight_norm": 1.5, "probe_intercept": -0.25, "typical_norm": 3.0,
 "provenance": {"method": "CAA", "n_pairs": 2, "position": "last"}}""",
               {"direction": [0.5, -1.0, 2.0]}),
    "token": ("""{"kind": "token_probe", "steerlab_version": "0.1.0", "class": "LinearTokenProbe",
 "params": {"anneal_epochs": 1, "normalize": "standardize", "lr": 0.003, "weight_decay": 0.01, "max_epochs": 2,
  "patience": 20, "batch_size": 64, "val_fraction": 0.2, "random_state": 0},
 "d_model": 3, "classes": [0, 1], "threshold": 0.15486794710159302, "best_epoch": 1, "n_epochs": 2,
 "val_auroc": 0.3125, "history": [0.3125, 0.3125], "layer": 1, "site": "resid_post", "model_name": "demo"}""",
              {"mean_": [-0.066551, 0.288996, -0.067666], "network.0.bias": [-0.426354],
               "network.0.weight": [[0.001524, 0.308541, -0.470925]], "scale_": [1.04998, 0.861757, 0.939289]}),
}


def write_legacy(folder: Path, name: str) -> Path:
    text, tensors = LEGACY[name]
    (folder / f"{name}.json").write_text(text)
    save_file({key: torch.tensor(value, dtype=torch.float32) for key, value in tensors.items()},
              str(folder / f"{name}.safetensors"))
    return folder / name


def test_artifacts_written_by_steerlab_0_1_still_load(tmp_path):
    X = np.array([[[0.2, -1.0, 0.5], [1.0, 0.3, -0.2]], [[-0.4, 0.8, 0.1], [0.0, -0.5, 0.9]]], dtype=np.float32)
    logistic = load_probe(write_legacy(tmp_path, "logistic"))
    assert type(logistic) is LogisticDirection and logistic.layers_ == [1, 2] and logistic.position_ == "last"
    assert logistic.decision_function(X).shape == (2, 2) and logistic.scale_.shape == (2, D)
    diffmeans = load_probe(write_legacy(tmp_path, "diffmeans"))
    assert type(diffmeans) is DiffMeans and diffmeans.intercept_ == pytest.approx(-0.850068)
    np.testing.assert_allclose(diffmeans.decision_function(X[:, 0]), X[:, 0] @ diffmeans.coef_ - 0.850068, rtol=1e-6)
    vector = SteeringVector.load(write_legacy(tmp_path, "vector"))
    assert vector.layers == (2,) and vector.direction.tolist() == [0.5, -1.0, 2.0] and vector.typical_norm == 3.0
    token = TokenProbe.load(write_legacy(tmp_path, "token"))
    assert type(token) is LinearTokenProbe and token.layer_ == 1 and token.predict_proba(X[:, 0]).shape == (2, 2)


def test_round_trip_through_load_artifact(fitted, tmp_path):
    tensors, meta = load_artifact(saved(fitted, "vector", tmp_path), kind="steering_vector")
    assert set(tensors) == {"direction"} and meta["d_model"] == D and meta["kind"] == "steering_vector"
    assert len(meta["tensors_sha256"]) == 64 and os.path.getsize(tmp_path / "vector.safetensors") > 0
