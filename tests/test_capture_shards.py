"""Sharded capture: shards captured one after another (one killed and resumed), merged == one unsharded capture."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

import steerlab
from steerlab.capture import Activations
from steerlab.capture.shards import parse_shard, shard_range
from steerlab.cli import main

# 48 texts of 1..9 extra words: 3 shards of 16, each two store shards of 8 (shard_size=8), aligned with the
# unsharded capture's store shards, so every forward pass batches the same texts -> bit-for-bit equality.
TEXTS = [f"q : where is city{i % 17} ? a :" + " w" * (i * 5 % 9) for i in range(48)]
METADATA = {"index": list(range(48)), "even": [i % 2 == 0 for i in range(48)]}
SETTINGS = dict(layers=[0, -1], batch_size=4, shard_size=8, progress=False)

KILL_AFTER_FIRST_SHARD = textwrap.dedent("""
    import os, signal, sys
    import torch
    torch.set_num_threads(1)
    import steerlab
    from steerlab.capture.store import ShardStore

    write = ShardStore.write_shard
    def write_then_die(self, *args, **kwargs):  # a real SIGKILL right after the first store shard is committed
        write(self, *args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)
    ShardStore.write_shard = write_then_die
    texts, metadata, position, out = {texts!r}, {metadata!r}, {position!r}, sys.argv[1]
    steerlab.capture("demo", texts, position=position, metadata=metadata, out=out, shard=(1, 3), **{settings!r})
""")


@pytest.fixture(scope="module")
def model():
    return steerlab.load_model("demo")


def _capture_shards_one_killed(model, tmp_path, position):
    """Shards 0/3, 1/3 (SIGKILLed after its first store shard, then resumed) and 2/3, one after the other."""
    folders = [tmp_path / f"shard-{i}" for i in range(3)]
    steerlab.capture(model, TEXTS, position=position, metadata=METADATA, out=folders[0], shard=(0, 3), **SETTINGS)
    script = KILL_AFTER_FIRST_SHARD.format(texts=TEXTS, metadata=METADATA, position=position, settings=SETTINGS)
    killed = subprocess.run([sys.executable, "-c", script, str(folders[1])], capture_output=True, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]
    manifest = json.loads((folders[1] / "manifest.json").read_text())
    assert not manifest["complete"] and [(s["text_start"], s["text_end"]) for s in manifest["shards"]] == [(0, 8)]
    with pytest.raises(ValueError, match=r"shard 1/3 .* is unfinished \(8 of 16 texts\).*--shard 1/3"):
        Activations.merge(folders, tmp_path / "too-early")
    steerlab.capture(model, TEXTS, position=position, metadata=METADATA, out=folders[1], shard=(1, 3), **SETTINGS)
    steerlab.capture(model, TEXTS, position=position, metadata=METADATA, out=folders[2], shard=(2, 3), **SETTINGS)
    return folders


@pytest.mark.parametrize("position", ["last", "all"])
def test_merged_shards_equal_one_unsharded_capture_bit_for_bit(model, tmp_path, position):
    folders = _capture_shards_one_killed(model, tmp_path, position)
    merged = Activations.merge(folders[::-1], tmp_path / "merged")  # any order
    whole = steerlab.capture(model, TEXTS, position=position, metadata=METADATA, out=tmp_path / "whole", **SETTINGS)
    assert torch.equal(merged.values, whole.values)
    assert merged.texts == whole.texts and merged.metadata == whole.metadata
    assert merged.layers == whole.layers == [0, model.n_layers - 1]
    if position == "all":  # rows are tokens: each shard's local text numbers became global ones
        assert torch.equal(merged.sequence_index, whole.sequence_index)
        assert torch.equal(merged.token_index, whole.token_index)
        assert int(merged.sequence_index.max()) == len(TEXTS) - 1


def test_merge_links_the_shard_files_instead_of_copying_them(model, tmp_path):
    folders = [tmp_path / f"shard-{i}" for i in range(2)]
    for i, folder in enumerate(folders):
        steerlab.capture(model, TEXTS, out=folder, shard=(i, 2), **SETTINGS)
    Activations.merge(folders, tmp_path / "merged")
    merged_files = {(tmp_path / "merged" / name).stat().st_ino
                    for name in os.listdir(tmp_path / "merged") if name.endswith(".safetensors")}
    shard_files = {path.stat().st_ino for folder in folders for path in folder.glob("*.safetensors")}
    assert merged_files == shard_files and len(merged_files) == 6
    # the merged store stands alone: removing the shard folders leaves it readable
    expected = Activations.load(tmp_path / "merged").values.clone()
    for folder in folders:
        for path in folder.iterdir():
            path.unlink()
    assert torch.equal(Activations.load(tmp_path / "merged").values, expected)


def test_unaligned_shards_merge_within_float_noise(model, tmp_path):
    """Shard borders that cut the unsharded run's batches differently: padding changes float rounding only."""
    texts = TEXTS[:47]
    folders = [tmp_path / f"shard-{i}" for i in range(3)]
    for i, folder in enumerate(folders):
        steerlab.capture(model, texts, out=folder, shard=(i, 3), **SETTINGS)
    merged = Activations.merge(folders, tmp_path / "merged")
    whole = steerlab.capture(model, texts, **{**SETTINGS, "shard_size": 2048})
    assert merged.texts == texts
    assert torch.allclose(merged.values, whole.values, atol=1e-5, rtol=0)


def test_shard_ranges_are_contiguous_and_cover_every_text_once():
    for n_texts in (1, 7, 48, 1001):
        for count in range(1, min(n_texts, 9) + 1):
            ranges = [shard_range(i, count, n_texts) for i in range(count)]
            assert ranges[0][0] == 0 and ranges[-1][1] == n_texts
            assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
            sizes = [end - start for start, end in ranges]
            assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1


# ---------------------------------------------------------------- bad inputs: clear errors, before any work


@pytest.mark.parametrize("shard, error, message", [
    ((3, 3), ValueError, r"shard=\(3, 3\) is out of range.*0 <= i < 3"),
    ((-1, 3), ValueError, r"out of range"),
    ((0, 0), ValueError, r"N must be at least 1"),
    ((0.5, 3), TypeError, r"pair of ints"),
    ("1/3", TypeError, r"pair \(i, N\)"),
])
def test_bad_shards_are_refused_before_the_model_runs(tmp_path, shard, error, message):
    with pytest.raises(error, match=message):
        steerlab.capture("no-such-model-is-loaded", TEXTS, out=tmp_path / "x", shard=shard)
    assert not (tmp_path / "x").exists()


def test_a_shard_needs_an_output_folder_and_enough_texts(tmp_path):
    with pytest.raises(ValueError, match="shard= needs out="):
        steerlab.capture("no-such-model-is-loaded", TEXTS, shard=(0, 2))
    with pytest.raises(ValueError, match="5 shards for 3 texts.*at most 3"):
        steerlab.capture("no-such-model-is-loaded", TEXTS[:3], out=tmp_path / "x", shard=(0, 5))


def test_parse_shard():
    assert parse_shard("2/3") == (2, 3) and parse_shard(" 0 / 1 ") == (0, 1)
    for text, message in [("3/3", "0 <= i < N .*2/3 is the last of 3"), ("1-3", "takes i/N"), ("0/0", "N >= 1")]:
        with pytest.raises(ValueError, match=message):
            parse_shard(text)


@pytest.fixture(scope="module")
def shard_set(model, tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    folders = [root / f"shard-{i}" for i in range(3)]
    for i, folder in enumerate(folders):
        steerlab.capture(model, TEXTS, metadata=METADATA, out=folder, shard=(i, 3), **SETTINGS)
    return folders


def test_merge_refuses_missing_and_repeated_shards(shard_set, tmp_path):
    with pytest.raises(ValueError, match=r"missing shard\(s\) 1/3 \(texts 16..32\).*--shard i/N"):
        Activations.merge([shard_set[0], shard_set[2]], tmp_path / "m")
    with pytest.raises(ValueError, match=r"shard 2/3 is given twice.*pass each shard's folder once"):
        Activations.merge([*shard_set, shard_set[2]], tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_merge_refuses_shards_of_different_captures(model, shard_set, tmp_path):
    other_layers = tmp_path / "layers"
    steerlab.capture(model, TEXTS, metadata=METADATA, out=other_layers, shard=(1, 3), **{**SETTINGS, "layers": [1]})
    with pytest.raises(ValueError, match=r"not shards of the same capture \(they differ in: layers\).*same "
                                         r"texts in the same order, model and settings"):
        Activations.merge([shard_set[0], other_layers, shard_set[2]], tmp_path / "m")
    other_texts = tmp_path / "texts"
    steerlab.capture(model, TEXTS[::-1], metadata=METADATA, out=other_texts, shard=(1, 3), **SETTINGS)
    with pytest.raises(ValueError, match=r"differ in: .*texts_sha256"):
        Activations.merge([shard_set[0], other_texts, shard_set[2]], tmp_path / "m")
    other_count = tmp_path / "count"
    steerlab.capture(model, TEXTS, metadata=METADATA, out=other_count, shard=(1, 2), **SETTINGS)
    with pytest.raises(ValueError, match=r"cut into 2 shards but .* into 3: .*same N"):
        Activations.merge([shard_set[0], other_count, shard_set[2]], tmp_path / "m")


def test_merge_refuses_stores_that_are_not_shards(model, shard_set, tmp_path):
    steerlab.capture(model, TEXTS, out=tmp_path / "plain", **SETTINGS)
    with pytest.raises(ValueError, match="not a shard of a sharded capture"):
        Activations.merge([tmp_path / "plain", *shard_set[1:]], tmp_path / "m")
    with pytest.raises(FileNotFoundError, match="No activation store"):
        Activations.merge([tmp_path / "nowhere", *shard_set[1:]], tmp_path / "m")


def test_merge_refuses_a_shard_whose_range_was_edited(shard_set, tmp_path):
    import shutil

    edited = tmp_path / "edited"
    shutil.copytree(shard_set[1], edited)
    manifest = json.loads((edited / "manifest.json").read_text())
    manifest["shard"]["text_start"] = 10  # would overlap shard 0
    (edited / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"holds texts 10..32 .* covers texts 16..32"):
        Activations.merge([shard_set[0], edited, shard_set[2]], tmp_path / "m")


def test_merge_never_overwrites_without_overwrite(shard_set, tmp_path):
    out = tmp_path / "m"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="not empty"):
        Activations.merge(shard_set, out)
    assert (out / "mine.txt").read_text() == "keep"


# ---------------------------------------------------------------- the command line


def test_cli_capture_shards_from_a_csv_then_merge(tmp_path, capsys):
    data = tmp_path / "corpus.csv"
    data.write_text("id,body\n" + "".join(f'{i},"{text}"\n' for i, text in enumerate(TEXTS[:10])))
    for i in range(2):
        assert main(["capture", "demo", "--data", str(data), "--text-column", "body", "--layers", "0,-1",
                     "--shard", f"{i}/2", "--out", str(tmp_path / f"s{i}")]) == 0
    assert "merge-captures" in capsys.readouterr().out
    assert main(["merge-captures", str(tmp_path / "s1"), str(tmp_path / "s0"), "--out", str(tmp_path / "m")]) == 0
    merged = Activations.load(tmp_path / "m")
    assert merged.texts == TEXTS[:10] and merged.layers == [0, 3]

    assert main(["merge-captures", str(tmp_path / "s1"), "--out", str(tmp_path / "m2")]) == 2
    assert "missing shard(s) 0/2" in capsys.readouterr().err
    assert main(["capture", "demo", "--data", str(data), "--text-column", "text", "--out", str(tmp_path / "x")]) == 2
    assert "no column 'text'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["capture", "demo", "a b", "--shard", "2/2", "--out", str(tmp_path / "y")])
    assert "0 <= i < N (--shard 1/2 is the last of 2)" in capsys.readouterr().err
