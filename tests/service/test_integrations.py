"""The LangChain and DSPy adapters, against the real libraries, over a tiny exported query-mode policy."""

import pytest

from rl_select.errors import ConfigError
from rl_select.export.runtime import load_selector

pytest.importorskip("langchain_core")
pytest.importorskip("dspy")

QUERY = "a warm and funny film with a great cast"


def test_langchain_few_shot_prompt_uses_the_policys_examples_in_order(query_policy):
    from langchain_core.prompts import FewShotPromptTemplate, PromptTemplate

    from rl_select.integrations.langchain import RLExampleSelector

    _, policy = query_policy
    chooser = RLExampleSelector.from_policy(policy)
    template = FewShotPromptTemplate(
        example_selector=chooser,
        example_prompt=PromptTemplate.from_template("Review: {input}\nSentiment: {output}"),
        suffix="Review: {input}\nSentiment:",
        input_variables=["input"],
    )
    text = template.format(input=QUERY)
    expected = load_selector(policy).select(QUERY)
    blocks = text.split("\n\n")
    assert blocks[:-1] == [f"Review: {d.text}\nSentiment: {d.label}" for d in expected]
    assert blocks[-1] == f"Review: {QUERY}\nSentiment:"


def test_langchain_added_example_becomes_a_candidate(query_policy):
    from rl_select.integrations.langchain import RLExampleSelector

    _, policy = query_policy
    chooser = RLExampleSelector.from_policy(policy)
    size = len(chooser.selector.pool)
    new_id = chooser.add_example({"input": QUERY, "output": "positive"})
    assert new_id == size and len(chooser.selector.pool) == size + 1
    everything = chooser.selector.select(QUERY, k=chooser.selector.num_candidates)
    assert new_id in [d.id for d in everything]  # its own nearest neighbour
    with pytest.raises(Exception, match="not one of the task's labels"):
        chooser.add_example({"input": "x y z", "output": "maybe"})
    with pytest.raises(ConfigError, match="no 'input'"):
        chooser.select_examples({"question": QUERY})


def test_dspy_program_compiles_and_runs_with_the_policys_demos(query_policy):
    import dspy
    from dspy.utils.dummies import DummyLM

    from rl_select.integrations.dspy import RLFewShot

    _, policy = query_policy
    optimizer = RLFewShot(policy)
    program = optimizer.compile(dspy.Predict("text -> label"))
    lm = DummyLM([{"label": "positive"}] * 4)
    with dspy.context(lm=lm):
        prediction = program(text=QUERY)
    assert prediction.label == "positive"
    demos = optimizer.demos_for({"text": QUERY})
    assert [d.text for d in demos] == [d.text for d in load_selector(policy).select(QUERY)]
    sent = "\n".join(str(m["content"]) for m in lm.history[-1]["messages"])
    positions = [sent.index(d.text) for d in demos]
    assert positions == sorted(positions)  # every demo in the prompt, in the policy's order
    assert sent.rindex(QUERY) > positions[-1]


def test_dspy_trainset_becomes_the_pool(query_policy):
    import dspy

    from rl_select.integrations.dspy import RLFewShot

    _, policy = query_policy
    rows = [f"film number {i} was {'great' if i % 2 else 'awful'}" for i in range(10)]
    trainset = [
        dspy.Example(text=t, label="positive" if i % 2 else "negative").with_inputs("text") for i, t in enumerate(rows)
    ]
    optimizer = RLFewShot(policy)
    optimizer.compile(dspy.Predict("text -> label"), trainset=trainset)
    assert {d.text for d in optimizer.demos_for({"text": QUERY})} <= set(rows)
