"""An MLP-like batched handler for bench/batching.py: 256 -> 512 (ReLU) -> 10, numpy float32.

One call is one feature vector; a batch of n calls is one pair of (n x 256) @ (256 x 512)
and (n x 512) @ (512 x 10) matmuls, so the per-call overhead of numpy and of the thread
hand-off is paid once per batch.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
from pydantic import Field

from steadyserve import Batch, Service, handler

IN_FEATURES, HIDDEN, CLASSES = 256, 512, 10
Features = Annotated[list[float], Field(min_length=IN_FEATURES, max_length=IN_FEATURES)]


class Mlp(Service):
    def setup(self) -> None:
        rng = np.random.default_rng(0)
        self.w1 = (rng.standard_normal((IN_FEATURES, HIDDEN)) / IN_FEATURES**0.5).astype(np.float32)
        self.b1 = np.zeros(HIDDEN, dtype=np.float32)
        self.w2 = (rng.standard_normal((HIDDEN, CLASSES)) / HIDDEN**0.5).astype(np.float32)
        self.b2 = np.zeros(CLASSES, dtype=np.float32)

    @handler(batch=Batch(max_size=32, max_wait_ms=5))
    def predict(self, features: list[Features]) -> list[int]:
        x = np.asarray(features, dtype=np.float32)
        hidden = np.maximum(x @ self.w1 + self.b1, 0.0)
        logits = hidden @ self.w2 + self.b2
        return logits.argmax(axis=1).tolist()  # type: ignore[no-any-return]
