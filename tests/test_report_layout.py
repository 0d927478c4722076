"""The report page: summary and contents, tables that fit, tidied figures, titles kept on rebuild."""

import json

import plotly.graph_objects as go
import pytest

from steerlab.report import Section, write_report
from steerlab.report.figure_layout import tidy_figure
from steerlab.report.run_info import run_info_section
from steerlab.report.sections_file import rebuild_report, save_page, save_sections
from steerlab.report.summary import findings


def layer_figure(n_layers=4):
    return go.Figure(go.Scatter(x=list(range(n_layers)), y=[0.5] * n_layers)).update_layout(xaxis_title="layer")


def test_layer_axes_get_integer_ticks_and_other_axes_are_left_alone():
    figure = tidy_figure(layer_figure())
    assert (figure.layout.xaxis.dtick, figure.layout.xaxis.tickformat) == (1, "d")
    assert figure.layout.yaxis.dtick is None
    assert tidy_figure(layer_figure(30)).layout.xaxis.dtick == 2  # at most ~25 labels
    fractional = go.Figure(go.Scatter(x=[0.1, 0.5], y=[1, 2])).update_layout(xaxis_title="layer")
    assert tidy_figure(fractional).layout.xaxis.dtick is None  # not layer numbers: left alone


def test_log_axes_are_labelled_with_plain_numbers():
    figure = go.Figure(go.Scatter(x=[0.0004, 0.003, 0.08, 0.9], y=[0, 1, 2, 3])).update_xaxes(type="log")
    axis = tidy_figure(figure).layout.xaxis
    assert list(axis.ticktext) == ["0.001", "0.01", "0.1", "1"]
    narrow = go.Figure(go.Scatter(x=[1, 64], y=[0, 1])).update_xaxes(type="log")
    assert "2" in tidy_figure(narrow).layout.xaxis.ticktext  # 1, 2, 5 x 10^k over two decades or less


def test_long_legends_move_below_the_plot_and_the_figure_grows():
    figure = go.Figure([go.Scatter(x=[0, 1], y=[i, i], name=f"layer {i}") for i in range(30)]).update_layout(height=400)
    figure = tidy_figure(figure)
    assert figure.layout.legend.orientation == "h" and figure.layout.height > 400
    short = tidy_figure(go.Figure([go.Scatter(x=[0], y=[0], name="a"), go.Scatter(x=[0], y=[1], name="b")]))
    assert short.layout.legend.orientation is None


def test_text_labels_do_not_sit_on_each_other():
    figure = go.Figure(go.Scatter(x=[0.99, 0.99, 0.99, 0.5], y=[0.16, 0.17, 0.17, 0.9], mode="markers+text",
                                  text=["raptor", "sae_aligned", "diff_means", "far"]))
    trace = tidy_figure(figure).data[0]
    assert trace.text[1] == "sae_aligned, diff_means" and trace.text[2] == ""  # same place: one label
    assert trace.textposition[0] != trace.textposition[1]  # close: different sides


def test_placeholder_annotations_are_removed():
    figure = go.Figure(go.Scatter(x=[0, 1], y=[0, 1]))
    figure.add_hline(y=0.5, annotation_text=None)
    figure.add_hline(y=0.2, annotation_text="chance")
    assert [a.text for a in tidy_figure(figure).layout.annotations] == ["chance"]


def test_the_page_has_a_summary_contents_and_flags_beside_sections(tmp_path):
    metrics = {"steering": {"truth": {"kl_budget": 0.1, "kl_neutral": 0.4, "chosen": None}}}
    sections = [Section("Steering with the truth direction", ["Text."]), Section("Steering with the truth direction"),
                Section("Table", tables=[[{"method": "a", "auroc": float("nan"), "info": {"k": 1}}]])]
    page = write_report(tmp_path / "r.html", "T", sections, metrics=metrics).read_text()
    summary, rest = page.split("<nav id='contents'>")
    assert "id='summary'" in summary and "2 flags" in summary and "no (layer, alpha) kept KL" in summary
    assert "href='#s-steering-with-the-truth-direction'" in summary
    for anchor in ("s-steering-with-the-truth-direction", "s-steering-with-the-truth-direction-2", "s-table"):
        assert f"href='#{anchor}'" in rest and f"id='{anchor}'" in rest
    assert rest.count("class='flag'") == 2  # the KL flag beside its section, the NaN flag beside the table
    assert "class='flagged'" in rest and "k: 1" in rest and "{'k'" not in page  # no raw dicts


def test_a_page_without_flags_says_what_was_checked(tmp_path):
    page = write_report(tmp_path / "r.html", "T", [Section("A", ["x"])]).read_text()
    assert "No flags. Checked:" in page and "KL budget" in page


def test_wide_tables_wrap_their_headers_and_use_a_smaller_font(tmp_path):
    row = {f"answer recall@{k}%fpr": 0.5 for k in range(12)}
    page = write_report(tmp_path / "r.html", "T", [Section("A", tables=[[row]])]).read_text()
    assert "<table class='wide'>" in page and "recall@<wbr>0%fpr" in page


def test_the_run_section_is_tables_not_a_dict():
    section = run_info_section({"capture": 1.5, "sae": 4.5}, {"torch": "2.0"})
    assert section.tables[0][0] == {"stage": "capture", "seconds": 1.5, "share": "25%"}
    assert "{" not in section.paragraphs[0]


def test_a_rebuilt_report_keeps_the_command_s_title_and_summary(tmp_path):
    save_sections(tmp_path, "probes", [Section("Where it lives", ["x"], figures=[layer_figure()])])
    save_page(tmp_path, "steerlab probe: demo/cities on demo", "Metrics: metrics.json.")
    held_out = [{"method": "raptor", "layer": 1, "accuracy": 0.9, "auroc": 0.95}]
    (tmp_path / "metrics.json").write_text(json.dumps({"probes": {"held_out": held_out}}))
    page = rebuild_report(tmp_path).read_text()
    assert "<title>steerlab probe: demo/cities on demo</title>" in page
    assert "the best held-out accuracy is 0.900 (raptor, layer 1" in page
    assert "<title>Other</title>" in rebuild_report(tmp_path, title="Other").read_text()


@pytest.mark.parametrize("metrics, expected", [
    ({"probes": {"held_out_accuracy": [0.6, 0.95, 0.8]}}, "RaptorProbe's held-out accuracy is 0.950 at its best layer (1)"),
    ({"steering": {"skipped": "probe stage only"}}, "Steering: not run (probe stage only)."),
    ({"hallucination": {"methods": {"mlp": {"answer": {"auroc": 0.8}}, "max_prob": {"answer": {"auroc": 0.9}}}}},
     "the best probe (mlp, answer AUROC 0.800) does NOT beat output confidence (max_prob, 0.900)"),
])
def test_summary_lines_state_the_numbers(metrics, expected):
    assert any(expected in line for line in findings(metrics))


def test_summary_skips_stages_it_does_not_know():
    assert findings({"probes": {"something": 1}, "steering": {"new": {}}}) == []


def test_each_command_s_report_is_titled_for_what_ran(tmp_path, capsys):
    from steerlab.cli import main

    out = tmp_path / "probe"
    assert main(["probe", "demo", "--dataset", "demo/cities", "--methods", "diff_means", "--layers", "0,1",
                 "--out", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert "<title>steerlab probe: demo/cities on demo</title>" in page and "steerlab run" not in page
    assert "Steering: not run (probe stage only)." in page and "id='s-run'" in page
    (out / "report.html").unlink()
    assert main(["report", str(out)]) == 0  # rebuilt: the same title and summary
    rebuilt = (out / "report.html").read_text()
    assert "<title>steerlab probe: demo/cities on demo</title>" in rebuilt and "id='summary'" in rebuilt
