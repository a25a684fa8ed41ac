"""Trained tiny policies, exported once per test session."""

import contextlib
import json
import socket
import threading
import time

import httpx
import numpy as np
import pytest
import uvicorn

from tests.helpers import SENTIMENT_SPEC, write_task

ADJECTIVES = ["great", "dull", "moving", "boring", "clever", "tedious", "funny", "flat", "warm", "slow"]
NOUNS = ["film", "script", "plot", "cast", "ending", "score", "story", "remake", "debut", "sequel"]


def generated_rows(n, seed):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        a, b = rng.choice(ADJECTIVES, 2, replace=False)
        label = "positive" if a in ("great", "moving", "clever", "funny", "warm") else "negative"
        rows.append({"text": f"a {a} and {b} {rng.choice(NOUNS)} number {i}", "label": label})
    return rows


def parity_queries(n=100):
    return [f"the {ADJECTIVES[i % 10]} {NOUNS[(i * 3) % 10]} was {ADJECTIVES[(i * 7) % 10]} ({i})" for i in range(n)]


@pytest.fixture(scope="session")
def big_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("bigdata")
    write_task(
        root,
        "gen_sst",
        SENTIMENT_SPEC,
        {"train": generated_rows(60, 0), "dev": generated_rows(12, 1), "test": generated_rows(12, 2)},
    )
    return root


def train_and_export(tmp_path_factory, big_data, tiny_model_dir, algo, mode, **extra):
    from rl_select.export.exporter import export_policy
    from rl_select.runs.config import TrainConfig
    from rl_select.train import train

    root = tmp_path_factory.mktemp(f"{algo}-{mode}")
    config = TrainConfig.from_dict(
        {
            "tasks": ["gen_sst"],
            "algo": algo,
            "data_dir": str(big_data),
            "model": str(tiny_model_dir),
            "device": "cpu",
            "dtype": "float32",
            "steps": 48 if algo != "cql" else 60,
            "n_envs": 2,
            "ppo_n_steps": 16,
            "dqn_learning_starts": 8,
            "cql_episodes": 10,
            "eval_seeds": 1,
            "eval_rows": 4,
            "baselines": ["random"],
            "env": {"mode": mode, "k": 3, "num_candidates": 8, "reward_rows": 4, **extra.pop("env", {})},
            **extra,
        }
    )
    train(config, root / "run", progress_bar=False)
    export_policy(root / "run", root / "policy")
    return root / "run", root / "policy"


@pytest.fixture(scope="session")
def query_policy(tmp_path_factory, big_data, tiny_model_dir):
    return train_and_export(tmp_path_factory, big_data, tiny_model_dir, "ppo", "query")


@pytest.fixture(scope="session")
def task_policies(tmp_path_factory, big_data, tiny_model_dir):
    return {
        algo: train_and_export(tmp_path_factory, big_data, tiny_model_dir, algo, "task")
        for algo in ("ppo", "dqn", "cql")
    }


def copy_policy(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def edit_manifest(path, **changes):
    manifest = json.loads((path / "manifest.json").read_text())
    manifest.update(changes)
    (path / "manifest.json").write_text(json.dumps(manifest))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve_in_thread(app):
    """Serve ``app`` with a real uvicorn on a loopback port; yields the base URL once /healthz answers."""
    port = free_port()
    instance = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120  # generous: CI machines can be slow to start a server
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=5).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert thread.is_alive() and time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.05)
    try:
        yield base
    finally:
        instance.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def proposer_policy(tmp_path_factory, big_data, tiny_model_dir):
    """A fitted-Q query policy over proposed candidates (every proposer), with the stop action (v1)."""
    proposers = {"embedding": 3, "bm25": 2, "balanced": 2, "task": 1, "task_sets": 3, "task_dev_rows": 4}
    return train_and_export(
        tmp_path_factory,
        big_data,
        tiny_model_dir,
        "fqi",
        "query",
        steps=2,
        dense_episodes=8,
        fqi_epochs=5,
        behaviour={"random": 1, "greedy": 1},
        env={"query_source": "pool", "value": "probability", "stop": True, "proposers": proposers},
    )
