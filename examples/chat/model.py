"""A tiny word-level text generator for the chat example, trained at startup.

The chat example needs something that streams text token by token the way a
large language model does, so that streaming responses, token usage and
cancellation can be shown end to end. Real models need a download measured in
gigabytes; this one needs none: ``corpus()`` collects the docstrings of a fixed
list of standard-library modules (and the Zen of Python), and
``WordModel.train`` counts which token follows each run of ``order`` tokens in
them. Training takes well under two seconds, so the service can train it in
``setup``.

Generation is an order-N Markov chain (trigram by default) that backs off to
shorter contexts, and to the plain token frequencies, when a context was never
seen. It starts from the last words of the prompt that it knows, so the answer
at least continues the user's words. It is not clever; it is cheap, offline and
deterministic for a given seed.
"""

from __future__ import annotations

import bisect
import codecs
import contextlib
import importlib
import inspect
import io
import random
import re
import sys
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import accumulate
from types import ModuleType

# Sorted so that the corpus, and so the trained model, is the same on every start.
# Each of these imports in milliseconds; heavy packages (asyncio, email, http)
# would make startup slower for little extra text.
MODULES: tuple[str, ...] = (
    "abc",
    "argparse",
    "ast",
    "base64",
    "bisect",
    "calendar",
    "cmath",
    "codecs",
    "collections",
    "contextlib",
    "copy",
    "csv",
    "dataclasses",
    "datetime",
    "decimal",
    "difflib",
    "dis",
    "enum",
    "fnmatch",
    "fractions",
    "functools",
    "glob",
    "gzip",
    "hashlib",
    "heapq",
    "hmac",
    "html",
    "inspect",
    "io",
    "itertools",
    "json",
    "keyword",
    "locale",
    "logging",
    "math",
    "operator",
    "os",
    "os.path",
    "pathlib",
    "pickle",
    "pprint",
    "queue",
    "random",
    "re",
    "secrets",
    "shelve",
    "shlex",
    "shutil",
    "statistics",
    "string",
    "struct",
    "tarfile",
    "tempfile",
    "textwrap",
    "threading",
    "tokenize",
    "types",
    "typing",
    "unittest",
    "urllib.parse",
    "uuid",
    "weakref",
    "zipfile",
)

# Dotted names ("os.path", "3.14") and contractions stay one token, so the
# generator does not invent sentence ends in the middle of them.
# Parentheses are left out: a chain of a few tokens cannot balance them, and
# the text reads better without than with a stray "(" or ")".
_TOKEN = re.compile(r"[A-Za-z0-9_]+(?:[.'][A-Za-z0-9_]+)*|[.,;:!?]")
_NO_SPACE_BEFORE = frozenset(".,;:!?")
_SENTENCE_END = frozenset(".!?")
# A reply shorter than this reads like a fragment, so sentence ends before it
# do not end the reply.
_MIN_REPLY_TOKENS = 8
# Chance that a reply ends at a sentence end (once long enough) when sampling:
# replies of one to a few sentences, like a chat answer.
_END_PROBABILITY = 0.5

Row = tuple[list[str], list[int]]


def _import_quietly(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ImportError:  # stripped-down Python builds leave out some modules (gzip without zlib)
        return None


def _prose(doc: str) -> str:
    # Code is not prose: as text it would teach the model fragments of Python.
    # Doctest examples run to the next blank line; indented lines are code
    # blocks and tables far more often than sentences.
    kept: list[str] = []
    in_example = False
    for line in doc.splitlines():
        stripped = line.strip()
        if stripped.startswith(">>>"):
            in_example = True
        elif not stripped:
            in_example = False
        if not in_example and not line.startswith(" "):
            kept.append(line)
    return "\n".join(kept).strip()


def _own_doc(obj: object) -> str | None:
    # inspect.getdoc on a class falls back to a base class's docstring, which
    # would repeat object's and Exception's text dozens of times.
    doc = getattr(obj, "__doc__", None)
    return inspect.cleandoc(doc) if isinstance(doc, str) else None


def _zen() -> str:
    # Importing "this" prints the Zen; only its text is wanted.
    with contextlib.redirect_stdout(io.StringIO()):
        this = _import_quietly("this")
    text = getattr(this, "s", None)
    return codecs.decode(text, "rot13") if isinstance(text, str) else ""


def _module_docs(module: ModuleType) -> Iterator[str | None]:
    yield inspect.getdoc(module)
    # C accelerators define members as "_heapq.heappush" and the like.
    homes = {module.__name__, "_" + module.__name__}
    for attr in sorted(vars(module)):
        member = getattr(module, attr)
        if attr.startswith("_") or not (inspect.isclass(member) or inspect.isroutine(member)):
            continue
        # Re-exported members are documented in their own module, if listed.
        if getattr(member, "__module__", None) not in homes:
            continue
        yield _own_doc(member)
        if inspect.isclass(member):
            for method_name, method in sorted(vars(member).items()):
                if not method_name.startswith("_") and inspect.isroutine(method):
                    yield _own_doc(method)


def corpus() -> list[str]:
    """The training texts: docstrings of ``MODULES``, their public functions, classes and methods, and the Zen of Python.

    The order is fixed (modules as listed, members sorted by name) and repeated
    texts are kept once, so the same Python gives the same corpus every time.
    """
    docs: list[str | None] = []
    with warnings.catch_warnings():
        # Merely looking at deprecated aliases (typing.io, typing.re) warns.
        warnings.simplefilter("ignore", DeprecationWarning)
        for name in MODULES:
            module = _import_quietly(name)
            if module is not None:
                docs.extend(_module_docs(module))
    docs.append(_zen())
    texts: list[str] = []
    seen: set[str] = set()
    for doc in docs:
        text = _prose(doc) if doc else ""
        if text and text not in seen:
            seen.add(text)
            texts.append(text)
    return texts


def tokenize(text: str) -> list[str]:
    """Words (with dotted names and contractions kept whole) and punctuation, case kept."""
    return _TOKEN.findall(text)


def _piece(token: str, previous: str | None) -> str:
    if previous is None or token in _NO_SPACE_BEFORE:
        return token
    return " " + token


class WordModel:
    """An order-N Markov chain over tokens; build one with ``WordModel.train``.

    Treat an instance as read-only: ``generate`` may be called from several
    threads at once because it only reads the tables.
    """

    __slots__ = ("_order", "_rows", "_vocabulary")

    def __init__(self, rows: Mapping[tuple[str, ...], Row], order: int) -> None:
        # rows maps a context of 1..order tokens, or () for plain token
        # frequencies, to its next tokens (most frequent first) and their
        # cumulative counts, so sampling is one bisect.
        self._rows = dict(rows)
        self._order = order
        self._vocabulary = len(self._rows.get((), ([], []))[0])

    @classmethod
    def train(cls, texts: Iterable[str], order: int = 2) -> WordModel:
        """Count, for every run of 1..``order`` tokens in ``texts``, which tokens follow it."""
        if order < 1:
            raise ValueError(f"order must be at least 1, got {order}")
        counts: defaultdict[tuple[str, ...], Counter[str]] = defaultdict(Counter)
        for text in texts:
            # Interned: the same few thousand words recur in tens of thousands of context keys.
            tokens = [sys.intern(token) for token in tokenize(text)]
            if not tokens:
                continue
            # Texts are trained one by one, so a text's last token would have
            # no continuation; ending it as a sentence gives it one, and
            # teaches the model that docstrings end there.
            if tokens[-1] not in _SENTENCE_END:
                tokens.append(".")
            unigrams = counts[()]
            for i, token in enumerate(tokens):
                unigrams[token] += 1
                for k in range(1, min(order, i) + 1):
                    counts[tuple(tokens[i - k : i])][token] += 1
        rows: dict[tuple[str, ...], Row] = {}
        for context, followers in counts.items():
            # Most frequent first (ties by token) makes greedy decoding tokens[0]
            # and the order independent of the texts' order.
            ranked = sorted(followers.items(), key=lambda item: (-item[1], item[0]))
            rows[context] = ([token for token, _ in ranked], list(accumulate(n for _, n in ranked)))
        return cls(rows, order)

    @property
    def name(self) -> str:
        return f"steady-markov-{self._order + 1}gram"

    @property
    def order(self) -> int:
        """How many previous tokens the longest context holds."""
        return self._order

    @property
    def vocabulary_size(self) -> int:
        return self._vocabulary

    def count_tokens(self, text: str) -> int:
        """How many tokens ``text`` holds, as the model counts them (for usage numbers)."""
        return len(tokenize(text))

    def _known(self, token: str) -> str | None:
        # Users capitalize differently from docstrings; "Iterator" should find "iterator".
        for form in (token, token.lower(), token.capitalize()):
            if (form,) in self._rows:
                return form
        return None

    def _start(self, prompt: str) -> list[str]:
        tokens = tokenize(prompt)
        # A question mark ends the user's turn; continuing from it would start
        # an unrelated sentence, while continuing the last word stays on topic.
        while tokens and tokens[-1] in _SENTENCE_END:
            tokens.pop()
        known = [self._known(token) for token in tokens]
        for end in range(len(known) - 1, -1, -1):
            if known[end] is not None:
                context: list[str] = []
                for form in reversed(known[max(0, end - self._order + 1) : end + 1]):
                    if form is None:
                        break
                    context.insert(0, form)
                return context
        return ["."]

    def _row(self, context: Sequence[str]) -> Row | None:
        for k in range(min(self._order, len(context)), 0, -1):
            row = self._rows.get(tuple(context[-k:]))
            if row is not None:
                return row
        return self._rows.get(())

    @staticmethod
    def _words_only(row: Row) -> Row:
        # A reply that opens with "." or "," looks broken, so the first token is a word when one can follow.
        tokens, cumulative = row
        kept = [
            (token, high - low)
            for token, low, high in zip(tokens, [0, *cumulative], cumulative, strict=False)
            if token not in _NO_SPACE_BEFORE
        ]
        if not kept or len(kept) == len(tokens):
            return row
        return [token for token, _ in kept], list(accumulate(n for _, n in kept))

    @staticmethod
    def _sample(row: Row, temperature: float, rng: random.Random) -> str:
        tokens, cumulative = row
        if temperature == 0:
            return tokens[0]
        if temperature != 1:
            counts = [b - a for a, b in zip([0, *cumulative], cumulative, strict=False)]
            # Relative to the largest count, so count ** (1 / t) cannot overflow for small t.
            top = counts[0]
            weights = list(accumulate((n / top) ** (1 / temperature) for n in counts))
            return tokens[bisect.bisect_right(weights, rng.random() * weights[-1])]
        return tokens[bisect.bisect_right(cumulative, rng.randrange(cumulative[-1]))]

    def generate(
        self,
        prompt: str,
        *,
        max_tokens: int = 64,
        temperature: float = 1.0,
        seed: int | None = None,
        stop: Sequence[str] = (),
    ) -> Iterator[str]:
        """Yield the reply to ``prompt`` one piece (about one token) at a time.

        Pieces carry their own spacing, so ``"".join(pieces)`` is the reply's
        text; the first piece has no leading space. At most ``max_tokens``
        pieces come. ``temperature`` 0 always takes the most likely token (the
        same reply whatever the seed); higher values flatten the choice. The
        same seed and arguments give the same reply. The reply ends right
        before the first of the ``stop`` strings it would contain; text that
        could be the start of a stop string is held back until it is known not
        to be one. A single string is one stop string, as in OpenAI's API.

        Bad arguments raise ``ValueError`` here, before the first piece, so a
        server can refuse the request instead of breaking off a started stream.
        """
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
        if not temperature >= 0:  # also refuses NaN
            raise ValueError(f"temperature must be 0 or more, got {temperature}")
        stops = [stop] if isinstance(stop, str) else list(stop)
        return self._pieces(prompt, max_tokens, temperature, random.Random(seed), [s for s in stops if s])

    def _pieces(
        self, prompt: str, max_tokens: int, temperature: float, rng: random.Random, stops: list[str]
    ) -> Iterator[str]:
        longest_stop = max((len(s) for s in stops), default=0)
        context = self._start(prompt)
        text = ""  # all generated so far
        sent = 0  # how much of text was yielded
        previous: str | None = None
        for step in range(1, max_tokens + 1):
            row = self._row(context)
            if row is None:  # an empty model knows nothing to say
                break
            if previous is None:
                row = self._words_only(row)
            token = self._sample(row, temperature, rng)
            before = len(text)
            text += _piece(token, previous)
            previous = token
            context = [*context[1 - self._order :], token] if self._order > 1 else [token]
            if stops:
                search_from = max(0, before - longest_stop + 1)
                found = [i for s in stops if (i := text.find(s, search_from)) >= 0]
                if found:
                    cut = min(found)
                    if cut > sent:
                        yield text[sent:cut]
                    return
            last = step == max_tokens or (
                token in _SENTENCE_END
                and step >= _MIN_REPLY_TOKENS
                and (temperature == 0 or rng.random() < _END_PROBABILITY)
            )
            if last:
                break
            hold = len(text)
            for start in range(max(sent, len(text) - longest_stop + 1), len(text)):
                if any(s.startswith(text[start:]) for s in stops):
                    hold = start
                    break
            if hold > sent:
                yield text[sent:hold]
                sent = hold
        if len(text) > sent:
            yield text[sent:]
