"""llama.cpp beside our scorer (the bench's row): the same prompts from the same GGUF file score alike.

Skipped where llama-cpp-python is not installed (it builds from source, about 10 minutes; CI does not).
"""

import numpy as np
import pytest

from rl_select.bench.llama_cpp import LlamaCppScorer
from rl_select.scoring import Scorer, naive_log_scores
from rl_select.scoring.model import default_gguf_path
from rl_select.tasks import load_task

pytest.importorskip("llama_cpp")
pytestmark = pytest.mark.real_model


@pytest.mark.parametrize(("name", "rows"), [("sst2", 24), ("trec", 12)])
def test_llama_cpp_scores_the_same_prompts_like_transformers(real_lm, shared_data, name, rows):
    task = load_task(name, shared_data)
    encoder = Scorer(real_lm, task).encoder
    demos, queries = task.train[:4], task.dev[:rows]
    engine = LlamaCppScorer(default_gguf_path(), threads=2, sequences=8)
    try:
        got = engine.log_scores(encoder, demos, queries, max_tokens=real_lm.max_positions)
    finally:
        engine.close()
    expected = naive_log_scores(real_lm, encoder, demos, queries, max_tokens=real_lm.max_positions)
    assert np.isfinite(got).all() and np.abs(got - expected).max() < 1.0  # Q4_1 GGUF kernels vs fp32 weights
    assert (got.argmax(1) == expected.argmax(1)).mean() >= 0.9
