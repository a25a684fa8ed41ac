"""Export → runtime: parity with the torch policy, artifact integrity, runtime imports, pool swap."""

import json
import subprocess
import sys

import numpy as np
import pytest

from rl_select import load_selector
from rl_select.errors import ArtifactError, ConfigError, DataError
from rl_select.resources import Resources
from rl_select.runs.policy import PolicySelector
from rl_select.scoring import load_language_model
from rl_select.tasks import load_task
from rl_select.tasks.task import Example
from tests.helpers import assert_ends_with_results_and_next, run_cli
from tests.service.conftest import copy_policy, edit_manifest, generated_rows, parity_queries


def torch_selector(run_dir, big_data, tiny_model_dir):
    task = load_task("gen_sst", big_data)
    lm = load_language_model(str(tiny_model_dir), device="cpu", dtype="float32")
    selector = PolicySelector.from_run(run_dir)
    return selector.build(Resources(task, lm=lm)), task


def test_query_mode_exported_selections_equal_torch_policy_on_100_queries(query_policy, big_data, tiny_model_dir):
    run_dir, policy_dir = query_policy
    selector, task = torch_selector(run_dir, big_data, tiny_model_dir)
    exported = load_selector(policy_dir)
    rng = np.random.default_rng(0)
    for i, text in enumerate(parity_queries(100)):
        expected = selector.select(task, Example(split="query", id=i, text=text, label="positive"), 3, rng)
        assert [d.id for d in exported.select(text, k=3)] == expected, text


def test_exported_prompt_order(query_policy, tmp_path):
    from rl_select.export import manifest as fmt

    selector = load_selector(query_policy[1])
    assert selector.info().prompt_order == "prepend"  # the query-mode default it was trained with
    picks = [d.id for d in selector.select(parity_queries(1)[0], k=3)]
    path = copy_policy(query_policy[1], tmp_path / "policy")
    manifest = json.loads((path / fmt.MANIFEST).read_text())
    del manifest["prompt_order"]  # an artifact from before the setting: its policies appended
    fmt.write_manifest(path, manifest)
    assert [d.id for d in load_selector(path).select(parity_queries(1)[0], k=3)] == picks[::-1]
    fmt.write_manifest(path, {**manifest, "prompt_order": "sideways"})
    with pytest.raises(ArtifactError, match="unknown prompt_order 'sideways'"):
        load_selector(path)


@pytest.mark.parametrize("algo", ["ppo", "dqn", "cql"])
def test_task_mode_exported_selection_equals_torch_policy(task_policies, big_data, tiny_model_dir, algo):
    run_dir, policy_dir = task_policies[algo]
    selector, task = torch_selector(run_dir, big_data, tiny_model_dir)
    exported = load_selector(policy_dir)
    candidates = exported.task_candidates
    for k in (1, 3, 5):
        expected = selector._env.run_greedy(selector.policy.choose, {"candidate_ids": candidates}) if k == 3 else None
        got = [d.id for d in exported.select(k=k)]
        assert len(got) == k == len(set(got)) and set(got) <= set(candidates.tolist())
        if expected is not None:
            assert got == expected
    manifest = json.loads((policy_dir / "manifest.json").read_text())
    assert manifest["algo"] == algo and manifest["onnx_inputs"][-1] == "action_mask"
    assert not any(name.endswith((".pkl", ".pt", ".zip")) for name in manifest["files"])


def test_prompt_and_k_bounds(query_policy):
    exported = load_selector(query_policy[1])
    prompt = exported.prompt("an odd little film", k=2)
    assert prompt.endswith("Review: an odd little film\nSentiment:") and prompt.count("Sentiment:") == 3
    with pytest.raises(ConfigError, match="k must be"):
        exported.select("x", k=9)
    with pytest.raises(ConfigError, match="give a non-empty 'query'"):
        exported.select(None)


def test_runtime_imports_no_training_stack(task_policies, query_policy):
    code = (
        "import sys, json\n"
        "from rl_select import load_selector\n"
        f"load_selector({str(task_policies['ppo'][1])!r}).select()\n"
        "task_mode = sorted(m for m in ('torch', 'transformers') if m in sys.modules)\n"
        f"load_selector({str(query_policy[1])!r}).select('a fine film')\n"
        "banned = ('stable_baselines3', 'sb3_contrib', 'ray', 'gymnasium', 'rl_select.policies', 'rl_select.envs',"
        " 'rl_select.rollouts', 'rl_select.selectors', 'datasets')\n"
        "print(json.dumps({'task_mode': task_mode, 'banned': [m for m in banned if m in sys.modules]}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"task_mode": [], "banned": []}  # task mode: not even torch; query mode: only the embedder


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("edit_manifest", "was edited after export"),
        ("missing_file", "is missing pool_static.npy"),
        ("checksum", "checksum mismatch for pool.jsonl"),
        ("format_version", "format version 99"),
        ("no_manifest", "not an exported policy"),
        ("bad_json", "is corrupt"),
    ],
)
def test_corrupted_artifacts_are_refused(query_policy, tmp_path, capsys, damage, message):
    path = copy_policy(query_policy[1], tmp_path / "policy")
    if damage == "edit_manifest":
        edit_manifest(path, k=7)
    elif damage == "missing_file":
        (path / "pool_static.npy").unlink()
    elif damage == "checksum":
        with open(path / "pool.jsonl", "a") as f:
            f.write('{"text": "an extra row", "label": "positive"}\n')
    elif damage == "format_version":
        edit_manifest(path, format_version=99)
    elif damage == "no_manifest":
        (path / "manifest.json").unlink()
    else:
        (path / "manifest.json").write_text("{not json")
    with pytest.raises(ArtifactError, match=message):
        load_selector(path)
    code, _, err = run_cli(["select", str(path), "--query", "x"], capsys)
    assert code == 2 and message in err and "Traceback" not in err


def test_pool_swap_recomputes_features(query_policy, tmp_path, capsys):
    pool = tmp_path / "pool.jsonl"
    rows = generated_rows(30, 9)
    pool.write_text("".join(json.dumps(r) + "\n" for r in rows))
    swapped = load_selector(query_policy[1], pool=pool)
    assert len(swapped.pool) == 30 and swapped.static.shape[0] == 30
    original = load_selector(query_policy[1])
    assert not np.allclose(swapped.static[:5], original.static[:5])
    demos = swapped.select("a great film", k=3)
    assert {d.text for d in demos} <= {r["text"] for r in rows}
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": "x", "label": "meh"}) + "\n")
    with pytest.raises(DataError, match="label 'meh'"):
        load_selector(query_policy[1], pool=bad)
    # the user's pool file is at fault, not the exported policy: the error names the file, not the manifest
    code, _, err = run_cli(["select", str(query_policy[1]), "--query", "x", "--pool", str(bad)], capsys)
    last = err.strip().splitlines()[-1]
    assert code == 2 and last.startswith(f"error: {bad}:1") and "manifest" not in last


def test_export_errors(query_policy, tmp_path, capsys):
    run_dir, policy_dir = query_policy
    code, _, err = run_cli(["export", str(run_dir), "--out", str(tmp_path / "again")], capsys)
    assert code == 0, err
    assert_ends_with_results_and_next(err, tmp_path / "again")
    code, _, err = run_cli(["export", str(run_dir), "--out", str(policy_dir)], capsys)
    assert code == 2 and "already exists" in err
    code, _, err = run_cli(["export", str(tmp_path / "nope"), "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "does not exist" in err


@pytest.mark.real_model
def test_minilm_embedder_is_exported_to_onnx_with_parity(tmp_path_factory, big_data, tiny_model_dir):
    from tests.service.conftest import train_and_export

    run_dir, policy_dir = train_and_export(
        tmp_path_factory, big_data, tiny_model_dir, "ppo", "query", env={"features": {"embedder": "minilm"}}
    )
    manifest = json.loads((policy_dir / "manifest.json").read_text())
    assert manifest["embedder"]["onnx"] is True and manifest["embedder"]["onnx_max_abs_error"] < 1e-4
    assert {"embedder.onnx", "tokenizer.json"} <= set(manifest["files"])
    exported = load_selector(policy_dir)
    task = load_task("gen_sst", big_data)
    lm = load_language_model(str(tiny_model_dir), device="cpu", dtype="float32")
    selector = PolicySelector.from_run(run_dir).build(Resources(task, lm=lm, embedder="minilm"))
    rng = np.random.default_rng(0)
    for i, text in enumerate(parity_queries(30)):
        expected = selector.select(task, Example(split="query", id=i, text=text, label="positive"), 3, rng)
        assert [d.id for d in exported.select(text, k=3)] == expected, text
