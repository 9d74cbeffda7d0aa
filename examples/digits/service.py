"""Handwritten-digit classifier on scikit-learn's bundled digits data (no downloads).

``predict`` is batched: concurrent calls are grouped into one ``predict_proba``
call, which costs about the same for 1 image as for 32 with a tree ensemble.
One call is one image, ``{"pixels": [64 grey levels]}``, answered with one
``Prediction``; the handler receives the images of up to 32 calls as a list. A JSON
array of up to 32 such objects is that many calls in one request.
"""

from __future__ import annotations

import logging
from typing import Annotated

import numpy as np
from pydantic import BaseModel, Field
from sklearn.datasets import load_digits
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import train_test_split

from steadyserve import Batch, Service, handler

log = logging.getLogger("digits")

# 8x8 grey levels 0..16, row by row.
Pixels = Annotated[list[Annotated[float, Field(ge=0, le=16)]], Field(min_length=64, max_length=64)]
EXAMPLE_PIXELS = [int(v) for v in load_digits().data[0]]  # an image of a 0


class Prediction(BaseModel):
    digit: int
    probability: float


class ModelInfo(BaseModel):
    model: str
    train_size: int
    test_accuracy: float


class Digits(Service):
    def setup(self) -> None:
        features, labels = load_digits(return_X_y=True)
        x_train, x_test, y_train, y_test = train_test_split(
            features, labels, test_size=0.25, random_state=0, stratify=labels
        )
        self.model = RandomForestClassifier(n_estimators=100, random_state=0, n_jobs=1)
        self.model.fit(x_train, y_train)
        self.train_size = len(x_train)
        self.accuracy = float(self.model.score(x_test, y_test))
        log.info("digits model trained on %d images; test accuracy %.3f", self.train_size, self.accuracy)

    @handler(batch=Batch(max_size=32, max_wait_ms=5), example={"pixels": EXAMPLE_PIXELS}, v2=True)
    def predict(self, pixels: list[Pixels]) -> list[Prediction]:
        probabilities = self.model.predict_proba(np.asarray(pixels, dtype=np.float64))
        best = probabilities.argmax(axis=1)
        return [
            Prediction(digit=int(self.model.classes_[i]), probability=float(row[i]))
            for i, row in zip(best, probabilities, strict=False)
        ]

    @handler
    def info(self) -> ModelInfo:
        return ModelInfo(model="RandomForestClassifier(100 trees)", train_size=self.train_size,
                         test_accuracy=round(self.accuracy, 4))
