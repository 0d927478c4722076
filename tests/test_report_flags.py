"""steerlab.report.flags: each check fires on a result a careful reader would distrust, and stays quiet otherwise."""

import math

from steerlab.report.flags import (CV_GAP, KL_TOLERANCE, accuracy_ceiling_flags, all_flags, chance_layer_flags,
                                   cv_gap_flags, degenerate, generation_flags, kl_budget_flags, nan_flags,
                                   section_for)


def steering(kl, budget=0.1):
    return {"steering": {"truth": {"kl_budget": budget, "kl_neutral": kl, "qualified": False}}}


def test_steering_outside_the_kl_budget_is_flagged_and_inside_is_not():
    assert kl_budget_flags(steering(0.099)) == []
    assert kl_budget_flags(steering(0.1 * (1 + KL_TOLERANCE) * 0.999)) == []  # within rounding of the budget
    [flag] = kl_budget_flags(steering(0.3))
    assert flag.kind == "KL budget" and flag.where == "steering.truth" and "0.300" in flag.message


def test_comparison_rows_whose_kl_was_not_matched_are_flagged():
    rows = [{"method": "diff_means", "kl": 0.099, "matched": True},
            {"method": "sae_output", "kl": 0.02, "matched": False}]
    [flag] = kl_budget_flags({"sae": {"concepts": {"truth": {"kl_budget": 0.1, "comparison": rows}}}})
    assert "sae_output" in flag.message and "diff_means" not in flag.message
    assert flag.where == "sae.concepts.truth"


def test_validation_far_from_held_out_is_flagged_per_method():
    sweep = [{"method": "raptor", "layer": layer, "accuracy": 1.0} for layer in range(4)]
    held_out = [{"method": "raptor", "layer": layer, "accuracy": a} for layer, a in enumerate([0.97, 0.95, 0.7, 0.6])]
    [flag] = cv_gap_flags({"probes": {"sweep": sweep, "held_out": held_out}})
    assert "layers 2, 3" in flag.message and "1.000 vs 0.600" in flag.message
    close = [{**row, "accuracy": 1.0 - CV_GAP / 2} for row in held_out]
    assert cv_gap_flags({"probes": {"sweep": sweep, "held_out": close}}) == []


def test_the_demo_s_held_out_list_and_cross_validated_aurocs_are_compared_too():
    sweep = [{"method": "raptor", "layer": 0, "accuracy": 0.99}, {"method": "lda", "layer": 0, "accuracy": 0.5}]
    assert len(cv_gap_flags({"probes": {"sweep": sweep, "held_out_accuracy": [0.7]}})) == 1
    chosen = {"sae": {"concepts": {"truth": {"k_sparse_chosen": {"k": 1, "train_cv_auroc": 1.0, "test_auroc": 0.51}}}}}
    [flag] = cv_gap_flags(chosen)
    assert flag.where == "sae.concepts.truth.k_sparse_chosen" and "k = 1" in flag.message
    hallucination = {"hallucination": {"train_cv": {"mlp_plus": 0.93}, "methods": {"mlp_plus": {"answer": {"auroc": 0.7}}}}}
    assert len(cv_gap_flags(hallucination)) == 1


def test_accuracy_at_the_class_balance_is_flagged():
    rows = [{"method": m, "layer": layer, "accuracy": 0.845} for m in "abcd" for layer in range(4)]
    rows[0]["accuracy"], rows[1]["accuracy"] = 0.9, 0.88
    [flag] = accuracy_ceiling_flags(rows, "held-out", majority=0.845, n=200)
    assert flag.kind == "class balance" and "14 of 16" in flag.message
    # without the balance, the plateau itself is the signal
    [flag] = accuracy_ceiling_flags(rows, "held-out")
    assert flag.kind == "accuracy ceiling" and "14 of 16" in flag.message
    varied = [{"accuracy": 0.6 + 0.01 * i} for i in range(16)]
    assert accuracy_ceiling_flags(varied, "held-out", majority=0.5, n=200) == []


def test_perfect_accuracy_everywhere_is_not_called_a_ceiling():
    assert accuracy_ceiling_flags([{"accuracy": 1.0}] * 8, "validation sweep") == []


def test_layers_where_every_method_is_at_chance_are_flagged():
    rows = [{"method": m, "layer": layer, "auroc": 0.52 if layer == 0 else 0.9} for m in "ab" for layer in range(3)]
    rows.append({"method": "c", "layer": 2, "auroc": 0.49})  # one method at chance is not enough
    [flag] = chance_layer_flags(rows, "held-out")
    assert "at layer 0" in flag.message
    assert chance_layer_flags([{"method": "a", "layer": 0, "auroc": 0.6}], "held-out") == []


def test_degenerate_generations():
    assert degenerate("") == "empty" and degenerate("it it") == "one word repeated"
    assert degenerate("the the the end") == "3 identical words in a row"
    assert degenerate("delicious .") == degenerate("it was good , it was") == ""
    examples = {"steering": {"sentiment": {"examples": [
        {"prompt": "a", "unsteered": "bland .", "minus": "false false false"},
        {"prompt": "b", "unsteered": "bland .", "minus": "awful ."}]}}}
    [flag] = generation_flags(examples)
    assert "1 of 2 'minus'" in flag.message and flag.where == "steering.sentiment.examples"
    tokens = {"hallucination": {"live": {"examples": [{"prompt": "q", "tokens": [], "scores": []}]}}}
    assert "empty" in generation_flags(tokens)[0].message


def test_nan_and_missing_cells_are_counted_by_column():
    rows = [{"method": "a", "auroc": float("nan"), "recall": None}, {"method": "b", "auroc": 0.9, "recall": 0.5}]
    [flag] = nan_flags(rows, "Hallucination detection")
    assert "2 table cells" in flag.message and "'auroc'" in flag.message and flag.where == "Hallucination detection"
    assert nan_flags([{"a": 1.0, "b": ""}], "x") == []


def test_flags_find_their_section():
    titles = ["Where truth lives", "Steering with the truth direction", "SAE features vs supervised directions: truth"]
    flags = all_flags({**steering(0.5), "sae": {"concepts": {"truth": {"k_sparse_chosen": {
        "train_cv_auroc": 1.0, "test_auroc": 0.5}}}}}, [("Where truth lives", [{"x": math.nan}])])
    assert [section_for(flag, titles) for flag in flags] == [
        "Steering with the truth direction", "SAE features vs supervised directions: truth", "Where truth lives"]
    assert section_for(flags[0], ["Unrelated"]) is None


def test_a_clean_run_has_no_flags():
    metrics = {**steering(0.05),
               "probes": {"sweep": [{"method": "a", "layer": 0, "accuracy": 0.91, "auroc": 0.95}],
                          "held_out": [{"method": "a", "layer": 0, "accuracy": 0.9, "auroc": 0.94}]},
               "data": {"test_majority_share": 0.5, "n_test": 100}}
    assert all_flags(metrics, [("t", [{"a": 1.0}])]) == []
