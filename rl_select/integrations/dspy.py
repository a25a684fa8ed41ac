"""DSPy: :class:`RLFewShot`, an optimizer whose compiled program gets its demos from an exported policy per call.

Like DSPy's ``KNNFewShot``, the demos are chosen for each input at call time; unlike it, the choice (and order)
comes from a policy trained on the LLM's own scores. The policy's prompt is kept as it chose it.

Example:
    >>> import dspy  # doctest: +SKIP
    >>> classify = dspy.Predict("text -> label")  # doctest: +SKIP
    >>> program = RLFewShot("policies/sst2-query").compile(classify)  # doctest: +SKIP
    >>> program(text="a gripping, funny film").label  # doctest: +SKIP
"""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

from rl_select.errors import ConfigError
from rl_select.export.runtime import Selector
from rl_select.integrations import as_selector, missing_extra

try:
    import dspy
    from dspy.teleprompt import LabeledFewShot
    from dspy.teleprompt.teleprompt import Teleprompter
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise missing_extra("dspy", "dspy") from exc


class RLFewShot(Teleprompter):
    """Sets every predictor's demos, per call, to the demonstrations an exported rl-select policy chooses.

    Args:
        policy: The directory written by ``rl-select export`` (or a loaded :class:`Selector`).
        k: Demos per call (default: the k the policy was trained with).
        input_field: The program's input field holding the text to classify (also each demo's text field).
        output_field: The output field of each demo (its raw task label).
        pair_field: For pair tasks, the input field of the second text.
    """

    def __init__(
        self,
        policy: str | Path | Selector,
        *,
        k: int | None = None,
        input_field: str = "text",
        output_field: str = "label",
        pair_field: str | None = None,
    ) -> None:
        super().__init__()
        self.selector = as_selector(policy)
        self.k = k
        self.input_field = input_field
        self.output_field = output_field
        self.pair_field = pair_field

    def compile(self, student: Any, *, trainset: list[Any] | None = None, teacher: Any = None, **_: Any) -> Any:
        """A copy of ``student`` that chooses its demos per call; ``trainset`` (if given) becomes the pool."""
        if trainset:
            self.selector.use_pool([self._row(example) for example in trainset], source="DSPy trainset")
        optimizer = self

        def forward(program: Any, **kwargs: Any) -> Any:
            demos = optimizer.demos_for(kwargs)
            compiled = LabeledFewShot(k=len(demos)).compile(student, trainset=demos, sample=False)
            return compiled(**kwargs)

        program = student.reset_copy()
        program.forward = types.MethodType(forward, program)
        return program

    def demos_for(self, inputs: dict[str, Any]) -> list[Any]:
        """The ``dspy.Example`` demos the policy chooses for one call's inputs, in prompt order."""
        query = inputs.get(self.input_field)
        if self.selector.mode == "query" and not isinstance(query, str):
            raise ConfigError(f"the program's inputs have no {self.input_field!r} string to select demos for")
        pair = inputs.get(self.pair_field) if self.pair_field else None
        demos = []
        for demonstration in self.selector.select(query, self.k, pair):
            fields = {self.input_field: demonstration.text, self.output_field: demonstration.label}
            if self.pair_field:
                fields[self.pair_field] = demonstration.text_pair
            inputs_of = [self.input_field, *([self.pair_field] if self.pair_field else [])]
            demos.append(dspy.Example(**fields).with_inputs(*inputs_of))
        return demos

    def _row(self, example: Any) -> dict[str, Any]:
        row = {"text": example.get(self.input_field), "label": example.get(self.output_field)}
        if self.pair_field:
            row["text_pair"] = example.get(self.pair_field)
        return row
