"""``rl-select bench projection``: the commands' projection beside the scorer's own work, per task and shape."""

import json

import pytest

from rl_select.bench.projection import SHAPES
from rl_select.tasks import load_task
from tests.helpers import run_cli


def test_projection_bench_times_every_shape_and_projects_its_tokens(tiny_model_dir, data_root, tmp_path, capsys):
    out = tmp_path / "projection.json"
    args = ["bench", "projection", "--tasks", "tiny_sst,tiny_trec", "--data-dir", str(data_root)]
    args += ["--model", str(tiny_model_dir), "--device", "cpu", "--dtype", "float32", "--k", "2", "--out", str(out)]
    code, stdout, err = run_cli(args, capsys)
    assert code == 0, err
    assert "spent / projected" in stdout
    result = json.loads(out.read_text())
    timings = result["timings"]
    assert [(t["task"], t["shape"]) for t in timings] == [
        (task, shape.name) for task in ("tiny_sst", "tiny_trec") for shape in SHAPES
    ]
    for timing, shape in zip(timings, SHAPES * 2, strict=True):
        rows = len(load_task(timing["task"], data_root).test)
        assert timing["queries"] == shape.prompts * min(shape.queries, rows)
        assert timing["tokens"] == pytest.approx(timing["projected_tokens"], rel=0.1)  # the token profile's count
        assert timing["ratio"] == pytest.approx(timing["seconds"] / timing["projected_seconds"], rel=1e-2)
    spent = sum(t["seconds"] for t in timings)
    assert result["ratio_spent_over_projected"] == pytest.approx(
        spent / sum(t["projected_seconds"] for t in timings), rel=1e-2
    )
    assert out.with_suffix(".md").read_text().count("| tiny_") == len(timings)


def test_projection_bench_refuses_an_empty_task_list(capsys):
    code, _, err = run_cli(["bench", "projection", "--tasks", " , "], capsys)
    assert code == 2 and "--tasks needs at least one task" in err and "Traceback" not in err
