"""``rl-select train``, ``collect`` and ``evaluate --policy`` end to end with the tiny model."""

import json

import pytest

from tests.helpers import announced_queries, assert_ends_with_results_and_next, run_cli, timing_queries

SMALL = [
    "--k",
    "2",
    "-M",
    "4",
    "--reward-rows",
    "4",
    "--eval-seeds",
    "1",
    "--set",
    "best_of_n_sets=2",
    "--set",
    "best_of_n_dev_rows=4",
]


def base(data_root, tiny_model_dir, task="tiny_sst"):
    return [
        "--task",
        task,
        "--data-dir",
        str(data_root),
        "--model",
        str(tiny_model_dir),
        "--device",
        "cpu",
        "--dtype",
        "float32",
        *SMALL,
    ]


def test_train_ppo_writes_results_and_the_policy_transfers(data_root, tiny_model_dir, tmp_path, capsys):
    run = tmp_path / "ppo"
    code, out, err = run_cli(
        [
            "train",
            *base(data_root, tiny_model_dir),
            "--algo",
            "ppo",
            "--steps",
            "64",
            "--n-envs",
            "2",
            "--set",
            "ppo.n_steps=16",
            "--out",
            str(run),
        ],
        capsys,
    )
    assert code == 0, err
    assert "ppo (task mode)" in out and "| tiny_sst | random |" in out
    results = json.loads((run / "results.json").read_text())
    names = [r["selector"]["name"] for r in results["reports"]]
    # best-of-N also runs at the learner's budget (the LLM queries its training scored)
    assert names == ["ppo (task mode)", "zero-shot", "random", "best-of-n", "knn", "best-of-n (equal budget)"]
    assert results["learning_cost"]["queries"] > 0
    assert results["provenance"]["command"].startswith("rl-select train")
    for path in ("results.md", "learning_curve.png", "policy/model.zip", "config.json", "curve.csv"):
        assert (run / path).is_file(), path
    assert any((run / "tb").iterdir())
    # a policy trained on one task runs on another (transfer), in the same table as a baseline
    code, out, err = run_cli(
        [
            "evaluate",
            "--task",
            "tiny_rte",
            "--data-dir",
            str(data_root),
            "--model",
            str(tiny_model_dir),
            "--policy",
            str(run),
            "--selector",
            "random",
            "--k",
            "2",
            "--seeds",
            "2",
            "--out",
            str(tmp_path / "transfer.json"),
        ],
        capsys,
    )
    assert code == 0, err
    reports = json.loads((tmp_path / "transfer.json").read_text())["reports"]
    assert [r["selector"]["name"] for r in reports] == ["random", f"ppo-task ({run.name})"]


def test_collect_announces_the_episodes_left_and_spends_what_it_announced(
    data_root, tiny_model_dir, tmp_path, capsys, requested_queries
):
    args = ["collect", *base(data_root, tiny_model_dir)[:8], "--k", "2", "-M", "4", "--reward-rows", "4"]
    args += ["--out", str(tmp_path / "episodes")]
    code, _, err = run_cli([*args, "--episodes", "6"], capsys)
    assert code == 0 and "6 episodes " in err, err
    spent = requested_queries() - timing_queries(data_root, ("tiny_sst",))  # timing came before the announcement
    assert spent > 0 and 0.95 * spent <= announced_queries(err) <= 1.05 * spent
    code, _, err = run_cli([*args, "--episodes", "6"], capsys)
    assert code == 0 and "holds all 6 episodes: nothing to spend" in err and "about to spend" not in err
    code, _, err = run_cli([*args, "--episodes", "8"], capsys)
    assert code == 0 and "2 episodes (6 stored)" in err and 0 < announced_queries(err) < spent


def test_collect_then_offline_cql(data_root, tiny_model_dir, tmp_path, capsys):
    data = tmp_path / "episodes"
    args = ["collect", *base(data_root, tiny_model_dir)[:8], "--k", "2", "-M", "4", "--reward-rows", "4"]
    code, out, err = run_cli([*args, "--episodes", "12", "--out", str(data)], capsys)
    assert code == 0, err
    assert "12 episodes" in err
    assert_ends_with_results_and_next(err, data)
    # re-running continues the data set without duplicating episodes
    code, out, err = run_cli([*args, "--episodes", "16", "--out", str(data)], capsys)
    assert code == 0 and "16 episodes" in err and "ids 0..15" in err
    run = tmp_path / "cql"
    code, out, err = run_cli(
        [
            "train",
            *base(data_root, tiny_model_dir),
            "--algo",
            "cql",
            "--steps",
            "60",
            "--cql-data",
            str(data),
            "--set",
            "checkpoint_every=20",
            "--out",
            str(run),
        ],
        capsys,
    )
    assert code == 0, err
    assert (run / "policy" / "cql.pt").is_file() and "cql (task mode)" in out
    assert_ends_with_results_and_next(err, run)
    # episodes collected with other MDP settings are refused
    code, _, err = run_cli(
        [
            "train",
            *base(data_root, tiny_model_dir),
            "-M",
            "5",
            "--algo",
            "cql",
            "--steps",
            "5",
            "--cql-data",
            str(data),
            "--out",
            str(tmp_path / "bad"),
        ],
        capsys,
    )
    assert code == 2 and "other MDP settings" in err


@pytest.mark.slow
def test_train_dqn_query_mode(data_root, tiny_model_dir, tmp_path, capsys):
    run = tmp_path / "dqn"
    code, out, err = run_cli(
        [
            "train",
            *base(data_root, tiny_model_dir, "tiny_trec"),
            "--algo",
            "dqn",
            "--mode",
            "query",
            "--steps",
            "40",
            "--n-envs",
            "2",
            "--set",
            "dqn.learning_starts=8",
            "--out",
            str(run),
        ],
        capsys,
    )
    assert code == 0, err
    assert "dqn (query mode)" in out and (run / "policy" / "model.zip").is_file()
    versus = json.loads((run / "results.json").read_text())["versus_knn"]["tiny_trec"]
    assert versus["queries"] > 0 and 0.0 <= versus["same_as_knn"] <= 1.0
    assert len(versus["mean_rank_by_position"]) == 2 and "equals kNN's" in (run / "results.md").read_text()


def test_resume_continues_an_interrupted_run(data_root, tiny_model_dir, tmp_path, capsys):
    from sb3_contrib import MaskablePPO

    run = tmp_path / "ppo"
    args = [
        "train",
        *base(data_root, tiny_model_dir),
        "--algo",
        "ppo",
        "--steps",
        "64",
        "--n-envs",
        "2",
        "--set",
        "ppo.n_steps=16",
        "--set",
        "checkpoint_every=32",
        "--out",
        str(run),
    ]
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    # simulate a crash after the checkpoint at step 32: no final policy, no results
    for path in (run / "policy" / "model.zip", run / "results.json"):
        path.unlink()
    assert (run / "checkpoints" / "ppo_32_steps.zip").is_file()
    code, _, err = run_cli(["train", "--resume", str(run)], capsys)
    assert code == 0, err
    assert MaskablePPO.load(run / "policy" / "model.zip").num_timesteps == 64
    assert (run / "results.json").is_file()
    # resuming with a different config is refused
    code, _, err = run_cli(["train", "--resume", str(run), "--k", "3"], capsys)
    assert code == 2 and "different config" in err and "env.k: 2 → 3" in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--algo", "a2c"], "'a2c' is not one of 'cql', 'dqn', 'ppo', 'fqi'"),
        (["--mode", "batch"], "'batch' is not one of 'task', 'query'"),
        (["--set", "algo=a2c"], "algo must be one of cql, dqn, ppo, fqi; got 'a2c'"),
        (["--k", "5"], "larger than the candidates per episode"),
        (["-M", "40", "--k", "2"], "larger than the candidate pool"),
        (["--set", "nonsense=1"], "unknown setting 'nonsense'"),
        (["--set", "eval_seeds"], "--set expects key=value"),
        (["--set", "ppo.prior=-1"], "ppo.prior must be >= 0"),
        (["--set", "ppo_prior=-1"], "ppo.prior must be >= 0"),  # format 1's flat name still reads
        (["--set", "env.order=random"], "env.order must be one of append, prepend; got 'random'"),
    ],
)
def test_train_rejects_bad_settings(data_root, tiny_model_dir, tmp_path, capsys, extra, message):
    code, out, err = run_cli(["train", *base(data_root, tiny_model_dir), *extra, "--out", str(tmp_path / "r")], capsys)
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_resume_of_missing_run(tmp_path, capsys):
    code, _, err = run_cli(["train", "--resume", str(tmp_path / "nope")], capsys)
    assert code == 2 and "not a training run" in err


def test_run_configs_from_before_the_order_setting_keep_appending(tmp_path):
    from rl_select.runs.config import TrainConfig, read_run_config, write_run_config

    old = {"tasks": ["sst2"], "eval_rows": 5, "env": {"mode": "query"}}  # format 1: flat, no ppo_prior, no order
    (tmp_path / "config.json").write_text(json.dumps({"format": 1, "config": old}))
    config = read_run_config(tmp_path)
    assert config.env.prompt_order == "append" and config.ppo_prior_weight == 0.0 and config.evaluation.rows == 5
    # new runs in query mode prepend and start PPO at the retrieval prior; their config.json keeps that
    fresh = TrainConfig.from_dict({"tasks": ["sst2"], "env": {"mode": "query"}})
    assert fresh.env.prompt_order == "prepend" and fresh.ppo_prior_weight == 4.0
    write_run_config(tmp_path, fresh, {})
    assert read_run_config(tmp_path) == fresh


def test_train_fqi_on_dense_rows_in_query_mode(data_root, tiny_model_dir, tmp_path, capsys):
    run = tmp_path / "fqi"
    args = ["train", *base(data_root, tiny_model_dir, "tiny_trec"), "--algo", "fqi", "--mode", "query"]
    args += ["--set", "data.dense_episodes=6", "--set", "env.query_source=pool", "--set", "env.order=append"]
    args += ["--set", "env.features.label_vote=true", "--set", "fqi.epochs=3", "--steps", "2", "--out", str(run)]
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    assert "fqi (query mode)" in out and (run / "policy" / "fqi.pt").is_file()
    episodes = sorted((run / "episodes" / "episodes").glob("*.npz"))
    assert len(episodes) == 6
    meta = json.loads((run / "episodes" / "meta.json").read_text())
    assert meta["settings"]["dense"] and meta["fingerprints"]["model"] and "tiny_trec" in meta["fingerprints"]["tasks"]
    curve = (run / "curve.csv").read_text()
    assert "train/td_loss" in curve


def test_dry_run_projects_the_cost_and_writes_nothing(data_root, tiny_model_dir, tmp_path, capsys):
    run = tmp_path / "dry"
    args = ["train", *base(data_root, tiny_model_dir), "--algo", "fqi", "--set", "data.dense_episodes=10"]
    code, _, err = run_cli([*args, "--dry-run", "--out", str(run)], capsys)
    assert code == 0, err
    assert "fqi learning" in err and "final evaluation" in err and "about to spend" in err
    assert not run.exists()


def test_projection_counts_the_protocols_scored_queries():
    from rl_select.budget import TokenProfile, dense_episode, query_level, task_level

    profile = TokenProfile(block=20, query=10, content_free=24, prefix=1)
    episode = dense_episode(profile, k=2, m=4, rows=3)
    assert episode.queries == 3 + (4 + 3) * 3  # zero-shot, then every candidate's extension at both states
    assert query_level(profile, 4, 5).queries == 5 and query_level(profile, 4, 5).tokens == 5 * (1 + 80 + 10 + 24)
    assert task_level(profile, 4, 2, 100).queries == 200


def test_online_steps_are_what_the_algorithm_collects():
    from rl_select.runs.config import TrainConfig

    ppo = TrainConfig.from_dict(
        {"tasks": ["sst2"], "algo": "ppo", "steps": 32, "ppo": {"n_steps": 32}, "parallel": {"n_envs": 4}}
    )
    assert ppo.total_steps == 128  # one full rollout, which is what PPO takes and what its bar counts to
    assert (
        TrainConfig.from_dict({"tasks": ["sst2"], "algo": "ppo", "steps": 256, "parallel.n_envs": 4}).total_steps % 4
        == 0
    )
    dqn = {"tasks": ["sst2"], "algo": "dqn", "steps": 33, "dqn.train_freq": 4, "parallel.n_envs": 4}
    assert TrainConfig.from_dict(dqn).total_steps == 48  # train_freq steps of every env at a time: 3 × 16
    assert TrainConfig.from_dict({**dqn, "parallel.n_envs": 1, "dqn.train_freq": 1}).total_steps == 33


def fitted_config(config, chosen, device_type):
    from rl_select.runs.config import fit_training

    return fit_training(config, chosen, device_type)[0]


def test_open_settings_fit_the_device_and_a_short_ppo_run():
    from rl_select.cli.train import build_config
    from rl_select.runs.config import TrainConfig, chosen_keys

    base = TrainConfig.from_dict({"tasks": ["sst2"], "algo": "ppo", "steps": 64})
    cpu = fitted_config(base, {"tasks", "algo", "steps"}, "cpu")
    assert (cpu.env.reward_rows, cpu.evaluation.rows, cpu.evaluation.best_of_n_dev_rows) == (8, 100, 16)
    assert cpu.env.value == "probability" and cpu.evaluation.seeds == 2  # 8 rows' accuracy moves by 12.5 points
    assert cpu.env.features.llm_features is False and cpu.env.features.embedder == "minilm"
    assert cpu.ppo.n_steps == 16 and cpu.total_steps == 64  # 16 × 4 sub-envs: the 64 steps asked, not 256
    gpu = fitted_config(base, {"tasks", "algo", "steps"}, "cuda")
    assert (gpu.env.reward_rows, gpu.evaluation.rows, gpu.evaluation.best_of_n_dev_rows) == (64, None, 200)
    assert gpu.env.features.llm_features is True and gpu.env.features.embedder is None and gpu.env.value is None
    assert gpu.evaluation.seeds == 3
    # what the user sets wins, from the command line or from a config file's env mapping
    chosen = chosen_keys({"env": {"reward_rows": 50}, "evaluation.rows": 300, "ppo": {"n_steps": 64}})
    kept = fitted_config(base.with_overrides({"env.reward_rows": 50, "evaluation.rows": 300}), chosen, "cpu")
    assert (kept.env.reward_rows, kept.evaluation.rows, kept.ppo.n_steps) == (50, 300, 64)
    assert fitted_config(base.with_overrides({"steps": 5000}), set(), "cpu").ppo.n_steps == 64
    configured, fitted = build_config(None, {"tasks": ["sst2"], "env.reward_rows": 32, "device": "cpu"})
    assert configured.env.reward_rows == 32 and configured.evaluation.rows == 100 == fitted["evaluation.rows"]
    assert "env.reward_rows" not in fitted


PROPOSERS_AND_STOP = {
    "env.proposers": {"embedding": 1, "bm25": 1, "task": 2, "task_sets": 6, "task_dev_rows": 8},
    "env.stop": True,
    "env.query_source": "pool",
}


@pytest.mark.parametrize(
    ("algo", "mode", "extra"),
    [
        ("fqi", "task", {}),
        ("dqn", "task", {}),
        ("ppo", "task", {}),
        ("cql", "task", {}),
        ("fqi", "query", {}),
        ("ppo", "query", {}),
        ("fqi", "query", PROPOSERS_AND_STOP),  # the task proposer's search on dev; stop may end episodes early
    ],
)
def test_the_projection_is_the_work_the_run_requests(
    algo, mode, extra, data_root, tiny_model_dir, tmp_path, requested_queries
):
    """What ``train`` announces before a run is what the run then asks the scorer for (a cold cache).

    With the stop action an episode may end early, so there the projection may only be above what is requested.
    """
    from rl_select.budget import profiles_for
    from rl_select.cli.train import build_config
    from rl_select.runs.setup import load_tasks
    from rl_select.scoring import load_language_model
    from rl_select.train import train
    from rl_select.train.projection import project_training

    values = {
        "tasks": ["tiny_sst"],
        "data_dir": str(data_root),
        "model": str(tiny_model_dir),
        "algo": algo,
        "env.mode": mode,
    }
    values.update({"device": "cpu", "dtype": "float32", "env.k": 2, "env.num_candidates": 4, "env.reward_rows": 4})
    values.update({"evaluation.seeds": 1, "evaluation.best_of_n_sets": 2, "evaluation.best_of_n_dev_rows": 4})
    values.update(
        {"data.dense_episodes": 3, "data.cql_episodes": 3, "ppo.n_steps": 4, "steps": 8, "evaluation.rows": 6}
    )
    config, _ = build_config(None, {**values, **extra})
    tasks = load_tasks(config)
    lm = load_language_model(str(tiny_model_dir), device="cpu", dtype="float32")
    projected = project_training(config, tasks, tasks, profiles_for(tasks, lm.tokenizer)).total.queries
    train(config, tmp_path / "run", progress_bar=False)
    requested = requested_queries()
    print(f"{algo} {mode}: projected {projected:.0f}, requested {requested}")
    low = 0.95 * requested if not config.env.stop else requested
    assert low <= projected <= 1.05 * requested


def test_a_query_policy_projects_its_task_proposers_search(data_root, tiny_model_dir, tiny_lm, tmp_path, monkeypatch):
    """On a task, the task-level proposer searches dev once: ``evaluate`` counts that work before it starts."""
    import numpy as np

    from rl_select.cli.train import build_config
    from rl_select.resources import Resources
    from rl_select.runs.policy import PolicySelector
    from rl_select.selectors.base import PromptWork
    from rl_select.tasks import load_task
    from rl_select.train import train

    values = {"tasks": ["tiny_sst"], "data_dir": str(data_root), "model": str(tiny_model_dir), "algo": "fqi"}
    values.update({"device": "cpu", "dtype": "float32", "env.mode": "query", "env.k": 2, "env.num_candidates": 4})
    values.update({"data.dense_episodes": 3, "evaluation.seeds": 1, "evaluation.rows": 4, **PROPOSERS_AND_STOP})
    config, _ = build_config(None, values)
    monkeypatch.setenv("RL_SELECT_CACHE", str(tmp_path / "cold-cache"))
    train(config, tmp_path / "run", progress_bar=False)
    task = load_task("tiny_trec", data_root)  # a task it never saw: the search is not cached yet
    policy = PolicySelector.from_run(tmp_path / "run")
    assert policy.choice_work(task, 2, 6) == [PromptWork(6, 2, min(8, len(task.dev)))]
    assert PolicySelector.from_run(tmp_path / "run", zero_cost=True).choice_work(task, 2, 6) == []

    resources = Resources(task, lm=tiny_lm)
    policy.build(resources).select(task, task.test[0], 2, np.random.default_rng(0))
    assert resources.scorer.stats.requested == 6 * min(8, len(task.dev))  # the search, and nothing else
