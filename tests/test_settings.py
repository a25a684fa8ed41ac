"""Settings said once: every field's flag, YAML key, --set path and config.json form set the same value."""

from __future__ import annotations

import json
import typing
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from rl_select.cli.options import given_values, option_type, parse_sets, parse_text, with_options
from rl_select.errors import ArtifactError, ConfigError
from rl_select.evaluation.request import EvaluateRequest
from rl_select.runs.config import TrainConfig, chosen_keys, fit_training, read_run_config, write_run_config
from rl_select.runs.migrate import FORMAT_1_KEYS, FORMAT_1_SHARED
from rl_select.settings import (
    UNSET,
    Leaf,
    build,
    cpu_values,
    flatten,
    leaves,
    merge,
    nest,
    to_mapping,
    with_values,
)
from rl_select.study.config import STUDY_FORMAT_1_KEYS, StudyConfig
from rl_select.study.headroom_request import HeadroomRequest

ROOT = Path(__file__).resolve().parents[1]


def other_value(leaf: Leaf):
    """A valid value of ``leaf`` that differs from its default, and its command-line text."""
    kind = option_type(leaf)
    base = (
        typing.get_args(leaf.kind)[0] if typing.get_origin(leaf.kind) in (typing.Union, type(int | None)) else leaf.kind
    )
    special = {
        "tasks": (("trec", "sst2"), "trec,sst2"),
        "evaluation.tasks": (("agnews",), "agnews"),
        "evaluation.baselines": (("knn",), "knn"),
        "data.dense_data": (("a", "b"), "[a, b]"),
        "data.behaviour": ({"knn": 2.0}, "{knn: 2.0}"),
        "env.proposers": (
            {
                "embedding": 2,
                "bm25": 2,
                "balanced": 0,
                "task": 0,
                "task_prompts": 2,
                "task_sets": 20,
                "task_dev_rows": 32,
            },
            "{embedding: 2, bm25: 2}",
        ),
        "env.features.embedder": ("minilm", "minilm"),
        "parallel.address": ("127.0.0.1:6379", "127.0.0.1:6379"),
        "selectors": (("knn", "bm25"), "knn,bm25"),
        "policies": (("runs/a",), "runs/a"),
        "baselines": (("knn",), "knn"),
        "query.variants": (({"fqi.alpha": 0.5},), "[{fqi.alpha: 0.5}]"),
        "query.features": ({"embedder": "lm"}, "{embedder: lm}"),
        "task.features": ({"embedder": "lm"}, "{embedder: lm}"),
        "query.behaviour": ({"knn": 2.0}, "{knn: 2.0}"),
        "task.behaviour": ({"random": 2.0}, "{random: 2.0}"),
        "query.proposers": ({"embedding": 4, "bm25": 4}, "{embedding: 4, bm25: 4}"),
        "task_transfer_budgets": ((1, 5), "1,5"),
        "task.ranked_draws": (64, "64"),  # at least the base's task.proposals
        "pooled_with": (("studies/a",), "[studies/a]"),
        "learning_curve.tasks": (("trec",), "trec"),
        "learning_curve.queries": ((10, 20), "10,20"),
    }
    if leaf.path in special:
        return special[leaf.path]
    if leaf.spec.choices:
        value = next(c for c in leaf.spec.choices if c != leaf.default)
        return value, value
    if kind is bool:
        return (not leaf.default), None
    if kind is int or base is int:
        value = (leaf.default or 1) + 1
        return value, str(value)
    if kind is float or base is float:
        bound = leaf.spec.maximum if leaf.spec.maximum is not None else leaf.spec.below
        value = (leaf.default or 0.5) / 2 if bound is not None else (leaf.default or 0.5) * 2
        return value, repr(value)
    value = f"x-{leaf.path}"
    return value, value


BASE = {"tasks": ["tiny"], "algo": "ppo", "env": {"mode": "query", "k": 2, "num_candidates": 8}}


def config_with(path: str, value) -> TrainConfig:
    return TrainConfig.from_dict(BASE).with_overrides({path: value})


def read_back(config: TrainConfig, path: str):
    value = config
    for part in path.split("."):
        value = getattr(value, part)
    return to_mapping_value(value)


def to_mapping_value(value):
    if hasattr(value, "__dataclass_fields__"):
        return to_mapping(value)
    return list(value) if isinstance(value, tuple) else value


@pytest.mark.parametrize("leaf", leaves(TrainConfig), ids=lambda leaf: leaf.path)
def test_every_setting_has_one_value_in_every_spelling(leaf: Leaf, tmp_path):
    value, text = other_value(leaf)
    by_set = config_with(leaf.path, parse_text(text, leaf) if text is not None else value)
    expected = read_back(by_set, leaf.path)
    assert expected != to_mapping_value(leaf.default) and expected == to_mapping_value(value)

    nested: dict = {}
    node = nested
    *parents, last = leaf.path.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = json.loads(json.dumps(to_mapping_value(value)))
    by_yaml = TrainConfig.from_dict(BASE).with_overrides(yaml.safe_load(yaml.safe_dump(nested)))
    assert read_back(by_yaml, leaf.path) == expected

    write_run_config(tmp_path, by_set, {})
    assert read_back(read_run_config(tmp_path), leaf.path) == expected

    options = {leaf.param: text if text is not None else value}
    assert read_back(config_with_options(options), leaf.path) == expected


def config_with_options(options: dict) -> TrainConfig:
    return TrainConfig.from_dict(BASE).with_overrides(given_values(TrainConfig, options))


OTHER_SCHEMAS = {
    EvaluateRequest: {"task": "tiny"},
    HeadroomRequest: {"task": "tiny"},
    StudyConfig: {
        "tasks": ["trec", "sst2", "agnews"],
        "task": {"proposals": 8},
        "pooled": True,
        "query": {"verify_rows": 100},
    },
}
"""The other commands' schemas, each with a valid mapping to start from."""


def stored_form(obj):
    """``obj`` through the form a command records it in: an evaluation's ``request``, a study's ``study.json``."""
    return type(obj).from_dict(json.loads(json.dumps(to_mapping(obj))))


@pytest.mark.parametrize(
    ("schema", "leaf"),
    [(schema, leaf) for schema in OTHER_SCHEMAS for leaf in leaves(schema)],
    ids=lambda item: item.path if isinstance(item, Leaf) else item.__name__,
)
def test_every_setting_of_the_other_commands_has_one_value_in_every_spelling(schema, leaf: Leaf):
    base = OTHER_SCHEMAS[schema]
    value, text = other_value(leaf)
    spellings = {}
    nested: dict = {}
    node = nested
    *parents, last = leaf.path.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = json.loads(json.dumps(to_mapping_value(value)))
    spellings["yaml"] = schema.from_dict(merge(base, yaml.safe_load(yaml.safe_dump(nested))))
    spellings["--set"] = with_values(schema.from_dict(base), parse_sets(schema, [f"{leaf.path}={text or value}"]))
    spellings["stored"] = stored_form(spellings["--set"])
    if schema is not StudyConfig:  # a study is a YAML file plus --set; evaluate and headroom have a flag per setting
        options = {leaf.param: text if text is not None else value}
        spellings["flag"] = schema.from_dict(merge(base, nest(given_values(schema, options))))
    expected = to_mapping_value(value)
    assert expected != to_mapping_value(leaf.default)
    assert {name: read_back(obj, leaf.path) for name, obj in spellings.items()} == dict.fromkeys(spellings, expected)


def test_the_command_line_reaches_every_setting_through_its_flags():
    import typer

    seen = {}

    def command(settings: dict) -> None:
        seen.update(settings)

    app = typer.Typer()
    app.command()(with_options(TrainConfig, command))
    args = ["--eval-rows", "7", "--evaluation.seeds", "5", "-M", "12", "--no-calibrate", "--task", "trec"]
    args += ["--data.behaviour", "{knn: 1}", "--env.features.projection-dim", "4"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert seen == {
        "evaluation.rows": 7,
        "evaluation.seeds": 5,
        "env.num_candidates": 12,
        "env.calibrate": False,
        "tasks": ["trec"],
        "data.behaviour": {"knn": 1},
        "env.features.projection_dim": 4,
    }
    bad = CliRunner().invoke(app, ["--eval-rows", "many"])
    assert bad.exit_code == 2 and "Invalid value" in bad.output


@pytest.mark.parametrize(
    "schema", [TrainConfig, EvaluateRequest, HeadroomRequest, StudyConfig], ids=lambda s: s.__name__
)
def test_flags_are_unique_and_every_field_is_declared(schema):
    flags = [flag for leaf in leaves(schema) for flag in leaf.flags]
    assert len(flags) == len(set(flags))
    assert all(leaf.spec.help for leaf in leaves(schema))


def test_repeated_list_options_join_and_the_evaluation_cpu_profile_is_declared_once():
    import typer

    seen = {}

    def command(settings: dict) -> None:
        seen.update(settings)

    app = typer.Typer()
    app.command()(with_options(EvaluateRequest, command))
    args = ["--task", "trec", "--selector", "knn,bm25", "--selector", "mmr", "--policy", "a", "--policy", "b"]
    result = CliRunner().invoke(app, [*args, "--dev-size", "12", "--n-test", "9"])
    assert result.exit_code == 0, result.output
    assert seen == {
        "task": "trec",
        "selectors": ["knn", "bm25", "mmr"],
        "policies": ["a", "b"],
        "rows": 9,
        "options.dev_size": 12,
    }
    assert cpu_values(EvaluateRequest) == {"seeds": 3, "embedder": "minilm"}  # MiniLM is installed with [cpu]


def test_the_selectors_cpu_values_are_declared_on_their_schemas():
    from rl_select.selectors import SELECTORS, device_defaults, make_selector

    declared = {name: cpu_values(cls.schema) for name, cls in SELECTORS.items() if cls.schema is not None}
    assert declared["best-of-n"] == {"dev_size": 16} and declared["mdl"] == {"num_candidates": 8, "num_sets": 3}
    assert all(device_defaults(name, "cpu") == values for name, values in declared.items())
    assert all(device_defaults(name, "cuda") == {} for name in SELECTORS)
    for name, cls in SELECTORS.items():  # the constructor's defaults are the schema's
        if cls.schema is not None:
            assert make_selector(name).options() == to_mapping(cls.schema())


def test_bad_values_are_one_line_errors_with_the_full_path():
    with pytest.raises(ConfigError, match=r"^evaluation\.rows must be >= 1, got 0$"):
        TrainConfig.from_dict({**BASE, "evaluation": {"rows": 0}})
    with pytest.raises(ConfigError, match=r"^env\.k must be an integer, got 'four'$"):
        TrainConfig.from_dict({**BASE, "env": {"k": "four"}})
    with pytest.raises(ConfigError, match=r"unknown setting 'evaluation\.row'; did you mean 'rows'"):
        TrainConfig.from_dict({**BASE, "evaluation.row": 3})
    with pytest.raises(ConfigError, match="algo must be one of"):
        build(TrainConfig, {**BASE, "algo": "sac"})


def test_a_mapping_setting_is_replaced_whole():
    config = TrainConfig.from_dict(BASE).with_overrides({"data.behaviour": {"greedy": 1}})
    assert config.data.behaviour == {"greedy": 1.0}


def test_the_cpu_profile_is_declared_on_the_fields_and_applied_once():
    profile = cpu_values(TrainConfig)
    assert profile["evaluation.rows"] == 100 and profile["env.reward_rows"] == 8
    assert all(leaf.spec.cpu is UNSET or leaf.path in profile or leaf.spec.cpu_needs for leaf in leaves(TrainConfig))
    base = TrainConfig.from_dict(BASE)
    chosen = chosen_keys({"evaluation": {"rows": 300}, "env.reward_rows": 50})
    fitted, applied = fit_training(base.with_overrides({"evaluation.rows": 300, "env.reward_rows": 50}), chosen, "cpu")
    assert fitted.evaluation.rows == 300 and fitted.env.reward_rows == 50 and fitted.evaluation.seeds == 2
    assert "evaluation.rows" not in applied and applied["evaluation.seeds"] == 2
    assert fit_training(base, set(), "cuda")[0].evaluation.seeds == 3


def test_format_1_keys_still_read_and_name_their_new_paths():
    flat = TrainConfig.from_dict({**BASE, "eval_rows": 9, "fqi_alpha": 0.2, "learning_rate": 0.01})
    assert flat.evaluation.rows == 9 and flat.fqi.alpha == 0.2
    assert flat.ppo.learning_rate == flat.fqi.learning_rate == flat.cql.learning_rate == 0.01
    paths = {leaf.path for leaf in leaves(TrainConfig)}
    assert set(FORMAT_1_KEYS.values()) <= paths
    assert all(f"{learner}.{key}" in paths for key, learners in FORMAT_1_SHARED.items() for learner in learners)


@pytest.mark.parametrize(
    "path", sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("experiments/**/config.json")), ids=str
)
def test_every_committed_run_config_loads_with_its_recorded_values(path):
    data = json.loads((ROOT / path).read_text())
    config = read_run_config((ROOT / path).parent)
    flat = data["config"]
    if data["format"] != 1:  # every recorded value read back; settings added since take their defaults
        stored, loaded = flatten(flat, TrainConfig), flatten(config.to_dict(), TrainConfig)
        assert {path: loaded[path] for path in stored} == stored
        defaults = {leaf.path: leaf.default for leaf in leaves(TrainConfig)}
        assert all(loaded[path] == defaults[path] for path in set(loaded) - set(stored))
        return
    for key, dotted in FORMAT_1_KEYS.items():
        if key in flat:
            assert read_back(config, dotted) == flat[key], key
    for key, learners in FORMAT_1_SHARED.items():
        if flat.get(key) is not None:
            assert all(read_back(config, f"{learner}.{key}") == flat[key] for learner in learners), key
    env = config.env.to_dict()
    for key, value in flat["env"].items():
        assert env[key] == value if key != "features" else {**env["features"], **value} == env["features"], key


def test_a_run_config_of_an_unknown_format_is_an_artifact_error(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"format": 7, "config": {}}))
    with pytest.raises(ArtifactError, match="format 7"):
        read_run_config(tmp_path)


STUDY_FILES = sorted(
    str(p.relative_to(ROOT))
    for pattern in ("experiments/results/**/study.json", "experiments/configs/*.yaml")
    for p in ROOT.glob(pattern)
    if p.suffix == ".json" or "\nname: " in p.read_text()  # study configs: training configs have no name
)


@pytest.mark.parametrize("path", STUDY_FILES, ids=str)
def test_every_committed_study_file_loads_with_its_recorded_values(path):
    """Study configs and states, old (flat ``eval_rows``) and new (``evaluation.rows``), read the same values."""
    data = yaml.safe_load((ROOT / path).read_text())
    config = StudyConfig.from_dict(data)
    for key in STUDY_FORMAT_1_KEYS:
        if key in data:
            value = read_back(config, FORMAT_1_KEYS[key])
            assert to_mapping_value(value) == data[key], key
    for key, value in data.get("evaluation", {}).items():
        assert to_mapping_value(read_back(config, f"evaluation.{key}")) == value, key


def test_a_study_in_format_1_reads_its_flat_names_as_paths():
    old = StudyConfig.from_dict({"tasks": ["trec", "sst2"], "eval_rows": 7, "baselines": ["knn"], "best_of_n_sets": 5})
    new = StudyConfig.from_dict(
        {"tasks": ["trec", "sst2"], "evaluation": {"rows": 7, "baselines": ["knn"], "best_of_n_sets": 5}}
    )
    assert old == new and old.evaluation.rows == 7 and old.evaluation.baselines == ("knn",)
    with pytest.raises(ConfigError, match="unknown"):
        StudyConfig.from_dict({"tasks": ["trec", "sst2"], "eval_rowz": 7})
