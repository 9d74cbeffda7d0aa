"""Matrix-factorisation recommender (embedding dim 50) on synthetic ratings.

Ratings come from hidden user/item factors plus noise; the model is fitted by
alternating least squares at setup and its MAE on a held-out split is logged
and served by ``info``.
"""

from __future__ import annotations

import logging
from typing import Annotated

import numpy as np
from pydantic import BaseModel, Field

from steadyserve import Service, handler

log = logging.getLogger("recommender")

NUM_USERS = 600
NUM_ITEMS = 400
EMBEDDING_DIM = 50
RATINGS_PER_USER = 60
UserId = Annotated[int, Field(ge=0, lt=NUM_USERS)]
ItemId = Annotated[int, Field(ge=0, lt=NUM_ITEMS)]


class Recommendation(BaseModel):
    item_id: int
    score: float


class Score(BaseModel):
    user_id: int
    item_id: int
    score: float


class ModelInfo(BaseModel):
    embedding_dim: int
    train_ratings: int
    test_ratings: int
    test_mae: float


def synthetic_ratings(rng: np.random.Generator) -> np.ndarray:
    """(user, item, rating) rows; ratings 1..5 from 6 hidden taste factors."""
    users = rng.normal(size=(NUM_USERS, 6))
    items = rng.normal(size=(NUM_ITEMS, 6))
    rows = []
    for u in range(NUM_USERS):
        for i in rng.choice(NUM_ITEMS, RATINGS_PER_USER, replace=False):
            raw = 3.0 + 0.6 * users[u] @ items[i] + rng.normal(scale=0.3)
            rows.append((u, i, float(np.clip(np.round(raw), 1, 5))))
    return np.array(rows)


def fit_als(train: np.ndarray, dim: int, reg: float, iterations: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float]:
    mean = float(train[:, 2].mean())
    user_f = rng.normal(scale=0.1, size=(NUM_USERS, dim))
    item_f = rng.normal(scale=0.1, size=(NUM_ITEMS, dim))
    users, items, values = train[:, 0].astype(int), train[:, 1].astype(int), train[:, 2] - mean
    by_user = [np.flatnonzero(users == u) for u in range(NUM_USERS)]
    by_item = [np.flatnonzero(items == i) for i in range(NUM_ITEMS)]
    eye = reg * np.eye(dim)
    for _ in range(iterations):
        for u, idx in enumerate(by_user):
            v = item_f[items[idx]]
            user_f[u] = np.linalg.solve(v.T @ v + eye, v.T @ values[idx])
        for i, idx in enumerate(by_item):
            w = user_f[users[idx]]
            item_f[i] = np.linalg.solve(w.T @ w + eye, w.T @ values[idx])
    return user_f, item_f, mean


class Recommender(Service):
    def setup(self) -> None:
        rng = np.random.default_rng(7)
        ratings = synthetic_ratings(rng)
        rng.shuffle(ratings)
        split = int(len(ratings) * 0.9)
        train, test = ratings[:split], ratings[split:]
        self.user_f, self.item_f, self.mean = fit_als(train, EMBEDDING_DIM, reg=8.0, iterations=8, rng=rng)
        predicted = np.clip(self._predict(test[:, 0].astype(int), test[:, 1].astype(int)), 1, 5)
        self.mae = float(np.abs(predicted - test[:, 2]).mean())
        self.sizes = (len(train), len(test))
        self.seen = [set() for _ in range(NUM_USERS)]
        for u, i, _ in train:
            self.seen[int(u)].add(int(i))
        log.info("recommender trained on %d ratings; held-out MAE %.3f", len(train), self.mae)

    def _predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return self.mean + np.einsum("ij,ij->i", self.user_f[users], self.item_f[items])

    @handler(example={"user_id": 3, "k": 5})
    def recommend(self, user_id: UserId, k: Annotated[int, Field(ge=1, le=100)] = 10) -> list[Recommendation]:
        scores = self.mean + self.item_f @ self.user_f[user_id]
        scores[list(self.seen[user_id])] = -np.inf  # do not recommend what they rated
        top = np.argpartition(-scores, k)[:k]
        top = top[np.argsort(-scores[top])]
        return [Recommendation(item_id=int(i), score=round(float(scores[i]), 4)) for i in top]

    @handler(v2=True)
    def score(self, user_id: UserId, item_id: ItemId) -> Score:
        value = float(self._predict(np.array([user_id]), np.array([item_id]))[0])
        return Score(user_id=user_id, item_id=item_id, score=round(value, 4))

    @handler
    def info(self) -> ModelInfo:
        return ModelInfo(embedding_dim=EMBEDDING_DIM, train_ratings=self.sizes[0],
                         test_ratings=self.sizes[1], test_mae=round(self.mae, 4))
