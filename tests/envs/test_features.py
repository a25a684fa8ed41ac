"""The feature bank: a candidate's features never depend on which candidates were asked for with it."""

import hashlib

import numpy as np

from rl_select.envs.features import FeatureBank
from rl_select.observation import FeatureConfig
from rl_select.resources import Resources
from rl_select.tasks import load_task


class WideHashEmbedder:
    """384-dim vectors drawn from each text's hash: as wide as MiniLM's, so matrix products take BLAS's paths."""

    id = "test:wide-hash-384"

    def embed(self, texts, progress=None):
        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
            rows.append(np.random.default_rng(seed).standard_normal(384))
        vectors = np.asarray(rows, dtype=np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def bank(data_root, tiny_lm):
    resources = Resources(load_task("tiny_trec", data_root), lm=tiny_lm, embedder_impl=WideHashEmbedder())
    return FeatureBank(resources, FeatureConfig(llm_features=False))


def test_static_features_do_not_depend_on_which_rows_were_asked_for_first(data_root, tiny_lm):
    pool = len(load_task("tiny_trec", data_root).train)
    ids = list(range(pool))
    all_at_once = bank(data_root, tiny_lm).static(ids)
    one_by_one = bank(data_root, tiny_lm)
    rows = np.stack([one_by_one.static([i])[0] for i in reversed(ids)])[::-1]
    assert np.array_equal(all_at_once, rows)  # bit for bit: a resumed run must see the same floats
