"""Bad input gets one clear line on stderr and exit status 2, never a traceback."""

import json

import pytest

from tests.helpers import SENTIMENT_SPEC, run_cli, sentiment_rows, write_task


def bad_task(tmp_path, *, row=None, spec=None, raw_test=None):
    rows = sentiment_rows()
    if row is not None:
        rows["train"] = [*rows["train"], row]
    path = write_task(tmp_path, "bad", spec or SENTIMENT_SPEC, rows)
    if raw_test is not None:
        (path / "test.jsonl").write_bytes(raw_test)
    return str(path)


CASES = {
    "unknown task": (
        lambda tmp, data: ["--task", "tiny_sts", "--data-dir", str(data)],
        "did you mean 'tiny_sst'",
    ),
    "missing data dir": (
        lambda tmp, data: ["--task", "sst2", "--data-dir", str(tmp / "missing")],
        "does not exist",
    ),
    "row without label": (lambda tmp, data: ["--task", bad_task(tmp, row={"text": "x"})], "row has no label"),
    "label not in labels": (
        lambda tmp, data: ["--task", bad_task(tmp, row={"text": "x", "label": "meh"})],
        "label 'meh' is not one of",
    ),
    "empty text": (
        lambda tmp, data: ["--task", bad_task(tmp, row={"text": "", "label": "positive"})],
        "empty text",
    ),
    "template without text": (
        lambda tmp, data: ["--task", bad_task(tmp, spec={**SENTIMENT_SPEC, "template": "S: {label}"})],
        "must contain {text}",
    ),
    "non-utf8 file": (
        lambda tmp, data: ["--task", bad_task(tmp, raw_test=b'{"text": "caf\xe9", "label": "positive"}\n')],
        "not valid UTF-8",
    ),
    "k >= pool": (
        lambda tmp, data: ["--task", "tiny_sst", "--data-dir", str(data), "--k", "15"],
        "smaller than the candidate pool",
    ),
    "k <= 0": (
        lambda tmp, data: ["--task", "tiny_sst", "--data-dir", str(data), "--k", "0"],
        "--k must be >= 1, got 0",
    ),
    "unknown selector": (
        lambda tmp, data: ["--task", "tiny_sst", "--data-dir", str(data), "--selector", "knnn"],
        "did you mean 'knn'",
    ),
    "unknown model path": (
        lambda tmp, data: ["--task", "tiny_sst", "--data-dir", str(data), "--model", str(tmp / "no-model")],
        "does not exist",
    ),
    "bad device": (
        lambda tmp, data: ["--task", "tiny_sst", "--data-dir", str(data), "--device", "tpu"],
        "device",
    ),
    "bad n-test": (
        lambda tmp, data: ["--task", "tiny_sst", "--data-dir", str(data), "--n-test", "0"],
        "--n-test must be >= 1, got 0",  # named as typed, not as its setting (evaluation rows)
    ),
    "bad order in a --set": (
        lambda tmp, data: ["--task", "tiny_sst", "--data-dir", str(data), "--set", "order=shuffled"],
        "order must be one of selected, reversed, both; got 'shuffled'",
    ),
    "no task": (lambda tmp, data: ["--data-dir", str(data)], "give --task"),
    "bad seeds": (
        lambda tmp, data: ["--task", "tiny_sst", "--data-dir", str(data), "--seeds", "0"],
        "--seeds must be >= 1, got 0",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_evaluate_rejects_bad_input(case, tmp_path, data_root, capsys):
    build, message = CASES[case]
    code, out, err = run_cli(["evaluate", *build(tmp_path, data_root)], capsys)
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and message in lines[0]
    assert "Traceback" not in err + out


def test_a_choice_outside_its_list_is_a_usage_error_naming_the_option(data_root, capsys):
    args = ["evaluate", "--task", "tiny_sst", "--data-dir", str(data_root), "--order", "shuffled"]
    code, out, err = run_cli(args, capsys)
    assert code == 2 and "Invalid value for '--order'" in err and "'shuffled'" in err
    assert "Traceback" not in err + out


def test_tasks_with_missing_data_dir(tmp_path, capsys):
    code, _, err = run_cli(["tasks", "--data-dir", str(tmp_path / "x")], capsys)
    assert code == 2 and err.startswith("error: data directory")


def test_malformed_task_json(tmp_path, capsys):
    path = tmp_path / "t"
    path.mkdir()
    (path / "task.json").write_text("{not json")
    code, _, err = run_cli(["evaluate", "--task", str(path)], capsys)
    assert code == 2 and "not valid JSON" in err
    (path / "task.json").write_text(json.dumps([1, 2]))
    code, _, err = run_cli(["evaluate", "--task", str(path)], capsys)
    assert code == 2 and "JSON object" in err


def test_finished_progress_bars_leave_the_live_display():
    import io

    from rich.console import Console

    from rl_select.cli.common import make_progress, progress_factory

    progress = make_progress()
    progress.live.console = Console(file=io.StringIO(), width=100)
    factory = progress_factory(progress)
    for step in range(12):
        factory(f"step {step}", 3)(3)
    active = factory("active step", 5)
    active(1)
    assert [t.description for t in progress.tasks] == ["active step"]
    assert progress.console.file.getvalue().count("done: step") == 12


def test_brackets_in_printed_text_and_progress_descriptions_stay_verbatim():
    """Commands, task names and paths may hold brackets; rich markup must not eat them (it printed `tasks=`)."""
    from rl_select.cli.common import console, err_console, make_progress

    command = "rl-select study s.yaml --set 'tasks=[wordnet-verbs]' --set 'task_transfer_budgets=[]'"
    for out in (console, err_console):
        with out.capture() as captured:
            out.print(command)
        assert captured.get().strip() == command
    progress = make_progress()
    progress.add_task("task [b] · knn · seed 0", total=3)
    with err_console.capture() as captured:
        err_console.print(progress.make_tasks_table(progress.tasks))
    assert "task [b] · knn · seed 0" in captured.get()


def test_a_bad_flag_value_is_named_by_its_flag_and_a_config_that_is_no_file_says_so(tmp_path, capsys):
    code, _, err = run_cli(["train", "--config", "experiments/configs/quickstart-cpu.yaml", "--steps", "-3"], capsys)
    assert code == 2 and err.strip() == "error: --steps must be >= 1, got -3"
    code, _, err = run_cli(["train", "--config", str(tmp_path)], capsys)
    assert code == 2 and err.strip() == f"error: {tmp_path} is not a regular file"
    code, _, err = run_cli(["train", "--config", str(tmp_path / "nope.yaml")], capsys)
    assert code == 2 and err.strip() == f"error: {tmp_path / 'nope.yaml'} does not exist"
