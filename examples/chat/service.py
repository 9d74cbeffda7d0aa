"""A chat model served in OpenAI's format, streaming token by token (no download needed).

The model is a small word-level Markov chain trained in ``setup`` on the
standard library's docstrings (``model.py``): it is not clever, but it streams
text the way a language model does. ``generate`` is a generator handler: called
directly it streams Server-Sent Events, one text piece each; marked
``openai="chat"`` it is also served at the gateway's ``/v1/chat/completions``
under the model name ``chat`` (the deployment's name), for any OpenAI client:

    from openai import OpenAI
    client = OpenAI(base_url="http://127.0.0.1:8080/v1", api_key="unused-without-auth")
    for chunk in client.chat.completions.create(model="chat", stream=True,
                                                messages=[{"role": "user", "content": "Explain lists"}]):
        print(chunk.choices[0].delta.content or "", end="", flush=True) if chunk.choices else None
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from model import WordModel, corpus
from pydantic import BaseModel, Field

from steadyserve import ChatMessage, Service, handler

log = logging.getLogger("chat")


class ModelInfo(BaseModel):
    model: str
    vocabulary_size: int
    training_s: float


class Chat(Service):
    def setup(self) -> None:
        started = time.perf_counter()
        self.model = WordModel.train(corpus())
        self.training_s = time.perf_counter() - started
        log.info("%s trained in %.2fs: %d words", self.model.name, self.training_s, self.model.vocabulary_size)

    @handler(openai="chat", example={"messages": [{"role": "user", "content": "How do I sort a list?"}],
                                     "max_tokens": 24, "seed": 1})
    def generate(
        self,
        messages: list[ChatMessage],
        max_tokens: int = Field(default=64, ge=1, le=1024),
        temperature: float = Field(default=0.8, ge=0, le=2),
        seed: int | None = None,
        stop: list[str] | None = None,
    ) -> Iterator[str]:
        """The reply to the conversation's last user message, one text piece at a time."""
        prompt = next((m.text for m in reversed(messages) if m.role == "user"), messages[-1].text)
        yield from self.model.generate(prompt, max_tokens=max_tokens, temperature=temperature, seed=seed,
                                       stop=stop or ())

    @handler
    def info(self) -> ModelInfo:
        return ModelInfo(model=self.model.name, vocabulary_size=self.model.vocabulary_size,
                         training_s=round(self.training_s, 3))
