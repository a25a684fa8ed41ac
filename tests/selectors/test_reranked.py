"""TopK + MDL, TopK + ConE and Vote-k: each does what its paper says, and its LLM cost is counted."""

import numpy as np
import pytest
import torch

from rl_select.resources import Resources
from rl_select.scoring import ScoringConfig
from rl_select.selectors import make_selector
from rl_select.selectors.reranked import nearest_neighbours, votek_annotation_set
from rl_select.tasks import load_task


@pytest.fixture
def resources(tiny_lm, data_root):
    return Resources(load_task("tiny_trec", data_root), lm=tiny_lm, scoring=ScoringConfig())


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_nearest_neighbours_match_brute_force():
    vectors = unit(np.random.default_rng(0).normal(size=(50, 8))).astype(np.float32)
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    expected = np.argsort(-sims, axis=1, kind="stable")[:, :5]
    np.testing.assert_array_equal(nearest_neighbours(vectors, 5, chunk=16), expected)


def votek_by_the_formula(vectors, budget, neighbours, discount):
    """Su et al. 2023, eq. (1) as written: s(v) = sum over unchosen u with v in N(u) of discount^-|chosen in N(u)|."""
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    graph = [set(np.argsort(-sims[u], kind="stable")[:neighbours].tolist()) for u in range(len(vectors))]
    chosen = []
    for _ in range(budget):
        scores = {
            v: sum(
                discount ** -len(graph[u] & set(chosen))
                for u in range(len(vectors))
                if v in graph[u] and u not in chosen
            )
            for v in range(len(vectors))
            if v not in chosen
        }
        chosen.append(max(scores, key=lambda v: (scores[v], -v)))
    return chosen


def test_votek_follows_the_papers_formula_and_spreads_over_clusters():
    rng = np.random.default_rng(0)
    centres = unit(rng.normal(size=(4, 16)))
    sizes = [24, 16, 12, 8]
    vectors = unit(np.concatenate([c + 0.05 * rng.normal(size=(n, 16)) for c, n in zip(centres, sizes, strict=True)]))
    vectors = vectors.astype(np.float32)
    chosen = votek_annotation_set(vectors, budget=8, neighbours=7, discount=10.0)
    assert chosen.tolist() == votek_by_the_formula(vectors, 8, 7, 10.0)
    cluster = np.repeat(np.arange(4), sizes)
    assert set(cluster[chosen]) == {0, 1, 2, 3}


def test_mdl_keeps_the_lowest_entropy_organization_and_counts_its_calls(resources):
    task, query = resources.task, resources.task.test[0]
    selector = make_selector("mdl", num_candidates=6, num_sets=4).build(resources)
    before = resources.scorer.cost()
    chosen = selector.select(task, query, 3, np.random.default_rng(1))
    assert (resources.scorer.cost() - before).queries == 4  # one scored query per organization
    candidates, ids = selector.pool_candidates(task, query, 3, np.random.default_rng(1))
    organizations = [[int(ids[i]) for i in prompt] for prompt in organizations_of(candidates, 3, 4, seed=1)]
    entropy = [resources.scorer.score([task.train[i] for i in p], [query]).entropy[0] for p in organizations]
    assert chosen == organizations[int(np.argmin(entropy))]
    assert organizations[0] == make_selector("knn").build(resources).select(task, query, 3, None)


def organizations_of(candidates, k, num_sets, seed):
    from rl_select.selectors.retrieval import most_similar_last

    rng = np.random.default_rng(seed)
    prompts = [most_similar_last(candidates, candidates.nearest_first()[:k])]
    prompts += [most_similar_last(candidates, rng.choice(len(candidates), size=k, replace=False)) for _ in range(3)]
    return prompts


def test_cone_nll_matches_the_model_and_keeps_the_lowest(resources, tiny_lm):
    task, query = resources.task, resources.task.test[1]
    scorer = resources.scorer

    def direct(demos):
        prefix, target = scorer.encoder.prefix(demos), list(scorer.encoder.query(query))
        with torch.no_grad():
            logits = tiny_lm.model(input_ids=torch.tensor([prefix + target])).logits[0].float()
        logprobs = torch.log_softmax(logits, -1)[len(prefix) - 1 : -1]
        return -logprobs[torch.arange(len(target)), torch.tensor(target)].mean().item()

    prefixes = [[task.train[0]], [task.train[1], task.train[2]], [task.train[3]]]  # left-padded to one width
    expected = [direct(p) for p in prefixes]
    assert scorer.query_nll(prefixes, query).tolist() == pytest.approx(expected, rel=1e-4)

    selector = make_selector("cone", num_candidates=6).build(resources)
    before = scorer.cost()
    chosen = selector.select(task, query, 2, np.random.default_rng(0))
    assert (scorer.cost() - before).queries == 6
    candidates, ids = selector.pool_candidates(task, query, 2, np.random.default_rng(0))
    nll = scorer.query_nll([[e] for e in candidates.examples], query)
    assert chosen[-1] == int(ids[int(np.argmin(nll))])  # the lowest conditional entropy sits last
    assert sorted(nll)[:2] == pytest.approx(sorted(nll[[list(ids).index(i) for i in chosen]]))
