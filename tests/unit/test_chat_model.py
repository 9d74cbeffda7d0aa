"""The chat example's word model: trained on the standard library's docstrings, it streams readable text."""

from __future__ import annotations

import importlib.util
import re
from itertools import pairwise
from pathlib import Path

import pytest

MODEL_PATH = Path(__file__).resolve().parents[2] / "examples" / "chat" / "model.py"


def _load():
    # examples/chat is not a package, so the module is loaded from its file.
    spec = importlib.util.spec_from_file_location("chat_model", MODEL_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


chat = _load()


@pytest.fixture(scope="module")
def texts():
    return chat.corpus()


@pytest.fixture(scope="module")
def model(texts):
    return chat.WordModel.train(texts)


@pytest.fixture(scope="module")
def followers(texts):
    """Every token that follows each token somewhere in the corpus (texts end as sentences)."""
    seen: dict[str, set[str]] = {}
    for text in texts:
        for a, b in pairwise([*chat.tokenize(text), "."]):
            seen.setdefault(a, set()).add(b)
    return seen


def _reply(model, prompt, **kwargs):
    return list(model.generate(prompt, **kwargs))


def test_corpus_is_stdlib_prose_including_the_zen(texts):
    assert len(texts) > 500
    assert any("Beautiful is better than ugly." in text for text in texts)
    assert all(text.strip() for text in texts)
    assert len(set(texts)) == len(texts)


def test_tokenize_keeps_words_dotted_names_and_punctuation():
    assert chat.tokenize("Use os.path.join, don't guess!") == [
        "Use",
        "os.path.join",
        ",",
        "don't",
        "guess",
        "!",
    ]


def test_name_vocabulary_and_token_count(model):
    assert model.name == "steady-markov-3gram"
    assert model.vocabulary_size > 1000
    assert model.count_tokens("Hello, world.") == 4
    assert model.count_tokens("") == 0


def test_training_is_deterministic(texts, model):
    again = chat.WordModel.train(chat.corpus())
    assert again.vocabulary_size == model.vocabulary_size
    assert _reply(again, "The default", seed=7) == _reply(model, "The default", seed=7)


def test_same_seed_gives_same_reply(model):
    first = _reply(model, "Return the", seed=42, max_tokens=40)
    assert first == _reply(model, "Return the", seed=42, max_tokens=40)
    assert first  # something was said
    others = {"".join(_reply(model, "Return the", seed=s, max_tokens=40)) for s in range(10)}
    assert len(others) > 1  # sampling does depend on the seed


def test_temperature_zero_is_greedy_and_ignores_the_seed(model):
    replies = {"".join(_reply(model, "Return the", temperature=0, seed=s)) for s in (None, 0, 1, 99)}
    assert len(replies) == 1


@pytest.mark.parametrize("temperature", [0.0, 0.3, 1.0, 2.0])
@pytest.mark.parametrize("max_tokens", [1, 3, 20, 200])
def test_max_tokens_bounds_the_pieces(model, max_tokens, temperature):
    for seed in range(5):
        pieces = _reply(model, "The file", max_tokens=max_tokens, temperature=temperature, seed=seed)
        assert 1 <= len(pieces) <= max_tokens
        assert all(pieces)


def test_reply_is_readable_text(model):
    for seed in range(30):
        text = "".join(_reply(model, "What does the function return?", seed=seed, max_tokens=120))
        assert text == text.strip()
        assert "  " not in text
        assert not re.search(r"\s[.,;:!?]", text), text
        assert text[0] not in ".,;:!?"


def test_stop_string_cuts_the_reply(model):
    for seed in range(20):
        full = "".join(_reply(model, "The", seed=seed, max_tokens=60))
        # A stop string known to occur: the reply's second word with its space.
        words = full.split(" ")
        if len(words) < 3:
            continue
        stop = " " + words[2]
        cut = _reply(model, "The", seed=seed, max_tokens=60, stop=[stop])
        text = "".join(cut)
        assert stop not in text
        assert text == full[: full.index(stop)]


def test_stop_string_spanning_pieces_is_held_back(model):
    full = "".join(_reply(model, "The", seed=3, max_tokens=60, temperature=0))
    words = full.split(" ")
    stop = words[1][-2:] + " " + words[2][:2]  # starts in one token, ends in the next
    pieces = _reply(model, "The", seed=3, max_tokens=60, temperature=0, stop=[stop, "no such text"])
    assert "".join(pieces) == full[: full.index(stop)]


def test_the_prompt_steers_the_reply(model, followers):
    for prompt, word in [
        ("Tell me about the iterator", "iterator"),
        ("Please explain the logging", "logging"),
        ("What is an iterator?", "iterator"),  # a trailing question mark is not continued
    ]:
        assert word in followers
        for seed in range(10):
            first = chat.tokenize(_reply(model, prompt, seed=seed)[0])[0]
            assert first in followers[word], (prompt, seed, first)


def test_unknown_prompt_starts_a_sentence(model):
    text = "".join(_reply(model, "zzqx qqzv", seed=1, temperature=0))
    assert text[0].isupper() or text[0].isdigit()


def test_a_single_stop_string_is_not_split_into_characters(model):
    full = "".join(_reply(model, "The", seed=5, max_tokens=60, temperature=0))
    stop = full.split(" ")[2]
    assert (
        "".join(_reply(model, "The", seed=5, max_tokens=60, temperature=0, stop=stop))
        == full[: full.index(stop)]
    )


def test_bad_arguments_are_refused_before_the_first_piece(model):
    # generate() itself raises, so a server can answer 400 rather than break off a stream.
    with pytest.raises(ValueError, match="max_tokens"):
        model.generate("hi", max_tokens=0)
    with pytest.raises(ValueError, match="temperature"):
        model.generate("hi", temperature=-0.1)
    with pytest.raises(ValueError, match="temperature"):
        model.generate("hi", temperature=float("nan"))
    with pytest.raises(ValueError, match="order"):
        chat.WordModel.train(["some text"], order=0)


def test_an_empty_model_says_nothing():
    empty = chat.WordModel.train([])
    assert empty.vocabulary_size == 0
    assert _reply(empty, "hello") == []
