"""Bad input on the command line: exit code 2 and one line naming the problem, before any work is done."""

from __future__ import annotations

from pathlib import Path

import pytest

from steerlab.cli import main

DEMO = Path(__file__).parents[1] / "assets" / "demo-model" / "model.safetensors"
needs_demo = pytest.mark.skipif(not DEMO.is_file(), reason="assets/demo-model not trained yet")

# (argv, what stderr must say): refused by the argument parser, before anything is loaded
PARSER_REFUSALS = [
    (["steer", "demo", "v", "x", "--alpha", "nan"], "--alpha: must be a finite number, got nan"),
    (["steer", "demo", "v", "x", "--alpha", "inf"], "--alpha: must be a finite number, got inf"),
    (["steer", "demo", "v", "x", "--alpha=-Infinity"], "--alpha: must be a finite number"),
    (["steer", "demo", "v", "x", "--alpha", "strong"], "--alpha: takes a number, got 'strong'"),
    (["steer", "demo", "v", "x", "--mode", "clamp", "--target", "nan"], "--target: must be a finite number"),
    (["steer", "demo", "v", "x", "--max-new-tokens", "0"], "--max-new-tokens: must be at least 1, got 0"),
    (["steer", "demo", "v", "x", "--mode", "push"], "--mode: invalid choice: 'push'"),
    (["steer", "demo", "v", "x", "--positions", "first"], "--positions: takes all, prompt, generated, last"),
    (["steer", "demo", "v", "x", "--positions", "1:x"], "a range 'k:' / 'k:m', got '1:x'"),
    (["capture", "demo", "x", "--out", "o", "--batch-size", "0"], "--batch-size: must be at least 1, got 0"),
    (["capture", "demo", "x", "--out", "o", "--batch-size", "many"], "--batch-size: takes a whole number"),
    (["capture", "demo", "x", "--out", "o", "--layers", "0,two"], "--layers takes 'all' or comma-separated ints"),
    (["capture", "demo", "x", "--out", "o", "--backend", "jax"], "--backend: invalid choice: 'jax'"),
    (["hallucination", "demo", "--out", "o", "--test-share", "1.5"], "must be between 0 and 1 (exclusive), got 1.5"),
    (["hallucination", "demo", "--out", "o", "--test-share", "nan"], "must be between 0 and 1 (exclusive), got nan"),
    (["hallucination", "demo", "--out", "o", "--test-share", "half"], "takes a number between 0 and 1, got 'half'"),
    (["hallucination", "demo", "--out", "o", "--max-new-tokens", "-3"], "--max-new-tokens: must be at least 1"),
    (["capture", "demo", "x"], "the following arguments are required: --out"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
]


@pytest.mark.parametrize(("argv", "message"), PARSER_REFUSALS, ids=[" ".join(a) for a, _ in PARSER_REFUSALS])
def test_the_parser_refuses_bad_values(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def refused(argv: list[str], capsys) -> str:
    """Run a command that must refuse its input: exit code 2, no traceback, its one-line message returned."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    message = [line for line in err.splitlines() if line.startswith(f"steerlab {argv[0]}: ")]
    assert len(message) == 1, err
    return message[0]


def test_commands_refuse_missing_and_unusable_inputs(tmp_path, capsys):
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "bad.txt").write_bytes(b"caf\xe9\n")
    (tmp_path / "bad.toml").write_text("[data]\ndataset = 'demo/cities'\n[capture]\nsitee = 'resid_post'\n")
    (tmp_path / "sae-out").mkdir()
    (tmp_path / "sae-out" / "cfg.json").write_text("{}")
    cases = [
        (["capture", "demo", "--out", str(tmp_path / "o")], "no texts given"),
        (["capture", "demo", "--file", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "o")], "no such file"),
        (["capture", "demo", "--file", str(tmp_path / "bad.txt"), "--out", str(tmp_path / "o")], "UTF-8"),
        (["run"], "steerlab run --example"),
        (["run", str(tmp_path / "missing.toml")], "no such config file"),
        (["run", str(tmp_path / "bad.toml")], "has no key 'sitee' (did you mean 'site'?)"),
        (["probe", "demo", "--file", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "o")], "missing.csv"),
        (["demo", "--out", str(tmp_path / "a-file")], "is a file"),
        (["train-sae", "demo", "--layer", "1", "--out", str(tmp_path / "s"), "--lr", "nan"], "--lr must be a positive finite"),
        (["train-sae", "demo", "--layer", "1", "--out", str(tmp_path / "s"), "--l1-coefficient", "-1"],
         "--l1-coefficient must be a finite number >= 0"),
        (["train-sae", "demo", "--layer", "1", "--out", str(tmp_path / "s"), "--k", "0"], "--k must be between 1 and --d-sae"),
        (["train-sae", "demo", "--layer", "1", "--out", str(tmp_path / "s"), "--steps", "0"], "--steps must be at least 1"),
        (["train-sae", "demo", "--layer", "1", "--out", str(tmp_path / "sae-out")], "already holds an SAE"),
        (["report", str(tmp_path)], "sections"),
    ]
    for argv, message in cases:
        assert message in refused(argv, capsys), argv
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "bad.toml", "bad.txt", "sae-out"]  # nothing written


@needs_demo
def test_steer_refuses_bad_artifacts_and_settings_before_generating(tmp_path, capsys):
    from steerlab.steering import SteeringVector

    vector = SteeringVector.from_contrast_pairs(__import__("steerlab").load_model("demo"), ["good ."], ["bad ."],
                                                layer=1)
    vector.save(tmp_path / "vector")
    cases = [
        (["steer", "demo", str(tmp_path / "missing"), "x"], "missing"),
        (["steer", "demo", str(tmp_path / "vector")], "no prompts given"),
        (["steer", "demo", str(tmp_path / "vector"), "x", "--mode", "clamp"], "--mode clamp needs --target"),
        (["steer", "demo", str(tmp_path / "vector"), "x", "--mode", "set"], "--mode set needs --target"),
        (["capture", "demo", "x", "--layers", "7", "--out", str(tmp_path / "o")], "out of range"),
        (["capture", "demo", "x", "--site", "resid_nowhere", "--out", str(tmp_path / "o")], "resid_nowhere"),
    ]
    for argv, message in cases:
        assert message in refused(argv, capsys), argv
    assert not (tmp_path / "o").exists()


def test_the_cli_knows_the_same_steering_positions_as_the_library():
    from steerlab.cli.parser import STEER_POSITIONS
    from steerlab.steering import STEER_POSITIONS

    assert STEER_POSITIONS == STEER_POSITIONS


def test_every_model_command_takes_the_model_device_and_dtype():
    from steerlab.cli import MODEL_COMMANDS, command_flags
    from steerlab.cli.parser import build_parser

    parser = build_parser()
    argvs = {"capture": ["--out", "o"], "probe": ["--dataset", "demo/cities", "--out", "o"], "steer": ["v"],
             "hallucination": ["--out", "o"], "train-sae": ["--layer", "1", "--out", "o"], "sae-feature": ["1", "--out", "o"]}
    assert set(argvs) == MODEL_COMMANDS - {"demo", "run"}  # demo runs the embedded model; run reads [model]
    for command, rest in argvs.items():
        assert {"--backend", "--device", "--dtype"} <= command_flags(parser, command), command
        args = parser.parse_args([command, "demo", *rest, "--dtype", "bfloat16", "--device", "cpu"])
        assert (args.model, args.dtype, args.device) == ("demo", "bfloat16", "cpu"), command


def test_errors_name_command_line_flags_not_keyword_arguments(tmp_path, capsys):
    from steerlab.cli import flag_wording

    flags = {"--text-column", "--label-column"}
    assert flag_wording("pass text_column=/label_column=/group_column= to name them.", flags) == \
        "pass --text-column/--label-column/group_column= to name them."
    table = tmp_path / "t.csv"
    table.write_text("statement,label\na b,1\nc d,0\n")
    assert main(["capture", "demo", "--data", str(table), "--text-column", "foo", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "--text-column naming the column" in err and "text_column=" not in err
