"""Output folders: built aside, swapped in at the end; --overwrite never loses a file; Ctrl-C is one line."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from steerlab.cli import main
from steerlab.output_folder import RECORD, check_output, staged_output

DEMO = Path(__file__).parents[1] / "assets" / "demo-model" / "model.safetensors"
needs_demo = pytest.mark.skipif(not DEMO.is_file(), reason="assets/demo-model not trained yet")


def tree_digest(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (links included, never followed) with its sha256."""
    digest = {}
    for path in sorted(folder.rglob("*")):
        key = str(path.relative_to(folder))
        if path.is_symlink():
            digest[key] = "link -> " + os.readlink(path)
        elif path.is_file():
            digest[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digest


def previous_output(folder: Path) -> Path:
    with staged_output(folder, overwrite=False) as work:
        (work / "metrics.json").write_text('{"run": 1}')
        (work / "artifacts").mkdir()
        (work / "artifacts" / "probe_lda.safetensors").write_bytes(b"weights")
        (work / "artifacts" / "probe_lda.json").write_text("{}")
        (work / "sections").mkdir()
        (work / "sections" / "00-probes.json").write_text("[]")
    return folder


def test_a_successful_run_replaces_the_previous_output_and_records_its_files(tmp_path):
    out = previous_output(tmp_path / "proj")
    with staged_output(out, overwrite=True) as work:
        assert work != out and work.parent == out.parent and work.name.startswith(".proj.steerlab-partial-")
        (work / "metrics.json").write_text('{"run": 2}')
    assert (out / "metrics.json").read_text() == '{"run": 2}'
    assert not (out / "artifacts").exists()  # the previous run's outputs are replaced, not merged
    assert sorted(p.name for p in tmp_path.iterdir()) == ["proj"]  # no partial or previous folder left behind
    assert '"metrics.json"' in (out / RECORD).read_text()


@pytest.mark.parametrize("failure", [RuntimeError("a stage failed"), KeyboardInterrupt()])
def test_a_failed_or_interrupted_run_leaves_the_previous_output_exactly_as_it_was(tmp_path, failure):
    out = previous_output(tmp_path / "proj")
    before = tree_digest(out)
    with pytest.raises(type(failure)):
        with staged_output(out, overwrite=True) as work:
            (work / "metrics.json").write_text('{"run": 2}')
            raise failure
    assert tree_digest(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["proj"]


@pytest.mark.parametrize("foreign", ["artifacts/my_precious_results.txt", "sections/notes.md", "notes.txt",
                                     "artifacts/mine.safetensors"])
def test_overwrite_refuses_a_folder_holding_a_file_steerlab_did_not_write(tmp_path, foreign):
    out = previous_output(tmp_path / "proj")
    (out / foreign).write_text("my results")
    before = tree_digest(out)
    with pytest.raises(FileExistsError, match=f"files steerlab did not write \\({foreign}\\).*never deletes your"):
        with staged_output(out, overwrite=True):
            pass
    assert tree_digest(out) == before


def test_overwrite_refuses_symbolic_links_instead_of_following_them(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("keep")
    out = previous_output(tmp_path / "proj")
    (out / "sections" / "00-probes.json").unlink()
    (out / "sections").rmdir()
    (out / "sections").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(ValueError, match="symbolic link \\(sections\\).*does not follow links"):
        check_output(out, overwrite=True)
    link = tmp_path / "link"
    link.symlink_to(out, target_is_directory=True)
    with pytest.raises(ValueError, match="is a symbolic link: steerlab does not write through links"):
        check_output(link, overwrite=True)
    assert (elsewhere / "keep.txt").read_text() == "keep"


def test_refusals_that_protect_your_folders(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file"):
        check_output(tmp_path / "file", overwrite=True)
    with pytest.raises(NotADirectoryError, match="inside .*file, which is a file"):
        check_output(tmp_path / "file" / "out", overwrite=True)
    out = previous_output(tmp_path / "proj")
    with pytest.raises(FileExistsError, match="not empty: choose another --out, or pass --overwrite"):
        check_output(out, overwrite=False)
    monkeypatch.chdir(out)
    with pytest.raises(ValueError, match="current, a parent or the home folder"):
        check_output(out, overwrite=True)
    (out / RECORD).write_text("{not json")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="unreadable.*cannot tell which files steerlab wrote"):
        check_output(out, overwrite=True)


def test_an_output_written_before_the_record_existed_is_still_replaceable(tmp_path):
    out = tmp_path / "old"
    (out / "artifacts").mkdir(parents=True)
    (out / "metrics.json").write_text("{}")
    (out / "artifacts" / "probe_raptor.safetensors").write_bytes(b"w")
    assert check_output(out, overwrite=True) == out
    (out / "artifacts" / "mine.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="artifacts/mine.txt"):
        check_output(out, overwrite=True)


def test_a_killed_runs_partial_folder_is_removed_by_the_next_run(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".proj.steerlab-partial-{dead.stdout.strip()}"
    stale.mkdir()
    (stale / "metrics.json").write_text("half")
    with staged_output(tmp_path / "proj", overwrite=False) as work:
        (work / "metrics.json").write_text("{}")
    assert not stale.exists() and (tmp_path / "proj" / "metrics.json").read_text() == "{}"


# ------------------------------------------------------------------ the CLI, killed and interrupted

ROWS = [("The city of Paris is in France.", 1, "Paris"), ("The city of Paris is in Japan.", 0, "Paris"),
        ("The city of Tokyo is in Japan.", 1, "Tokyo"), ("The city of Tokyo is in Peru.", 0, "Tokyo"),
        ("The city of Lima is in Peru.", 1, "Lima"), ("The city of Lima is in Chile.", 0, "Lima"),
        ("The city of Rome is in Italy.", 1, "Rome"), ("The city of Rome is in Spain.", 0, "Rome"),
        ("The city of Oslo is in Norway.", 1, "Oslo"), ("The city of Oslo is in Italy.", 0, "Oslo"),
        ("The city of Cairo is in Egypt.", 1, "Cairo"), ("The city of Cairo is in Chad.", 0, "Cairo")] * 4


def probe_command(csv: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "steerlab.cli", "probe", "demo", "--file", str(csv), "--text-column", "statement",
            "--label-column", "label", "--group-column", "city", "--methods", "diff_means", "--out", str(out),
            "--overwrite"]


@pytest.fixture(scope="module")
def probed(tmp_path_factory) -> tuple[Path, Path]:
    """A statements CSV and a previous ``steerlab probe`` output made from it."""
    folder = tmp_path_factory.mktemp("probe")
    csv = folder / "statements.csv"
    csv.write_text("statement,label,city\n" + "".join(f"{t},{y},{c}{i // 12}\n" for i, (t, y, c) in enumerate(ROWS)))
    out = folder / "proj"
    assert main(probe_command(csv, out)[3:]) == 0
    return csv, out


def child_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def wait_for(predicate, process: subprocess.Popen, timeout: float = 300.0) -> bool:
    """Poll until ``predicate()``; False if the process ended first (the test then checks the end state)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if process.poll() is not None:
            return False
        time.sleep(0.02)
    raise AssertionError("the child process neither reached the kill point nor ended")


def partial_folder(out: Path, pid: int | str = "*") -> Path | None:
    """The staging folder of process ``pid`` (any process by default)."""
    return next(iter(out.parent.glob(f".{out.name}.steerlab-partial-{pid}")), None)


KILL_POINTS = {  # (out, the child's pid) -> has the child reached this point?
    "staging folder created": lambda out, pid: partial_folder(out, pid) is not None,
    "artifacts written": lambda out, pid: (p := partial_folder(out, pid)) is not None and any(
        (p / "artifacts").glob("*.json")),
    "sections written": lambda out, pid: (p := partial_folder(out, pid)) is not None and (p / "sections").is_dir(),
}


@needs_demo
@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_sigkill_during_an_overwrite_run_leaves_the_previous_output_untouched(probed, point):
    csv, out = probed
    before = tree_digest(out)
    process = subprocess.Popen(probe_command(csv, out), env=child_env(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        reached = wait_for(lambda: KILL_POINTS[point](out, process.pid), process)
        if reached:
            process.kill()
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    if reached:
        assert tree_digest(out) == before
    else:  # the run finished before the kill point was seen: a complete new output, nothing foreign lost
        assert (out / RECORD).is_file() and set(tree_digest(out)) == set(before)


@needs_demo
def test_ctrl_c_prints_one_line_exits_130_and_keeps_the_previous_output(probed):
    csv, out = probed
    before = tree_digest(out)
    process = subprocess.Popen(probe_command(csv, out), env=child_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    reached = wait_for(lambda: partial_folder(out, process.pid) is not None, process)
    if reached:
        process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    if not reached:
        pytest.skip("the run ended before it could be interrupted")
    assert process.returncode == 130
    assert "Traceback" not in stderr
    line = [text for text in stderr.splitlines() if "interrupted" in text]
    assert line == [f"steerlab probe: interrupted. {out} is as it was before: outputs are built in a hidden sibling "
                    "folder and swapped in only when a run succeeds. Run the same command again to start over."]
    assert tree_digest(out) == before and partial_folder(out, process.pid) is None


@needs_demo
def test_overwrite_through_the_cli_never_deletes_your_files(probed, capsys):
    csv, out = probed
    (out / "artifacts" / "my_precious_results.txt").write_text("precious")
    (out / "sections" / "notes.md").write_text("notes")
    try:
        before = tree_digest(out)
        assert main(probe_command(csv, out)[3:]) == 2
        assert "files steerlab did not write (artifacts/my_precious_results.txt, sections/notes.md)" in \
            capsys.readouterr().err
        assert tree_digest(out) == before
    finally:
        (out / "artifacts" / "my_precious_results.txt").unlink()
        (out / "sections" / "notes.md").unlink()


@needs_demo
def test_a_run_failing_in_its_last_step_leaves_the_previous_output(probed, monkeypatch):
    import steerlab.report.html

    csv, out = probed
    before = tree_digest(out)

    def broken_report(*args, **kwargs):
        raise RuntimeError("the report could not be written")

    monkeypatch.setattr(steerlab.report.html, "write_report", broken_report)
    with pytest.raises(RuntimeError, match="report could not be written"):
        main(probe_command(csv, out)[3:])
    assert tree_digest(out) == before and partial_folder(out) is None
