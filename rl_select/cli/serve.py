"""``rl-select export``, ``rl-select select`` and ``rl-select serve``."""

from __future__ import annotations

import ipaddress
import json
import os
from pathlib import Path

import typer

from rl_select.cli.common import (
    DataDirOption,
    VerboseOption,
    console,
    err_console,
    progress_bars,
    results_and_next,
    setup_logging,
)
from rl_select.errors import ConfigError

PoolOption = typer.Option(None, "--pool", help="A JSONL/CSV candidate pool to use instead of the exported one.")


def export_command(
    run_dir: Path = typer.Argument(..., help="A finished training run."),
    out: Path = typer.Option(..., "--out", help="New directory for the exported policy."),
    task: str | None = typer.Option(None, "--task", help="Task whose pool to export (default: the run's first)."),
    data_dir: str | None = DataDirOption,
    pool: Path | None = PoolOption,
    seed: int = typer.Option(0, "--seed", help="Seed of the task-mode candidate draw."),
    verbose: bool = VerboseOption,
) -> None:
    """Export a trained selector: ONNX policy, manifest, candidate pool with embeddings and faiss index."""
    setup_logging(verbose)
    from rl_select.export.exporter import export_policy  # deferred: CLI start-up (loads torch and pydantic)

    err_console.print(f"exporting {run_dir} …")
    with progress_bars() as progress:
        manifest = export_policy(run_dir, out, task=task, data_dir=data_dir, pool=pool, seed=seed, progress=progress)
    console.print(
        f"exported {manifest.algo} ({manifest.mode} mode, k={manifest.k}, "
        f"M={manifest.num_candidates}, pool {manifest.task.pool_size}) to {out}"
    )
    results_and_next(
        f"{out} ({', '.join(sorted(manifest.files))})",
        f"rl-select select {out} --query 'TEXT'",
        f"rl-select serve {out}",
    )


def select_command(
    policy_dir: Path = typer.Argument(..., help="An exported policy directory."),
    query: str | None = typer.Option(None, "--query", help="Input to choose demonstrations for."),
    query_pair: str | None = typer.Option(None, "--query-pair", help="Second text, for pair tasks."),
    k: int | None = typer.Option(None, "--k", help="Demonstrations (default: the policy's k)."),
    pool: Path | None = PoolOption,
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of the prompt."),
    verbose: bool = VerboseOption,
) -> None:
    """Choose demonstrations with an exported policy (no training stack needed)."""
    setup_logging(verbose)
    from rl_select.export import load_selector  # deferred: CLI start-up (loads pydantic)

    selector = load_selector(policy_dir, pool=pool)
    demos = selector.select(query, k, query_pair)
    prompt = None
    if query is not None:
        prompt = selector.template.prompt([(d.text, d.label, d.text_pair) for d in demos], query, query_pair)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "demonstrations": [d.to_dict() for d in demos],
                    "prompt": prompt,
                    "k": len(demos),
                    "mode": selector.mode,
                },
                ensure_ascii=False,
                indent=2,
            )
        )
        return
    if prompt is not None:
        typer.echo(prompt)
    else:
        template = selector.template
        typer.echo(template.separator.join(template.demonstration(d.text, d.label, d.text_pair) for d in demos))


def serve_command(
    policy_dir: Path = typer.Argument(..., help="An exported policy directory."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind (loopback by default)."),
    port: int = typer.Option(8000, "--port", help="TCP port."),
    workers: int = typer.Option(1, "--workers", help="uvicorn worker processes."),
    body_timeout: float = typer.Option(
        10.0, "--body-timeout", help="Seconds a client has to send a request body (slower ones get 408)."
    ),
    pool: Path | None = PoolOption,
    verbose: bool = VerboseOption,
) -> None:
    """Serve an exported policy over HTTP: POST /v1/select, GET /healthz, GET /v1/policy."""
    setup_logging(verbose)
    import uvicorn  # deferred: CLI start-up (loads uvicorn)

    from rl_select.export import load_selector  # deferred: CLI start-up (loads pydantic)
    from rl_select.service.app import (  # deferred: CLI start-up (loads FastAPI and pydantic)
        BODY_TIMEOUT_ENV,
        POLICY_ENV,
        POOL_ENV,
        create_app,
    )

    if not 0 < port < 65536:
        raise ConfigError(f"--port must be in 1..65535, got {port}")
    if workers < 1:
        raise ConfigError(f"--workers must be positive, got {workers}")
    if body_timeout <= 0:
        raise ConfigError(f"--body-timeout must be positive, got {body_timeout}")
    selector = load_selector(policy_dir, pool=pool)  # fail before binding if the artifact is bad
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        err_console.print(f"warning: serving on {host}, reachable beyond this machine, without authentication")
    err_console.print(f"serving {policy_dir} ({selector.mode} mode) on http://{host}:{port} with {workers} worker(s)")
    level = "info" if verbose else "warning"
    if workers == 1:
        uvicorn.run(create_app(selector, body_timeout=body_timeout), host=host, port=port, log_level=level)
        return
    os.environ[BODY_TIMEOUT_ENV] = str(body_timeout)
    os.environ[POLICY_ENV] = str(Path(policy_dir).resolve())
    if pool is not None:
        os.environ[POOL_ENV] = str(pool.resolve())
    uvicorn.run(
        "rl_select.service.app:app_from_env", factory=True, host=host, port=port, workers=workers, log_level=level
    )
