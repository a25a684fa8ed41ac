"""What makes the CPU scorer fast: the measured dtype choice, grouped attention, the float32 LM head, rows."""

import json

import numpy as np
import pytest
import torch

from rl_select.scoring import Scorer, ScoringConfig, load_language_model, naive_log_scores
from rl_select.scoring import dtype as dtype_choice
from rl_select.scoring.attention import ATTENTION, grouped_attention
from rl_select.scoring.model import Float32Head
from rl_select.tasks import load_task

FAST_BF16 = {torch.float32: 0.060, torch.bfloat16: 0.015}  # a Zen 5 EPYC: bf16 matmuls 4× fp32
SLOW_BF16 = {torch.float32: 0.050, torch.bfloat16: 0.085}  # a Xeon with AVX512-BF16 but no AMX


def timing(seconds, calls):
    def measure(dtype):
        calls.append(dtype)
        return seconds[dtype]

    return measure


@pytest.mark.parametrize(("seconds", "expected"), [(FAST_BF16, torch.bfloat16), (SLOW_BF16, torch.float32)])
def test_auto_picks_the_faster_dtype_and_caches_the_verdict(tmp_path, seconds, expected):
    path, calls = tmp_path / "verdicts.json", []
    choice = dtype_choice.cpu_dtype(timing(seconds, calls), "model-a", path)
    assert choice.dtype == expected and sorted(map(str, calls)) == ["torch.bfloat16", "torch.float32"]
    assert "measured now" in choice.reason and "faster than" in choice.reason
    again = dtype_choice.cpu_dtype(timing({}, calls), "model-a", path)  # a second measurement would raise
    assert again.dtype == expected and "cached verdict" in again.reason and len(calls) == 2
    stored = json.loads(path.read_text())
    assert list(stored) == [dtype_choice.machine_key("model-a")]


def test_verdicts_are_per_cpu_cores_torch_and_model(tmp_path, monkeypatch):
    path, calls = tmp_path / "verdicts.json", []
    # Both CPUs are named here: the machine running the test may itself be either of them.
    monkeypatch.setattr(dtype_choice, "cpu_model", lambda: "AMD EPYC 9B45")
    dtype_choice.cpu_dtype(timing(FAST_BF16, calls), "model-a", path)
    monkeypatch.setattr(dtype_choice, "cpu_model", lambda: "Intel(R) Xeon(R) Processor")
    xeon = dtype_choice.cpu_dtype(timing(SLOW_BF16, calls), "model-a", path)
    other_model = dtype_choice.cpu_dtype(timing(SLOW_BF16, calls), "model-b", path)
    assert xeon.dtype == other_model.dtype == torch.float32 and len(calls) == 6
    assert "Xeon" in dtype_choice.machine_key("m") and "torch" in dtype_choice.machine_key("m")
    assert len(json.loads(path.read_text())) == 3


def test_an_unreadable_verdict_file_is_measured_again(tmp_path):
    path, calls = tmp_path / "verdicts.json", []
    path.write_text("{not json")
    assert dtype_choice.cpu_dtype(timing(FAST_BF16, calls), "m", path).dtype == torch.bfloat16 and calls
    path.write_text(json.dumps({dtype_choice.machine_key("m"): {"seconds": {"float32": "x"}}}))
    assert dtype_choice.cpu_dtype(timing(SLOW_BF16, calls), "m", path).dtype == torch.float32


def test_load_with_auto_dtype_measures_once_and_records_why(tiny_model_dir, monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(dtype_choice, "verdict_file", lambda: tmp_path / "verdicts.json")
    monkeypatch.setattr(dtype_choice, "forward_timer", lambda model: timing(FAST_BF16, calls))
    lm = load_language_model(str(tiny_model_dir), device="cpu", dtype="auto")
    assert lm.dtype == torch.bfloat16 and lm.info()["dtype"] == "bfloat16"
    assert "bfloat16 forward 4.00× faster than float32" in lm.info()["dtype_reason"]
    assert isinstance(lm.model.get_output_embeddings(), Float32Head)
    again = load_language_model(str(tiny_model_dir), device="cpu", dtype="auto")
    assert "cached verdict" in again.dtype_reason and len(calls) == 2


def test_an_explicit_dtype_is_never_measured(tiny_model_dir, monkeypatch):
    def refuse(model):
        raise AssertionError("measured although a dtype was given")

    monkeypatch.setattr(dtype_choice, "forward_timer", refuse)
    lm = load_language_model(str(tiny_model_dir), device="cpu", dtype="float32")
    assert lm.dtype == torch.float32 and lm.dtype_reason == "asked for"


def test_the_real_forward_timer_times_a_probe_without_touching_the_model(tiny_lm):
    before = {name: p.clone() for name, p in tiny_lm.model.named_parameters()}
    measure = dtype_choice.forward_timer(tiny_lm.model, repeats=1)
    assert measure(torch.float32) > 0 and measure(torch.bfloat16) > 0
    after = dict(tiny_lm.model.named_parameters())
    assert all(torch.equal(before[n], after[n]) and after[n].dtype == torch.float32 for n in before)
    assert len(tiny_lm.model.model.layers) == 2


def test_grouped_attention_equals_transformers_eager_attention():
    from transformers.models.llama.modeling_llama import eager_attention_forward

    torch.manual_seed(0)
    module = torch.nn.Module()
    module.num_key_value_groups, module.training, module.scaling = 3, False, 0.125
    query, key, value = torch.randn(2, 6, 5, 8), torch.randn(2, 2, 9, 8), torch.randn(2, 2, 9, 8)
    allowed = torch.rand(2, 1, 5, 9) > 0.3
    allowed[..., 0] = True  # every query attends somewhere
    additive = torch.zeros(allowed.shape).masked_fill(~allowed, torch.finfo(torch.float32).min)
    expected, _ = eager_attention_forward(module, query, key, value, additive, scaling=0.125)
    for mask in (additive, allowed):
        got, _ = grouped_attention(module, query, key, value, mask, scaling=0.125)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_grouped_attention_is_the_cpu_default_and_scores_like_eager(tiny_model_dir, data_root):
    grouped = load_language_model(str(tiny_model_dir), device="cpu", dtype="float32")
    eager = load_language_model(str(tiny_model_dir), device="cpu", dtype="float32", attn_implementation="eager")
    assert grouped.info()["attention"] == ATTENTION and eager.info()["attention"] == "eager"
    task = load_task("tiny_trec", data_root)
    demos, queries = task.train[:3], task.dev
    ours = Scorer(grouped, task).score(demos, queries, use_cache=False)
    reference = naive_log_scores(eager, Scorer(eager, task).encoder, demos, queries, max_tokens=512)
    np.testing.assert_allclose(ours.log_scores, reference, rtol=1e-5, atol=1e-4)


def test_bf16_scoring_reads_float32_logits(tiny_model_dir, data_root):
    low = load_language_model(str(tiny_model_dir), device="cpu", dtype="bfloat16")
    full = load_language_model(str(tiny_model_dir), device="cpu", dtype="float32")
    assert low.info()["parameters"] == full.info()["parameters"]
    with torch.inference_mode():
        logits = low.model(input_ids=torch.tensor([[0, 5, 6, 7]])).logits
    assert logits.dtype == torch.float32
    task = load_task("tiny_sst", data_root)  # its weights are scaled up: logits near 150, so bf16 is loose here
    got = Scorer(low, task).score(task.train[:2], task.dev, use_cache=False).log_scores
    expected = Scorer(full, task).score(task.train[:2], task.dev, use_cache=False).log_scores
    np.testing.assert_allclose(got, expected, rtol=0.1)


def test_rows_are_batched_shortest_first_with_little_padding(tiny_lm, data_root):
    task = load_task("tiny_trec", data_root)
    scorer = Scorer(tiny_lm, task, ScoringConfig(batch_tokens=64))
    scorer.score(task.train[:2], task.dev + task.test, use_cache=False)
    stats = scorer.stats
    assert stats.forwards > 2 and stats.padding < 0.5 * stats.tokens
