"""`steerlab demo`: the whole pipeline on the demo model, its metrics, artifacts and report."""

import json
from pathlib import Path

import pytest

DEMO = Path(__file__).parents[1] / "assets" / "demo-model" / "config.json"
pytestmark = pytest.mark.skipif(not DEMO.is_file(), reason="assets/demo-model not trained yet")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    from steerlab.cli import main

    out = tmp_path_factory.mktemp("demo") / "run"
    assert main(["demo", "--out", str(out)]) == 0
    return out


def test_metrics_follow_the_schema_and_show_the_findings(demo_run):
    metrics = json.loads((demo_run / "metrics.json").read_text())
    assert metrics["schema"] == 1 and metrics["model"]["name"] == "demo"
    assert max(metrics["probes"]["held_out_accuracy"]) >= 0.9
    assert {row["method"] for row in metrics["probes"]["sweep"]} == {"raptor", "diff_means", "lda", "logistic"}
    r2 = metrics["probes"]["transfer_r2"]
    assert r2["mahalanobis"]["r2"] > r2["cosine"]["r2"]
    truth, budget = metrics["steering"]["truth"], 0.1
    # Every choice is made within KL 0.1 nats/token on neutral text. There, no setting flips the 95% the
    # calibration asks for (that costs KL 0.86: see test_steering_demo.py), which the metrics say:
    assert truth["kl_budget"] == budget and truth["kl_neutral"] <= budget and truth["qualified"] is False
    within = [row for row in metrics["steering"]["truth_sweep"] if not row["control"] and row["kl"] <= budget]
    assert truth["calibration_flip_false_to_true"] == max(row["efficacy"] for row in within)  # the best within it
    assert any(row["efficacy"] >= 0.95 and row["kl"] > budget for row in metrics["steering"]["truth_sweep"])
    assert truth["test_flip_false_to_true"] >= 0.6  # measured 0.81 (layer 0, alpha 0.35, KL 0.089)
    assert truth["test_flip_true_to_false"] >= 0.2  # measured 0.35
    assert truth["test_control_flip_false_to_true"] <= 0.05 and truth["test_control_flip_true_to_false"] <= 0.05
    sentiment = metrics["steering"]["sentiment"]
    assert sentiment["qualified"] is True and sentiment["kl_neutral"] <= budget  # measured layer 1, alpha 1, KL 0.002
    assert sentiment["calibration_flip"] >= 0.9 >= 0.2 >= sentiment["calibration_control_flip"]
    # The demo model completes this held-out template negatively ("bland ."), so +alpha is the direction
    # with room to move; -alpha has none left and is reported, not asserted.
    assert sentiment["positive_rate_plus"] >= sentiment["positive_rate_unsteered"] + 0.3  # measured 0.44 (0 unsteered)
    assert sentiment["positive_rate_control"] <= sentiment["positive_rate_unsteered"] + 0.1  # measured 0
    assert set(metrics["timings"]) == {"capture", "probes", "steering", "hallucination", "sae", "report"}
    hallucination = metrics["hallucination"]
    assert set(hallucination["methods"]) == {"mlp", "mlp_plus", "linear", "max_prob", "entropy"}
    assert hallucination["methods"]["mlp"]["answer"]["auroc"] >= 0.75  # measured 0.83; confidence 0.90
    assert hallucination["methods"]["mlp_plus"]["answer"]["auroc"] >= 0.91  # measured 0.943
    assert hallucination["layer_search"]["best_layer"] in range(metrics["model"]["n_layers"])
    sae = metrics["sae"]
    assert min(row["explained_variance"] for row in sae["quality"]) >= 0.8
    truth = {row["method"]: row for row in sae["concepts"]["truth"]["comparison"]}
    assert truth["diff_means"]["detection_auroc"] >= 0.9
    assert truth["random"]["efficacy"] < truth["diff_means"]["efficacy"] - 0.1  # measured 0.14 vs 0.38


def test_artifacts_load_back(demo_run):
    from steerlab import SteeringVector
    from steerlab.artifacts import ArtifactError
    from steerlab.hallucination import TokenProbe
    from steerlab.probes import load_probe

    probe = load_probe(demo_run / "artifacts" / "raptor_cities")
    vector = SteeringVector.load(demo_run / "artifacts" / "truth_vector")
    assert probe.coef_.shape[-1] == vector.d_model == 128
    assert vector.model_name == "demo"
    token_probe = TokenProbe.load(demo_run / "artifacts" / "hallucination_mlp_plus")
    assert type(token_probe).__name__ == "HallucinationProbe" and token_probe.layer_ in range(4)
    with pytest.raises(ArtifactError, match="TokenProbe.load"):  # the linear-probe loader names the right one
        load_probe(demo_run / "artifacts" / "hallucination_mlp_plus")


def test_report_is_one_self_contained_page(demo_run):
    page = (demo_run / "report.html").read_text()
    assert page.count("plotly.js v") <= 2 and "Plotly.newPlot" in page  # plotly.js embedded once, figures drawn
    assert "cdn.plot.ly" not in page.split("Plotly.newPlot")[0].lower()[-2000:]
    assert "within the KL budget of 0.1 nats per token" in page and "efficacy-KL frontier" in page
    for heading in ("Where truth lives", "transfer across domains", "Steering with the truth direction",
                    "Steering sentiment", "Hallucination detection", "Confidently wrong answers",
                    "SAE features vs supervised directions: truth", "Detect vs steer"):
        assert heading in page


def test_the_report_rebuilds_from_the_saved_sections(demo_run, tmp_path):
    from steerlab.report.sections_file import load_sections

    titles = [section.title for section in load_sections(demo_run)]
    assert titles[0] == "Where truth lives" and titles[-1] == "Run" and len(titles) >= 10
    assert any(title.startswith("SAE") for title in titles)


def test_an_existing_output_is_not_overwritten_without_the_flag(demo_run, capsys):
    from steerlab.cli import main

    assert main(["demo", "--out", str(demo_run)]) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert (demo_run / "metrics.json").is_file()


def test_the_demo_report_renders_in_chromium(demo_run, tmp_path):
    from test_report_browser import CHROMIUM, console_errors, non_background_share, render

    if CHROMIUM is None:
        pytest.skip("no chromium on this machine (apt-get install chromium)")
    log = render(demo_run / "report.html", tmp_path / "demo.png")
    assert not console_errors(log), console_errors(log)
    assert non_background_share(tmp_path / "demo.png") > 0.01


def test_the_demo_report_has_a_summary_flags_and_a_sound_layout(demo_run):
    from test_report_browser import CHROMIUM, page_checks, structure_problems

    page = (demo_run / "report.html").read_text()
    assert "<title>steerlab demo:" in page and "id='summary'" in page and "nav id='contents'" in page
    assert "Timings (s): {" not in page  # the Run section is tables, not a dict
    if CHROMIUM is None:
        pytest.skip("no chromium on this machine (apt-get install chromium)")
    assert structure_problems(page_checks(demo_run / "report.html")) == []


def test_the_sae_stage_beside_the_others_needs_a_model_it_can_load_again(tmp_path):
    import steerlab
    from steerlab.pipeline.demo import run_demo

    adapter = steerlab.load_model("demo")
    with pytest.raises(ValueError, match="name or a path"):
        run_demo(tmp_path / "run", model=adapter, sae_beside=True)
    assert not (tmp_path / "run").exists()


def test_an_error_in_the_sae_stage_process_reaches_the_caller():
    from steerlab.pipeline.sae_stage_process import SaeStageProcess

    beside = SaeStageProcess("no-such-model", threads=1)
    with pytest.raises(RuntimeError, match="no-such-model"):
        beside.result()
    beside.close()
    assert not beside.folder.exists()


def test_the_sae_stage_process_is_stopped_when_the_demo_fails(tmp_path):
    from steerlab.pipeline.demo import run_demo
    from steerlab.pipeline.sae_stage_process import SaeStageProcess

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "mine.txt").write_text("kept")
    beside = SaeStageProcess("demo", threads=1)
    with pytest.raises(FileExistsError):  # the output exists: the demo stops before any stage
        run_demo(tmp_path / "run", sae_beside=beside)
    assert beside._process.returncode is not None and not beside.folder.exists()  # no process outlives it
    assert (tmp_path / "run" / "mine.txt").read_text() == "kept"
    with pytest.raises(ValueError, match="same model"):
        run_demo(tmp_path / "other", model="demo", sae_beside=SaeStageProcess("demo-other", threads=1))
