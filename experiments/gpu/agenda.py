"""The GPU agenda: every GPU measurement of rl-select, in resumable pieces of a few minutes each.

Steps, in order (each a plain ``rl-select`` command, run as a child process):

1. ``bench-scorer``: ``rl-select bench scorer --device cuda`` — naive HF bf16 vs rl-select's scorer at the 4-shot
   SST-2 shape, identical predictions, env rewards/s, GPU memory, share of the GEMM peak measured in the run.
2. ``study``: ``rl-select study experiments/configs/learned-gpu.yaml`` — the learned-selector table at GPU scale,
   one task's cells after another (the config orders tasks by expected signal); the study itself is resumable.

A piece runs steps until its time (``--piece-min``) is spent: the step running then gets Ctrl-C (SIGINT), keeps
what it finished and is marked ``interrupted``; the next piece continues it. Everything goes to the state folder
(``experiments/results/gpu``): the steps' results and ``agenda.json`` (each step's status, command, commit, seconds).
``--pack FILE.tar.gz`` packs the state folder (without LLM caches) so that it comes back from a GPU machine; unpack
it into the checkout before the next piece (``tar -xzf FILE.tar.gz``) so the state travels with the working tree.

On a GPU machine staged as docs/gpu.md says (``../shared/tools/gpu-stage --no-ray`` with the extras it lists: no Ray
needed; MiniLM is the study's embedder; the tracked tree must leave room for a piece in the 64 MiB a call carries),
one piece per device call::

    source /tmp/gpu-stage/env.sh && RL_SELECT_COMMIT=<the commit here> python experiments/gpu/agenda.py \\
        --data-dir /tmp/gpu-stage/pack/data --pack $OUT/gpu-state.tar.gz

(the working tree travels without ``.git``, so the commit the results record is given by name).

A step once done is skipped; ``--redo bench-scorer`` runs it again (a new commit's scorer to measure).

``--dry-run`` goes through every step on the CPU with tiny sizes (give a tiny ``--model`` for speed): the same
commands, the same state and resume logic. CI runs it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated

import typer
import yaml

ROOT = Path(__file__).resolve().parents[2]
STUDY_CONFIG = ROOT / "experiments" / "configs" / "learned-gpu.yaml"
STATE = ROOT / "experiments" / "results" / "gpu"
GRACE_S = 90.0
"""How long an interrupted step may take to write what it finished before it is killed."""

DRY_RUN_STUDY = {
    "evaluation": {"rows": 6, "seeds": 2, "best_of_n_sets": 2, "best_of_n_dev_rows": 3},
    "query": {"num_candidates": 4, "training_queries": 3, "dev_rows": 3, "rounds": 2, "epochs": 2},
    "task": {"num_candidates": 4, "reward_rows": 3, "episodes": 2, "rounds": 2, "epochs": 2},
}
"""Sizes of the study in a dry run (everything else comes from the GPU config)."""


@dataclass
class StepRecord:
    """What the agenda knows about one step."""

    name: str
    status: str = "pending"  # pending | done | interrupted | failed
    command: list[str] = field(default_factory=list)
    seconds: float = 0.0
    pieces: int = 0
    exit_code: int | None = None
    error_tail: str = ""


@dataclass
class Step:
    """One step: its name and its ``rl-select`` arguments."""

    name: str
    args: list[str]

    @property
    def command(self) -> list[str]:
        """The child process's command line."""
        return [sys.executable, "-m", "rl_select.cli", *self.args]


def commit() -> str:
    """The checkout's commit (``$RL_SELECT_COMMIT`` where the tree travelled without ``.git``)."""
    if os.environ.get("RL_SELECT_COMMIT"):
        return os.environ["RL_SELECT_COMMIT"]
    try:
        return subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def study_config(state: Path, dry_run: bool, tasks: list[str] | None, model: str | None) -> Path:
    """The study's YAML: the GPU config, written into the state folder with the run's overrides."""
    config = yaml.safe_load(STUDY_CONFIG.read_text())
    # relative to the checkout (steps run there), so run configs stay the same on the next, fresh machine
    config["out"] = str(state.relative_to(ROOT)) if state.is_relative_to(ROOT) else str(state)
    if tasks:
        config["tasks"] = tasks
    if model:
        config["model"] = model
    if dry_run:
        config.update({"device": "cpu", "dtype": "float32", "embedder": "lm", "name": "learned_gpu_dry_run"})
        for key, value in DRY_RUN_STUDY.items():
            config[key] = {**config[key], **value} if isinstance(value, dict) else value
        features = {"embedder": "lm", "projection_dim": 0, "label_onehot": False}  # no MiniLM needed
        config["query"]["features"] = {**features, "label_vote": True, "llm_features": False}
        config["task"]["features"] = features
    path = state / ("study-dry-run.yaml" if dry_run else "study.yaml")
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def agenda_steps(
    state: Path, dry_run: bool, tasks: list[str] | None, model: str | None, data: str | None
) -> list[Step]:
    """The agenda's steps for this run."""
    common = [*(["--data-dir", data] if data else []), *(["--model", model] if model else [])]
    bench = ["bench", "scorer", "--out", str(state / "bench_scorer_gpu.json"), *common]
    if dry_run:
        bench += ["--device", "cpu", "--queries", "8", "--naive-batch", "4", "--env-steps", "2", "--env-envs", "2"]
        bench += ["--task", (tasks or ["sst2"])[0]]
    else:
        bench += ["--device", "cuda", "--queries", "872", "--env-steps", "16"]
    study = ["study", str(study_config(state, dry_run, tasks, model)), *(["--data-dir", data] if data else [])]
    return [Step("bench-scorer", bench), Step("study", study)]


def run_step(command: list[str], deadline: float, grace_s: float = GRACE_S) -> tuple[int, bool, str]:
    """Run one command until it ends or ``deadline`` (then SIGINT, and SIGKILL ``grace_s`` later).

    Its stderr (progress bars, errors) passes through. Returns its exit code, whether it was interrupted, and the
    end of its stderr.
    """
    process = subprocess.Popen(command, stderr=subprocess.PIPE, start_new_session=True, cwd=ROOT)
    tail: deque[bytes] = deque(maxlen=64)
    relay = threading.Thread(target=_relay, args=(process, tail), daemon=True)
    relay.start()
    interrupted = False
    while process.poll() is None:
        if time.monotonic() >= deadline:
            if interrupted:
                os.killpg(process.pid, signal.SIGKILL)
            else:
                interrupted = True
                process.send_signal(signal.SIGINT)
                deadline = time.monotonic() + grace_s
        time.sleep(0.2)
    relay.join(timeout=5)
    return process.returncode, interrupted, b"".join(tail).decode(errors="replace")[-2000:]


def _relay(process: subprocess.Popen, tail: deque[bytes]) -> None:
    """Copy the step's stderr through as it comes, keeping its end."""
    assert process.stderr is not None
    while chunk := os.read(process.stderr.fileno(), 4096):
        sys.stderr.buffer.write(chunk)
        sys.stderr.flush()
        tail.append(chunk)


def load_records(path: Path) -> dict[str, StepRecord]:
    """Step records of earlier pieces (none on a first piece)."""
    if not path.is_file():
        return {}
    try:
        stored = json.loads(path.read_text())
        return {r["name"]: StepRecord(**r) for r in stored["steps"]}
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise SystemExit(f"error: {path} is not an agenda state file ({exc}); move it away to start over") from None


def save_records(path: Path, records: dict[str, StepRecord], dry_run: bool) -> None:
    """Write ``agenda.json`` (atomically)."""
    payload = {
        "agenda": "rl-select GPU agenda (experiments/gpu/agenda.py)",
        "dry_run": dry_run,
        "commit": commit(),
        "updated_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "steps": [asdict(r) for r in records.values()],
    }
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(payload, indent=2) + "\n")
    temporary.replace(path)


def pack(state: Path, archive: Path) -> None:
    """Pack the state folder (without LLM caches) into ``archive``, paths relative to the checkout."""
    archive.parent.mkdir(parents=True, exist_ok=True)

    def skip_caches(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        return None if "/cache" in info.name or info.name.endswith((".sqlite", ".sqlite-wal", ".sqlite-shm")) else info

    with tarfile.open(archive, "w:gz") as tar:
        tar.add(
            state,
            arcname=str(state.relative_to(ROOT)) if state.is_relative_to(ROOT) else state.name,
            filter=skip_caches,
        )


def main(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Every step on the CPU with tiny sizes.")] = False,
    piece_min: Annotated[float, typer.Option("--piece-min", help="Minutes this piece may run.")] = 9.0,
    state: Annotated[
        Path | None,
        typer.Option("--state", help="State and results folder (experiments/results/gpu; a dry run: runs/)."),
    ] = None,
    data_dir: Annotated[str | None, typer.Option("--data-dir", help="Task data directory.")] = None,
    model: Annotated[str | None, typer.Option("--model", help="Scoring LLM (default: SmolLM2-135M).")] = None,
    tasks: Annotated[str | None, typer.Option("--tasks", help="Comma-separated tasks (default: the config's).")] = None,
    archive: Annotated[Path | None, typer.Option("--pack", help="Also pack the state into this .tar.gz.")] = None,
    redo: Annotated[
        str | None, typer.Option("--redo", help="Comma-separated steps to run again though done (e.g. bench-scorer).")
    ] = None,
    grace_s: Annotated[
        float, typer.Option("--grace-s", help="Seconds a stopped step gets to save its work.")
    ] = GRACE_S,
) -> None:
    """Run the GPU agenda's next piece (see the module docstring)."""
    if piece_min <= 0 or grace_s < 0:
        raise SystemExit(f"error: --piece-min must be positive and --grace-s not negative, got {piece_min}, {grace_s}")
    state = (state or (ROOT / "runs" / "gpu-dry-run" if dry_run else STATE)).resolve()
    started = time.monotonic()
    deadline = started + piece_min * 60 - grace_s  # the step stopped then still has its grace inside the piece
    state.mkdir(parents=True, exist_ok=True)
    records_path = state / "agenda.json"
    records = load_records(records_path)
    task_list = [t for t in (tasks or "").split(",") if t] or None
    steps = agenda_steps(state, dry_run, task_list, model, data_dir)
    exit_code = 0
    again = [name for name in (redo or "").split(",") if name]
    if unknown := sorted(set(again) - {step.name for step in steps}):
        raise SystemExit(f"error: --redo names no step of the agenda: {', '.join(unknown)}")
    for step in steps:
        records.setdefault(step.name, StepRecord(step.name))
        if step.name in again:  # a new commit to measure: the step's record starts over
            records[step.name] = StepRecord(step.name)
    for step in steps:
        record = records[step.name]
        if record.status == "done":
            print(f"agenda: {step.name} done earlier", file=sys.stderr)
            continue
        if time.monotonic() >= deadline:
            print(f"agenda: no time left in this piece for {step.name}; run the agenda again", file=sys.stderr)
            break
        print(f"agenda: {step.name}: rl-select {' '.join(step.args)}", file=sys.stderr)
        began = time.monotonic()
        code, interrupted, tail = run_step(step.command, deadline, grace_s)
        record.command, record.exit_code = ["rl-select", *step.args], code
        record.seconds += round(time.monotonic() - began, 1)
        record.pieces += 1
        record.status = "done" if code == 0 else "interrupted" if interrupted else "failed"
        record.error_tail = "" if code == 0 else tail
        save_records(records_path, records, dry_run)
        if record.status == "interrupted":
            print(f"agenda: {step.name} stopped at the piece's deadline; run the agenda again", file=sys.stderr)
            break
        if record.status == "failed":  # the later steps still run: GPU minutes are too few to stop at one failure
            print(f"agenda: {step.name} failed (exit {code}); see {records_path}", file=sys.stderr)
            exit_code = 1
    save_records(records_path, records, dry_run)
    if archive is not None:
        pack(state, archive)
        print(f"agenda: state packed into {archive}", file=sys.stderr)
    left = [r.name for r in records.values() if r.status != "done"]
    print(f"agenda: {'all steps done' if not left else 'left: ' + ', '.join(left)}", file=sys.stderr)
    raise SystemExit(exit_code)


if __name__ == "__main__":
    typer.run(main)
