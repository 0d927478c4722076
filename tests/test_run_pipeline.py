"""`steerlab run CONFIG` and the stage commands: config validation, the pipeline, probe / steer / report."""

import csv
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from conftest import imported_heavy_modules
from steerlab.cli import main
from steerlab.pipeline.config import EXAMPLE_CONFIG, ConfigError, load_config, parse_config

DEMO = Path(__file__).parents[1] / "assets" / "demo-model" / "config.json"
needs_demo = pytest.mark.skipif(not DEMO.is_file(), reason="assets/demo-model not trained yet")


def test_the_example_config_is_valid_toml_and_yaml(tmp_path):
    import yaml

    config = parse_config(tomllib.loads(EXAMPLE_CONFIG))
    assert config.data.dataset == "demo/cities" and config.probes.methods[0] == "raptor"
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(tomllib.loads(EXAMPLE_CONFIG)))
    assert load_config(tmp_path / "run.yaml").steering.alphas == config.steering.alphas


@pytest.mark.parametrize("raw, message", [
    ({}, "missing [data]"),
    ({"data": {"dataset": "demo/cities"}, "captures": {}}, "unknown section [captures] (did you mean 'capture'?)"),
    ({"data": {"dataset": "demo/cities"}, "capture": {"sitee": "resid_post"}}, "has no key 'sitee' (did you mean 'site'?)"),
    ({"data": {"dataset": "demo/cities"}, "capture": {"site": "resid"}}, "site 'resid' is unknown"),
    ({"data": {"dataset": "demo/citie"}}, "(did you mean 'demo/cities'?)"),
    ({"data": {"dataset": "demo/cities", "file": "x.csv"}}, "exactly one of `dataset`"),
    ({"data": {"file": "nope.csv"}}, "no such file"),
    ({"data": {"dataset": "demo/cities"}, "capture": {"batch_size": "8"}}, "[capture] batch_size must be a int"),
    ({"data": {"dataset": "demo/cities"}, "capture": {"layers": [0, "a"]}}, "layers must be \"all\" or a list of ints"),
    ({"data": {"dataset": "demo/cities"}, "probes": {"methods": ["ridge"]}}, "method 'ridge' is unknown"),
    ({"data": {"dataset": "demo/cities"}, "probes": {"methods": ["raptor"]}}, "direction 'diff_means' must be one of"),
    ({"data": {"dataset": "demo/cities"}, "steering": {"alphas": [1, -1]}}, "alphas must be positive"),
    ({"data": {"dataset": "demo/cities"}, "steering": {"verdict_suffix": " is"}}, "set verdict_suffix and verdict_words"),
    ({"data": {"dataset": "demo/cities"}, "model": {"backend": "tl"}}, "backend 'tl' is unknown"),
])
def test_config_errors_name_the_key_and_the_fix(raw, message):
    with pytest.raises(ConfigError) as error:
        parse_config(raw, source="run.toml")
    assert message in str(error.value) and str(error.value).startswith("run.toml: ")


def test_broken_files_are_reported_with_their_path(tmp_path):
    (tmp_path / "bad.toml").write_text("[data\ndataset = 1")
    with pytest.raises(ConfigError, match="bad.toml: not valid TOML"):
        load_config(tmp_path / "bad.toml")
    (tmp_path / "run.json").write_text("{}")
    with pytest.raises(ConfigError, match="use a .toml, .yaml or .yml file"):
        load_config(tmp_path / "run.json")
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "missing.toml")


def test_every_help_shows_an_example_and_imports_no_heavy_library():
    for command in ([], ["run"], ["probe"], ["steer"], ["hallucination"], ["train-sae"], ["report"], ["demo"]):
        result = subprocess.run([sys.executable, "-m", "steerlab.cli", *command, "--help"], capture_output=True,
                                text=True, check=True)
        assert "example" in result.stdout
        assert imported_heavy_modules([*command, "--help"]) == [], command


@needs_demo
def test_run_writes_metrics_artifacts_and_report_and_finds_truth(tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_text('[data]\ndataset = "demo/cities"\n[probes]\nmethods = ["raptor", "diff_means"]\n'
                      '[steering]\nalphas = [0.25, 0.35, 0.5, 0.75]\n[output]\ndir = "out"\n')
    assert main(["run", str(config)]) == 0
    out = tmp_path / "out"  # [output] dir is relative to the config file
    metrics = json.loads((out / "metrics.json").read_text())
    held_out = metrics["probes"]["held_out"]
    assert {r["method"] for r in held_out} == {"raptor", "diff_means"} and len(held_out) == 8
    assert max(r["accuracy"] for r in held_out if r["method"] == "raptor") >= 0.9
    steering = metrics["steering"]
    assert steering["kl_neutral"] <= steering["kl_budget"] == 0.1  # the default budget, nats per token
    assert steering["qualified"] is False  # 90% of flips costs more KL than that on the demo model
    assert steering["test_flip_false_to_true"] >= 0.6 >= steering["test_control_flip_false_to_true"] + 0.5
    assert (out / "artifacts" / "probe_raptor.safetensors").is_file()
    assert (out / "artifacts" / "steering_vector.json").is_file()
    assert "Steering with the probe direction" in (out / "report.html").read_text()
    printed = capsys.readouterr().out
    assert "raptor" in printed and "random control" in printed
    # a second run never replaces the first silently
    assert main(["run", str(config)]) == 2
    assert "pass --overwrite" in capsys.readouterr().err


@needs_demo
def test_probe_on_a_user_csv_then_steer_then_report(tmp_path, capsys):
    from steerlab.datasets import load
    from steerlab.world import templates

    reviews = load("demo/sentiment", split="test")
    with open(tmp_path / "mine.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["review", "positive", "thing"])
        writer.writerows(zip(reviews.texts, reviews.labels, reviews.groups))
    out = tmp_path / "probes"
    assert main(["probe", "demo", "--file", str(tmp_path / "mine.csv"), "--text-column", "review",
                 "--label-column", "positive", "--group-column", "thing", "--concept", "sentiment", "--methods", "diff_means",
                 "--layers", "0,2", "--position", "mean", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert [r["layer"] for r in metrics["probes"]["held_out"]] == [0, 2]
    assert metrics["probes"]["held_out"][1]["auroc"] >= 0.85
    assert metrics["steering"] == {"skipped": "probe stage only"}
    capsys.readouterr()

    # steer with the saved probe's direction: completions turn positive
    prompts = [f"my friend said the {thing} was" for thing in templates.REVIEW_THINGS[:6]]
    assert main(["steer", "demo", str(out / "artifacts" / "probe_diff_means"), "--layer", "2", "--alpha", "1",
                 "--norm-units", "--max-new-tokens", "1", *prompts]) == 0
    rows = [row.split() for row in capsys.readouterr().out.splitlines()[3:]]
    positive = set(templates.POSITIVE_ADJECTIVES)
    assert sum(row[-1] in positive for row in rows) >= sum(row[-2] in positive for row in rows) + 3

    # report: rebuilt from the saved sections, only with --overwrite
    assert main(["report", str(out)]) == 2
    (out / "report.html").unlink()
    assert main(["report", str(out), "--title", "mine"]) == 0
    page = (out / "report.html").read_text()
    assert "<title>mine</title>" in page and "Where the sentiment concept lives" in page and "Plotly.newPlot" in page


def test_run_without_a_config_explains_how_to_get_one(capsys):
    assert main(["run"]) == 2
    assert "steerlab run --example" in capsys.readouterr().err
    assert main(["run", "--example"]) == 0
    assert tomllib.loads(capsys.readouterr().out)["data"]["dataset"] == "demo/cities"


GOT_CITIES = Path(__file__).parents[2] / "shared" / "data" / "got_cities.csv"


@pytest.mark.skipif(not GOT_CITIES.is_file(), reason="the Geometry of Truth cities CSV is not available")
def test_run_on_real_data_with_a_bpe_gpt2_from_a_yaml_config(tmp_path, capsys):
    """Geometry-of-Truth cities through a save_pretrained GPT-2 with a byte-level BPE tokenizer."""
    import transformers as tf
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    lines = GOT_CITIES.read_text().splitlines()[1:] + ["This is true.", "This is false."] * 50
    core = Tokenizer(models.BPE())
    core.pre_tokenizer, core.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    core.train_from_iterator(lines, trainers.BpeTrainer(vocab_size=600, special_tokens=["<|endoftext|>"],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = tf.PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|endoftext|>")
    assert len(tokenizer(" true", add_special_tokens=False)["input_ids"]) == 1
    torch_model = tf.GPT2LMHeadModel(tf.GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=2,
                                                   n_positions=64))
    torch_model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    (tmp_path / "run.yaml").write_text(f"""
model: {{name: {tmp_path / 'model'}, backend: hf}}
data: {{file: {GOT_CITIES}, text_column: statement, label_column: label, group_column: city, concept: truth}}
probes: {{methods: [diff_means, raptor], stability_runs: 0}}
steering: {{direction: diff_means, alphas: [1.0], neutral: null, verdict_suffix: " This is",
           verdict_words: [" true", " false"]}}
""")
    assert main(["run", str(tmp_path / "run.yaml"), "--out", str(tmp_path / "out")]) == 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["data"]["n_train"] + metrics["data"]["n_test"] == 1496
    assert metrics["model"]["n_layers"] == 2 and len(metrics["probes"]["held_out"]) == 4
    # a random model: every number is measured, none is a given (chance-level probes are fine)
    assert all(0 <= r["auroc"] <= 1 for r in metrics["probes"]["held_out"])
    steering, printed = metrics["steering"], capsys.readouterr().out
    assert steering["direction"] == "diff_means" and {row["layer"] for row in steering["sweep"]} == {0, 1}
    if steering["nothing_to_flip"]:
        assert "nothing to flip" in printed
    elif steering.get("chosen", True) is None:
        assert "no (layer, alpha) kept KL on neutral text within 0.1 nats/token" in printed
    else:
        assert 0 <= steering["test_flip_false_to_true"] <= 1 and "random control" in printed


@needs_demo
def test_train_sae_command_on_a_text_file(tmp_path, capsys):
    import steerlab
    from steerlab.sae import load_sae
    from steerlab.sae.training import demo_corpus

    (tmp_path / "texts.txt").write_text("\n".join(demo_corpus(400, seed=5)))
    out = tmp_path / "sae"
    assert main(["train-sae", "demo", "--file", str(tmp_path / "texts.txt"), "--layer", "1", "--steps", "300",
                 "--eval-lines", "100", "--out", str(out)]) == 0
    card = json.loads((out / "card.json").read_text())
    assert card["command"].startswith("steerlab train-sae") and card["hook_name"] == "blocks.1.hook_resid_post"
    assert card["quality_heldout"]["explained_variance"] > 0.5  # ~0.9 after 300 steps on 300 lines
    sae = load_sae(str(out), model=steerlab.load_model("demo"))
    assert sae.cfg.d_sae == 512
    assert main(["train-sae", "demo", "--layer", "1", "--out", str(out)]) == 2  # an existing SAE is never replaced
    assert "already holds an SAE" in capsys.readouterr().err


@needs_demo
def test_hallucination_command_on_a_user_qa_csv(tmp_path, capsys):
    from steerlab.datasets import load

    rows = [(q, a, g) for part in ("train", "test") for q, a, g in zip(*(getattr(load("demo/qa", split=part), name)
                                                                         for name in ("texts", "answers", "groups")))]
    with open(tmp_path / "qa.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["q", "a", "entity"])
        writer.writerows(rows)
    out = tmp_path / "halluc"
    assert main(["hallucination", "demo", "--file", str(tmp_path / "qa.csv"), "--question-column", "q",
                 "--answer-column", "a", "--group-column", "entity", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())["hallucination"]
    n_test = metrics["data"]["test"]["answers"]
    assert 0.4 * len(rows) < n_test < 0.6 * len(rows) and metrics["data"]["test"]["wrong_answers"] >= 50
    assert metrics["methods"]["max_prob"]["answer"]["auroc"] > 0.8 and metrics["methods"]["mlp_plus"]["answer"]["auroc"] > 0.8
    assert (out / "artifacts" / "hallucination_mlp_plus.safetensors").is_file() and (out / "report.html").is_file()
    assert "mlp_plus" in capsys.readouterr().out
    assert main(["hallucination", "demo", "--file", str(tmp_path / "qa.csv"), "--question-column", "question",
                 "--out", str(tmp_path / "other")]) == 2
    assert "no column 'question'" in capsys.readouterr().err


@pytest.mark.parametrize("raw, message", [
    ({"data": {"dataset": "demo/cities"}, "hallucination": {}}, "[hallucination] needs exactly one of"),
    ({"data": {"dataset": "demo/cities"}, "hallucination": {"dataset": "demo/cities"}}, "the built-in QA set is"),
    ({"data": {"dataset": "demo/cities"}, "sae": {}}, "[sae] needs exactly one of `path`"),
    ({"data": {"dataset": "demo/cities"}, "sae": {"path": "nowhere"}}, "holds no cfg.json"),
    ({"data": {"dataset": "demo/cities"}, "sae": {"layer": 2}, "steering": {"direction": "none"}}, "remove [sae]"),
])
def test_optional_stage_sections_are_checked(raw, message):
    with pytest.raises(ConfigError) as error:
        parse_config(raw, source="run.toml")
    assert message in str(error.value)


@needs_demo
def test_run_with_the_hallucination_and_sae_stages(tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text("data: {dataset: demo/cities}\nprobes: {methods: [diff_means], stability_runs: 0}\n"
                      "steering: {alphas: [0.75]}\nhallucination: {dataset: demo/qa}\nsae: {path: demo}\n")
    assert main(["run", str(config), "--out", str(tmp_path / "out")]) == 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["hallucination"]["methods"]["mlp_plus"]["answer"]["auroc"] > 0.9
    sae = metrics["sae"]
    assert sae["hook_name"] == "blocks.2.hook_resid_post" and sae["quality"]["explained_variance"] > 0.8
    rows = {row["method"]: row for row in sae["comparison"]}
    assert rows["diff_means"]["detection_auroc"] > 0.9 and all(row["matched"] for row in rows.values())
    assert set(metrics["timings"]) >= {"hallucination", "sae"}
    page = (tmp_path / "out" / "report.html").read_text()
    assert "SAE features vs the probe directions" in page and "Hallucination detection" in page
    assert "explained variance" in capsys.readouterr().out


@pytest.mark.parametrize("raw, message", [
    ({"data": {"dataset": "demo/cities"}, "capture": {"layers": []}}, "[capture] layers is empty"),
    ({"data": {"dataset": "demo/cities"}, "steering": {"target": 5}}, "[steering] target is a share"),
    ({"data": {"dataset": "demo/cities"}, "steering": {"kl_budget": -1}}, "kl_budget must be > 0"),
    ({"data": {"dataset": "demo/cities"}, "hallucination": {"dataset": "demo/qa", "max_new_tokens": 0}},
     "max_new_tokens must be >= 1"),
    ({"data": {"dataset": "demo/cities"}, "sae": {"layer": 1, "k": 1000}}, "1 <= k <= d_sae"),
])
def test_values_are_checked_before_anything_runs(raw, message):
    with pytest.raises(ConfigError) as error:
        parse_config(raw, source="run.toml")
    assert message in str(error.value)


@needs_demo
def test_overwrite_never_deletes_what_steerlab_did_not_write(tmp_path, capsys, monkeypatch):
    data = tmp_path / "project"
    data.mkdir()
    (data / "notes.txt").write_text("mine")
    assert main(["probe", "demo", "--dataset", "demo/cities", "--methods", "diff_means", "--out", str(data),
                 "--overwrite"]) == 2
    assert "did not write (notes.txt)" in capsys.readouterr().err and (data / "notes.txt").read_text() == "mine"
    monkeypatch.chdir(data)
    assert main(["probe", "demo", "--dataset", "demo/cities", "--methods", "diff_means", "--out", ".",
                 "--overwrite"]) == 2
    assert "current, a parent or the home folder" in capsys.readouterr().err and (data / "notes.txt").exists()
    # a run that fails on its inputs leaves the previous output as it was
    out = tmp_path / "run"
    assert main(["probe", "demo", "--dataset", "demo/cities", "--methods", "diff_means", "--layers", "0",
                 "--out", str(out)]) == 0
    before = (out / "metrics.json").read_text()
    assert main(["probe", "demo", "--dataset", "demo/cities", "--methods", "diff_means", "--layers", "7",
                 "--out", str(out), "--overwrite"]) == 2
    assert "[capture] layers = 7 is out of range" in capsys.readouterr().err
    assert (out / "metrics.json").read_text() == before


@needs_demo
def test_steer_reads_a_probe_in_token_norm_units_and_clamps(tmp_path, capsys):
    from steerlab.world import templates

    out = tmp_path / "probes"
    assert main(["probe", "demo", "--dataset", "demo/sentiment", "--methods", "diff_means", "--position", "mean",
                 "--out", str(out)]) == 0
    capsys.readouterr()
    prompts = [f"my friend said the {thing} was" for thing in templates.REVIEW_THINGS[:6]]
    assert main(["steer", "demo", str(out / "artifacts" / "probe_diff_means"), "--layer", "-2", "--alpha", "1",
                 "--max-new-tokens", "1", *prompts]) == 0
    printed = capsys.readouterr().out
    rows = [row.split() for row in printed.splitlines()[3:]]
    positive = set(templates.POSITIVE_ADJECTIVES)
    assert "x the layer's median token norm" in printed
    assert sum(row[-1] in positive for row in rows) >= sum(row[-2] in positive for row in rows) + 3
    assert main(["steer", "demo", str(out / "artifacts" / "probe_diff_means"), "--layer", "2", "--mode", "clamp",
                 "--target", "0.99", "--max-new-tokens", "1", *prompts]) == 0
    assert main(["steer", "demo", str(out / "artifacts" / "probe_diff_means"), "--mode", "clamp", *prompts]) == 2
    assert "needs --target" in capsys.readouterr().err
    assert main(["steer", "demo", str(out / "artifacts" / "probe_diff_means"), *prompts]) == 2
    assert "pass --layer" in capsys.readouterr().err


@needs_demo
def test_steering_layers_narrow_the_calibration_sweep_and_are_checked_against_the_capture(tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_text('[data]\ndataset = "demo/cities"\n[probes]\nmethods = ["diff_means"]\n'
                      '[steering]\nalphas = [1.0]\nlayers = [-1]\n[output]\ndir = "out"\n')
    metrics = main_metrics(config)
    assert {row["layer"] for row in metrics["steering"]["sweep"]} == {3}
    config.write_text('[data]\ndataset = "demo/cities"\n[capture]\nlayers = [0]\n[steering]\nlayers = [2]\n')
    assert main(["run", str(config), "--out", str(tmp_path / "other")]) == 2
    assert "[steering] layers [2] are not captured" in capsys.readouterr().err
    config.write_text('[data]\ndataset = "demo/cities"\n[steering]\nlayers = []\n')
    assert main(["run", str(config)]) == 2
    assert "[steering] layers is empty" in capsys.readouterr().err


def main_metrics(config: Path) -> dict:
    assert main(["run", str(config)]) == 0
    return json.loads((config.parent / "out" / "metrics.json").read_text())


def test_the_readme_config_is_the_example_config():
    """README's config block and `steerlab run --example` are one text (a newcomer copies either)."""
    from pathlib import Path

    from steerlab.pipeline.config import EXAMPLE_CONFIG, parse_config

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    start = readme.index("```toml\n", readme.index("## Your model and data")) + len("```toml\n")
    assert readme[start:readme.index("```", start)] == EXAMPLE_CONFIG
    import tomllib

    parse_config(tomllib.loads(EXAMPLE_CONFIG), source="example")  # and it is a valid config
