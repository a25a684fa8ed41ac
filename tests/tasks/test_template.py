import pytest

from rl_select.errors import DataError
from rl_select.tasks import PromptTemplate

VERBALIZER = {"negative": "negative", "positive": "positive"}
LABELS = ("negative", "positive")


def test_split_at_label_moves_space_into_answer():
    template = PromptTemplate("Review: {text}\nSentiment: {label}", VERBALIZER, LABELS)
    assert template.query("great") == "Review: great\nSentiment:"
    assert template.answer("positive") == " positive"
    assert template.demonstration("great", "positive") == "Review: great\nSentiment: positive"
    prompt = template.prompt([("good", "positive", None)], "bad")
    assert prompt == "Review: good\nSentiment: positive\n\nReview: bad\nSentiment:"


def test_text_containing_braces_is_not_reformatted():
    template = PromptTemplate("Q: {text} A: {label}", VERBALIZER, LABELS)
    assert template.query("a {text_pair} b {label}") == "Q: a {text_pair} b {label} A:"


def test_pair_template_and_tail():
    template = PromptTemplate("{text}\nQ: {text_pair}?\nA: {label}.", {"yes": "Yes", "no": "No"}, ("yes", "no"))
    assert template.uses_text_pair
    assert template.demonstration("p", "yes", "h") == "p\nQ: h?\nA: Yes."


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("Review:\nSentiment: {label}", "must contain {text}"),
        ("Review: {text}", "{label} exactly once"),
        ("{text} {label} {label}", "{label} exactly once"),
        ("{label} {text}", "after {text}"),
        ("{text} {foo} {label}", "unknown field"),
    ],
)
def test_bad_templates(template, message):
    with pytest.raises(DataError, match=message.replace("{", r"\{").replace("}", r"\}")):
        PromptTemplate(template, VERBALIZER, LABELS)


def test_bad_verbalizers():
    with pytest.raises(DataError, match="no word for label"):
        PromptTemplate("{text} {label}", {"negative": "bad"}, LABELS)
    with pytest.raises(DataError, match="distinct"):
        PromptTemplate("{text} {label}", {"negative": "x", "positive": "x"}, LABELS)
    with pytest.raises(DataError, match="non-empty"):
        PromptTemplate("{text} {label}", {"negative": " ", "positive": "x"}, LABELS)
    with pytest.raises(DataError, match="at least two labels"):
        PromptTemplate("{text} {label}", {"a": "a"}, ("a",))
