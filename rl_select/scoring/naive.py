"""The naive Hugging Face scoring loop: the reference the fast scorer is checked and benchmarked against.

One padded forward per full prompt (prefix + query, plus the answer when labels span several tokens), full
logits over the vocabulary at every position, no KV reuse: what a straightforward transformers script does.
Prompts are built from the same token blocks as the fast scorer, with the same length policy, so both score
exactly the same token sequences.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from rl_select.scoring.model import LanguageModel
from rl_select.scoring.prompts import PromptEncoder
from rl_select.tasks.task import Example


@torch.inference_mode()
def naive_log_scores(
    lm: LanguageModel,
    encoder: PromptEncoder,
    demos: Sequence[Example],
    queries: Sequence[Example],
    *,
    max_tokens: int,
    batch_size: int = 16,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """``[Q, C]`` label log-probabilities (sum over answer tokens), computed the naive way."""
    labels = encoder.label_tokens
    single = all(len(t) == 1 for t in labels)
    sequences: list[list[int]] = []
    targets: list[tuple[int, int, int, tuple[int, ...]]] = []  # (query, label, answer start, answer tokens)
    for qi, query in enumerate(queries):
        plan = encoder.plan(demos, query, max_tokens)
        prompt = encoder.prefix(demos[plan.num_dropped :]) + list(plan.tokens)
        if single:
            targets.append((qi, -1, len(prompt), ()))
            sequences.append(prompt)
        else:
            for c, answer in enumerate(labels):
                targets.append((qi, c, len(prompt), answer))
                sequences.append(prompt + list(answer))
    out = np.zeros((len(queries), len(labels)))
    first_tokens = torch.tensor([t[0] for t in labels], device=lm.device)
    pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
    for start in range(0, len(sequences), batch_size):
        batch = sequences[start : start + batch_size]
        width = max(len(s) for s in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, seq in enumerate(batch):
            ids[row, : len(seq)] = torch.tensor(seq)
            mask[row, : len(seq)] = 1
        logits = lm.model(input_ids=ids.to(lm.device), attention_mask=mask.to(lm.device)).logits
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        for row, (qi, c, answer_start, answer) in enumerate(targets[start : start + batch_size]):
            if c < 0:
                out[qi] = logprobs[row, answer_start - 1, first_tokens].double().cpu().numpy()
            else:
                positions = torch.arange(answer_start - 1, answer_start - 1 + len(answer), device=lm.device)
                picked = logprobs[row, positions, torch.tensor(answer, device=lm.device)]
                out[qi, c] = float(picked.double().sum())
        if progress is not None:
            progress(len({t[0] for t in targets[start : start + batch_size]}))
    return out
