r"""LangChain: :class:`RLExampleSelector`, a ``BaseExampleSelector`` over an exported rl-select policy.

Example:
    >>> from langchain_core.prompts import FewShotPromptTemplate, PromptTemplate  # doctest: +SKIP
    >>> selector = RLExampleSelector.from_policy("policies/trec-query")  # doctest: +SKIP
    >>> prompt = FewShotPromptTemplate(  # doctest: +SKIP
    ...     example_selector=selector,
    ...     example_prompt=PromptTemplate.from_template("Question: {input}\nAnswer Type: {output}"),
    ...     suffix="Question: {input}\nAnswer Type:",
    ...     input_variables=["input"],
    ... )
    >>> print(prompt.format(input="What is the capital of France ?"))  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rl_select.errors import ConfigError
from rl_select.export.runtime import Selector
from rl_select.integrations import as_selector, missing_extra

try:
    from langchain_core.example_selectors import BaseExampleSelector
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise missing_extra("langchain", "langchain-core") from exc


class RLExampleSelector(BaseExampleSelector):
    """Chooses a prompt's examples with an exported rl-select policy, in the policy's prompt order.

    Args:
        selector: The loaded policy (see :meth:`from_policy`).
        k: Examples per prompt (default: the k the policy was trained with).
        input_key: The input variable holding the query, and the example key of each demonstration's text.
        output_key: The example key of each demonstration's answer (the task's verbalized label).
        pair_key: For pair tasks (a ``{text_pair}`` template), the variable and key of the second text.
    """

    def __init__(
        self,
        selector: Selector,
        *,
        k: int | None = None,
        input_key: str = "input",
        output_key: str = "output",
        pair_key: str | None = None,
    ) -> None:
        self.selector = selector
        self.k = k
        self.input_key = input_key
        self.output_key = output_key
        self.pair_key = pair_key

    @classmethod
    def from_policy(cls, policy: str | Path | Selector, **options: Any) -> RLExampleSelector:
        """Load the policy directory written by ``rl-select export`` (or wrap a loaded one)."""
        return cls(as_selector(policy), **options)

    def select_examples(self, input_variables: dict[str, str]) -> list[dict[str, Any]]:
        """The examples for these inputs, in prompt order.

        Each is a dict with ``input_key``, ``output_key`` (and ``pair_key``), plus ``label`` and ``id`` (pool id).
        """
        query = input_variables.get(self.input_key)
        if self.selector.mode == "query" and not isinstance(query, str):
            raise ConfigError(f"input_variables has no {self.input_key!r} string to select examples for")
        pair = input_variables.get(self.pair_key) if self.pair_key else None
        demonstrations = self.selector.select(query, self.k, pair)
        return [self._example(d) for d in demonstrations]

    def add_example(self, example: dict[str, str]) -> int:
        """Add a labelled example (``input_key`` text, ``output_key`` label) to the pool; returns its pool id."""
        row = {"text": example.get(self.input_key), "label": self._label(example.get(self.output_key))}
        if self.pair_key:
            row["text_pair"] = example.get(self.pair_key)
        return self.selector.add_examples([row])[0]

    def _example(self, demonstration: Any) -> dict[str, Any]:
        example = {
            self.input_key: demonstration.text,
            self.output_key: self.selector.template.verbalizer[demonstration.label],
            "label": demonstration.label,
            "id": demonstration.id,
        }
        if self.pair_key:
            example[self.pair_key] = demonstration.text_pair
        return example

    def _label(self, answer: Any) -> Any:
        """A task label from a label or its verbalized answer (what :meth:`select_examples` returns)."""
        template = self.selector.template
        by_answer = {template.verbalizer[label]: label for label in template.labels}
        return by_answer.get(answer, answer)
