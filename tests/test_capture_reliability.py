"""Reliability of ``capture`` and its on-disk store.

Resuming with another ``shard_size``, a creation killed before its manifest, manifests
naming files outside the store, symbolic links, concurrent writers, bad arguments refused
before any forward pass, and real kills (SIGKILL, SIGINT) of a capture in a child process.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch

import steerlab
from conftest import TEXTS
from steerlab.capture import Activations
from steerlab.capture import store as store_module
from steerlab.capture.store import ShardStore, StoreBusyError

MANY = [" ".join(f"w{(i * 7 + j) % 60}" for j in range(1 + i % 9)) for i in range(300)]
CAPTURE_ARGS = dict(layers=[0, 2], batch_size=16, progress=False)


@pytest.fixture(scope="module")
def model(model_dir):
    return steerlab.load_model(str(model_dir("gpt2")))


@pytest.fixture(scope="module")
def reference(model):
    """An uninterrupted in-memory capture of MANY."""
    return steerlab.capture(model, MANY, **CAPTURE_ARGS)


def manifest_of(directory: Path) -> dict:
    return json.loads((directory / "manifest.json").read_text())


def assert_one_row_set_per_text(directory: Path, n_texts: int) -> None:
    """The manifest's shards tile 0..n_texts exactly once, in order."""
    ranges = [(s["text_start"], s["text_end"]) for s in manifest_of(directory)["shards"]]
    assert ranges[0][0] == 0 and ranges[-1][1] == n_texts
    assert all(previous[1] == current[0] for previous, current in zip(ranges, ranges[1:])), ranges


def interrupt_after_shards(monkeypatch: pytest.MonkeyPatch, n_shards: int) -> None:
    """Make ``write_shard`` raise KeyboardInterrupt once ``n_shards`` shards are written (like Ctrl-C)."""
    original = ShardStore.write_shard

    def write_shard(self, *args, **kwargs):
        if len(self.manifest["shards"]) >= n_shards:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ShardStore, "write_shard", write_shard)


# ---------------------------------------------------------------- 1. resume with another shard_size


def test_resume_with_another_shard_size_captures_each_text_once(model, reference, tmp_path, monkeypatch):
    out = tmp_path / "store"
    with monkeypatch.context() as patch:
        interrupt_after_shards(patch, 2)
        with pytest.raises(KeyboardInterrupt):
            steerlab.capture(model, MANY, out=out, shard_size=75, **CAPTURE_ARGS)
    assert [s["text_end"] for s in manifest_of(out)["shards"]] == [75, 150]

    forwarded = []
    original_read = model.read  # capture's forward pass (it stops at the deepest layer it needs)

    def counting_read(batch, fns=()):
        forwarded.append(len(batch.input_ids))
        return original_read(batch, fns)

    monkeypatch.setattr(model, "read", counting_read)
    resumed = steerlab.capture(model, MANY, out=out, shard_size=100, **CAPTURE_ARGS)  # 150 rows too many before
    assert sum(forwarded) == 150  # only the texts no finished shard covers
    assert len(resumed) == 300 and resumed.values.shape[0] == 300
    assert torch.allclose(resumed.values, reference.values, atol=1e-5)
    assert_one_row_set_per_text(out, 300)

    again = steerlab.capture(model, MANY, out=out, shard_size=7, **CAPTURE_ARGS)  # complete: nothing to do
    assert sum(forwarded) == 150 and torch.equal(again.values, resumed.values)


def test_a_store_with_overlapping_shards_is_refused_then_repaired(model, reference, tmp_path):
    """Stores written before ranges were reconciled hold overlapping shards (more rows than texts)."""
    out = tmp_path / "store"
    steerlab.capture(model, MANY, out=out, shard_size=100, **CAPTURE_ARGS)
    manifest = manifest_of(out)
    (out / "shard-00009.safetensors").write_bytes((out / "shard-00000.safetensors").read_bytes())
    manifest["shards"].insert(1, {"file": "shard-00009.safetensors", "text_start": 75, "text_end": 175, "rows": 100})
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"manifest\.json: shard entries overlap at text 75 .*Run the same capture"):
        Activations.load(out)
    repaired = steerlab.capture(model, MANY, out=out, shard_size=100, **CAPTURE_ARGS)
    assert len(repaired) == 300 and torch.allclose(repaired.values, reference.values, atol=1e-5)
    assert_one_row_set_per_text(out, 300)


# ---------------------------------------------------------------- 2. killed between texts.json and manifest.json


def test_a_creation_killed_before_its_manifest_resumes(model, tmp_path, monkeypatch):
    out = tmp_path / "store"
    original = store_module._write_json

    def die_before_first_manifest(path: Path, payload) -> None:
        if path.name == "manifest.json" and not path.exists():
            raise KeyboardInterrupt  # the process dies here: texts.json written, no manifest
        original(path, payload)

    with monkeypatch.context() as patch:
        patch.setattr(store_module, "_write_json", die_before_first_manifest)
        with pytest.raises(KeyboardInterrupt):
            steerlab.capture(model, TEXTS, out=out, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["texts.json"]
    (out / "manifest.json.tmp").write_text("{half a manif")  # what a kill during the write leaves

    resumed = steerlab.capture(model, TEXTS, out=out, progress=False)
    assert torch.equal(resumed.values, steerlab.capture(model, TEXTS, progress=False).values)
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "shard-00000.safetensors", "texts.json"]


def test_a_users_own_texts_json_is_never_taken_for_a_leftover(model, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "texts.json").write_text('["my", "notes"]')
    with pytest.raises(FileExistsError, match="not an activation store"):
        steerlab.capture(model, TEXTS, out=out, progress=False)
    assert (out / "texts.json").read_text() == '["my", "notes"]'


# ---------------------------------------------------------------- 3. manifest entries outside the store


@pytest.fixture()
def small_store(model, tmp_path) -> Path:
    out = tmp_path / "store"
    steerlab.capture(model, TEXTS, out=out, shard_size=2, progress=False)
    return out


def point_entry_outside(store: Path, how: str) -> str:
    """Make shard entry 0 of ``store`` name a copy of its shard outside the store; return the name used."""
    outside = store.parent / "x.safetensors"
    outside.write_bytes((store / "shard-00000.safetensors").read_bytes())
    if how == "symlink":
        (store / "shard-00000.safetensors").unlink()
        (store / "shard-00000.safetensors").symlink_to(outside)
        return "shard-00000.safetensors"
    name = {"parent": "../x.safetensors", "absolute": str(outside), "subfolder": "sub/shard-00000.safetensors"}[how]
    if how == "subfolder":
        (store / "sub").mkdir()
        (store / "sub" / "shard-00000.safetensors").write_bytes(outside.read_bytes())
    manifest = manifest_of(store)
    manifest["shards"][0]["file"] = name
    (store / "manifest.json").write_text(json.dumps(manifest))
    return name


@pytest.mark.parametrize("how", ["parent", "absolute", "subfolder", "symlink"])
def test_a_manifest_entry_outside_the_store_is_refused(model, small_store, how):
    point_entry_outside(small_store, how)
    problem = "symbolic link" if how == "symlink" else "not a shard file inside the store folder"
    pattern = rf"manifest\.json: shard entry 0 \(.*\) (names )?.*{problem}"
    with pytest.raises(ValueError, match=pattern):
        Activations.load(small_store).values
    with pytest.raises(ValueError, match=pattern):
        steerlab.capture(model, TEXTS, out=small_store, shard_size=2, progress=False)


# ---------------------------------------------------------------- 4. shard_size


@pytest.mark.parametrize(("shard_size", "error", "match"), [
    (0, ValueError, "shard_size must be >= 1, got 0"),
    (-3, ValueError, "shard_size must be >= 1, got -3"),
    (2.5, TypeError, r"shard_size must be a positive int, got float \(2.5\)"),
    ("8", TypeError, "shard_size must be a positive int, got str"),
    (True, TypeError, "shard_size must be a positive int, got bool"),
])
def test_a_bad_shard_size_is_refused_before_anything_is_written(model, tmp_path, shard_size, error, match):
    out = tmp_path / "store"
    with pytest.raises(error, match=match):
        steerlab.capture(model, TEXTS, out=out, shard_size=shard_size, progress=False)
    assert not out.exists()


# ---------------------------------------------------------------- 5. bad input refused before any forward pass


BAD_INPUTS = [
    (dict(dtype=torch.int64), ValueError,
     r"capture: dtype torch\.int64 is not a floating type: pass dtype=torch\.float32"),
    (dict(dtype=torch.bool), ValueError, r"dtype torch\.bool is not a floating type"),
    (dict(dtype=torch.complex64), ValueError, r"dtype torch\.complex64 is not a floating type"),
    (dict(dtype="float32"), TypeError, r"dtype must be a torch\.dtype, got str"),
    (dict(texts=["w1 w2", "abc\ud800"]), ValueError, r"texts\[1\] contains a lone surrogate '\\ud800' at character 3"),
    (dict(texts=[]), ValueError, "list of texts is empty: pass at least one text"),
    (dict(texts="w1 w2"), TypeError, r"not a single string: wrap it as \[text\]"),
    (dict(texts=b"w1 w2"), TypeError, r"not a single bytes object: wrap it as \[text\]"),
    (dict(texts=["w1", 3]), TypeError, r"texts\[1\] is a int \(3\), not a str"),
    (dict(texts=[b"w1"]), TypeError, r"texts\[0\] is a bytes"),
    (dict(texts=None), TypeError, "texts must be a list of strings, got NoneType"),
    (dict(layers=[3]), ValueError, "Layer 3 is out of range: the model has 3 layers"),
    (dict(layers=-4), ValueError, "Layer -4 is out of range"),
    (dict(layers=[1.0]), TypeError, r"layers\[0\] is a float \(1\.0\), not an int"),
    (dict(layers="1"), TypeError, "layers must be an int or a list of ints, got str"),
    (dict(layers=[]), ValueError, "layers is empty"),
    (dict(site="resid"), ValueError, "Unknown site 'resid'. Choose one of"),
    (dict(position="first"), ValueError, "Unknown position 'first': use 'last', 'mean', 'all'"),
    (dict(position="LAST"), ValueError, "Unknown position 'LAST'"),
    (dict(position=1.5), ValueError, "Unknown position 1.5"),
    (dict(position=True), ValueError, "Unknown position True"),
    (dict(position=1), ValueError, r"Token index 1 is outside a text of 1 tokens \(text 3\)"),
    (dict(position=-2), ValueError, r"Token index -2 is outside a text of 1 tokens"),
    (dict(batch_size=0), ValueError, "batch_size must be >= 1, got 0"),
    (dict(batch_size=-1), ValueError, "batch_size must be >= 1, got -1"),
    (dict(batch_size=2.0), TypeError, r"batch_size must be a positive int, got float"),
    (dict(metadata={"label": [0, 1]}), ValueError, r"metadata\['label'\] has 2 entries for 5 texts"),
    (dict(metadata={"label": [object()] * 5}), TypeError, r"metadata\['label'\] cannot be saved as JSON"),
    (dict(metadata=[0, 1, 0, 1, 0]), TypeError, "metadata must be a dict of per-text lists"),
    (dict(position="mean", spans=[(0, 2)] * 4 + [(50, 60)]), ValueError, r"span \(50, 60\) of text 4 covers no tokens"),
    (dict(position="last", spans=[(0, 2)] * 5), ValueError, "spans only apply to position='mean'"),
]


@pytest.mark.parametrize(("kwargs", "error", "match"), BAD_INPUTS, ids=[str(i) for i in range(len(BAD_INPUTS))])
def test_bad_input_is_refused_before_any_forward_pass(model, monkeypatch, tmp_path, kwargs, error, match):
    for method in ("forward", "read"):
        monkeypatch.setattr(model, method, lambda *a, **k: pytest.fail("a forward pass ran before the refusal"))
    kwargs = {"texts": TEXTS, **kwargs}
    out = tmp_path / "store"
    with pytest.raises(error, match=match):
        steerlab.capture(model, kwargs.pop("texts"), out=out, progress=False, **kwargs)
    assert not out.exists()


def test_out_naming_a_file_is_refused(model, tmp_path):
    (tmp_path / "file").write_text("mine")
    with pytest.raises(ValueError, match="capture: out=.* is a file: pass a new or empty directory"):
        steerlab.capture(model, TEXTS, out=tmp_path / "file", progress=False)
    assert (tmp_path / "file").read_text() == "mine"


def test_numpy_integers_are_accepted(model, tmp_path):
    plain = steerlab.capture(model, TEXTS, layers=[1], position=-1, batch_size=2, progress=False)
    for layers in (np.int64(1), np.array([1]), [np.int32(1)]):
        numpy_ints = steerlab.capture(model, TEXTS, layers=layers, position=np.int64(-1), batch_size=np.int64(2),
                                      progress=False)
        assert numpy_ints.layers == [1] and torch.equal(numpy_ints.values, plain.values)
    stored = steerlab.capture(model, TEXTS, layers=np.int64(1), out=tmp_path / "s", shard_size=np.int64(2),
                              progress=False)
    assert manifest_of(tmp_path / "s")["layers"] == [1] and len(stored) == 5


# ---------------------------------------------------------------- 7. symbolic links, concurrent writers


def test_a_symlinked_store_directory_is_refused(model, tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir()
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(ValueError, match="Store directory .*link is a symbolic link"):
        steerlab.capture(model, TEXTS, out=tmp_path / "link", progress=False)
    assert not any(target.iterdir())


def test_a_symlinked_shard_file_is_never_written_through(model, small_store):
    victim = small_store.parent / "victim"
    victim.write_text("precious")
    manifest = manifest_of(small_store)
    last = manifest["shards"].pop()
    (small_store / last["file"]).unlink()
    (small_store / last["file"]).symlink_to(victim)  # a link where the next shard will be written
    manifest["complete"] = False
    (small_store / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"Store file .*shard-00002\.safetensors is a symbolic link"):
        steerlab.capture(model, TEXTS, out=small_store, shard_size=2, progress=False)
    assert victim.read_text() == "precious"


def test_a_symlinked_manifest_is_refused(model, small_store):
    moved = small_store.parent / "manifest-elsewhere.json"
    (small_store / "manifest.json").rename(moved)
    (small_store / "manifest.json").symlink_to(moved)
    with pytest.raises(ValueError, match=r"manifest\.json is a symbolic link"):
        Activations.load(small_store)
    with pytest.raises(ValueError, match=r"manifest\.json is a symbolic link"):
        steerlab.capture(model, TEXTS, out=small_store, shard_size=2, progress=False)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX locks")
def test_two_writers_of_one_store_are_refused(model, tmp_path):
    header = {"model": "m", "site": "resid_post", "layers": [0], "position": "last", "d_model": 4}
    with ShardStore.create_or_resume(tmp_path / "s", header, TEXTS, {}):
        with pytest.raises(StoreBusyError, match="Another process is writing the activation store"):
            ShardStore.create_or_resume(tmp_path / "s", header, TEXTS, {})
    with ShardStore.create_or_resume(tmp_path / "s", header, TEXTS, {}):  # released: reopens
        pass


# ---------------------------------------------------------------- 6. real kills in a child process
#
# The children are forked from this process after it has imported torch and loaded the demo
# model: a fresh interpreter would spend 10-30 s importing on a small loaded machine, four
# times over. Each child is still a separate process, killed for real by the kernel.

KILL_SHARD_SIZE = 6
KILL_ARGS = dict(layers=[1, 3], batch_size=3, shard_size=KILL_SHARD_SIZE, progress=False)
N_KILL_TEXTS = 240


def capture_in_child(model, texts: list[str], out: str) -> None:
    """The child's whole life: one streamed capture, on one thread."""
    torch.set_num_threads(1)
    steerlab.capture(model, texts, out=out, **KILL_ARGS)


def listed_shards(directory: Path) -> int:
    try:
        return len(json.loads((directory / "manifest.json").read_text())["shards"])
    except (FileNotFoundError, ValueError):
        return 0


@dataclass
class Child:
    """A capture running in a child process, to be sent ``signal_number`` once ``ready(out)`` holds."""

    name: str
    out: Path
    ready: Callable[[Path], bool]
    signal_number: int
    process: multiprocessing.Process | None = None
    signalled: bool = field(default=False)


def demo_texts(demo) -> list[str]:
    """Texts of 1..12 words of the demo model's vocabulary, deterministic."""
    words = sorted(w for w in demo.tokenizer.get_vocab() if w.isalpha())
    return [" ".join(words[(i * 31 + j * 7) % len(words)] for j in range(1 + i % 12)) for i in range(N_KILL_TEXTS)]


def run_and_interrupt(children: list[Child], model, texts: list[str], timeout_s: float = 300.0) -> None:
    """Start every child at once; signal each when its directory shows its kill point; wait for all.

    Polls the directories (no timing assumptions); a child that finishes before its kill
    point is seen must have succeeded, and its store is checked like the others.
    """
    fork = multiprocessing.get_context("fork")
    for child in children:
        child.process = fork.Process(target=capture_in_child, args=(model, texts, str(child.out)), daemon=True)
        child.process.start()
    deadline = time.monotonic() + timeout_s
    try:
        while any(c.process.is_alive() for c in children):
            assert time.monotonic() < deadline, "children did not reach their kill points in time"
            for child in children:
                if child.process.is_alive() and not child.signalled and child.ready(child.out):
                    os.kill(child.process.pid, child.signal_number)
                    child.signalled = True
            time.sleep(0.002)
    finally:
        for child in children:
            if child.process.is_alive():
                child.process.kill()
            child.process.join()
    for child in children:
        if not child.signalled:  # it finished first: then it must have succeeded
            assert child.process.exitcode == 0, f"{child.name}: the child failed (exit code {child.process.exitcode})"


@pytest.fixture(scope="module")
def demo():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the children: the same kernels, so bit-identical values
    yield steerlab.load_model("demo")
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory, demo) -> tuple[list[str], dict[str, Child]]:
    """Four captures of the demo model, killed at different points, all running at once."""
    root = tmp_path_factory.mktemp("kills")
    texts = demo_texts(demo)
    n_shards = -(-len(texts) // KILL_SHARD_SIZE)
    children = [
        Child("after texts.json", root / "texts", lambda d: (d / "texts.json").exists(), signal.SIGKILL),
        Child("after the first shard", root / "first",
              lambda d: (d / "shard-00000.safetensors").exists(), signal.SIGKILL),
        Child("mid-way", root / "middle", lambda d: listed_shards(d) >= n_shards // 2, signal.SIGKILL),
        Child("Ctrl-C", root / "sigint", lambda d: listed_shards(d) >= n_shards // 3, signal.SIGINT),
    ]
    run_and_interrupt(children, demo, texts)
    return texts, {child.name: child for child in children}


@pytest.fixture(scope="module")
def demo_reference(demo, interrupted, tmp_path_factory) -> Activations:
    """The same capture, uninterrupted, in this process."""
    texts, _ = interrupted
    return steerlab.capture(demo, texts, out=tmp_path_factory.mktemp("reference") / "store", **KILL_ARGS)


@pytest.mark.skipif(sys.platform == "win32", reason="needs fork and POSIX signals")
@pytest.mark.parametrize("name", ["after texts.json", "after the first shard", "mid-way", "Ctrl-C"])
def test_a_killed_capture_resumes_to_identical_values(demo, interrupted, demo_reference, name):
    texts, children = interrupted
    child = children[name]
    resumed = steerlab.capture(demo, texts, out=child.out, **KILL_ARGS)
    assert len(resumed) == len(texts)
    assert torch.equal(resumed.values, demo_reference.values), f"{name}: resumed values differ"
    assert resumed.texts == texts
    assert_one_row_set_per_text(child.out, len(texts))
    assert not [p.name for p in child.out.iterdir() if p.name.endswith(".tmp")]
