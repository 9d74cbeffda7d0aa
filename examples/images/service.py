"""Handwritten digits as images: upload a PNG, get the digit; ask for a digit, get a PNG.

``classify`` takes an image file (``curl -F image=@seven.png``, or the raw bytes
with their content type) and answers JSON; ``render`` answers with a PNG of one
of scikit-learn's bundled digit images (no download). The model is trained in
``setup`` on the same bundled data; ``imaging.py`` turns any picture of a digit
(dark ink on light paper, or the reverse) into the model's 8x8 features.

    curl -s http://127.0.0.1:8080/render -d '{"digit": 7}' -o seven.png
    curl -s http://127.0.0.1:8080/classify -F image=@seven.png
"""

from __future__ import annotations

import logging

from imaging import PNG_MEDIA_TYPE, ImageError, digit_png, png_to_pixels
from pydantic import BaseModel, Field
from sklearn.datasets import load_digits
from sklearn.ensemble import RandomForestClassifier

from steadyserve import File, InvalidInput, Service, handler

log = logging.getLogger("images")


class Classified(BaseModel):
    digit: int
    probability: float
    file: str
    size_bytes: int


class Images(Service):
    def setup(self) -> None:
        features, labels = load_digits(return_X_y=True)
        self.model = RandomForestClassifier(n_estimators=100, random_state=0, n_jobs=1).fit(features, labels)
        log.info("digits model trained on %d images", len(labels))

    @handler
    def classify(self, image: File) -> Classified:
        """The digit in an uploaded image (PNG, JPEG, GIF ...)."""
        try:
            pixels = png_to_pixels(image.data)
        except ImageError as exc:
            raise InvalidInput(f"image {image.name or '(unnamed)'!r}: {exc}") from exc
        probabilities = self.model.predict_proba([pixels])[0]
        best = int(probabilities.argmax())
        return Classified(digit=int(self.model.classes_[best]), probability=round(float(probabilities[best]), 4),
                          file=image.name, size_bytes=image.size_bytes)

    @handler(media_type=PNG_MEDIA_TYPE)
    def render(self, digit: int = Field(ge=0, le=9), index: int = Field(default=0, ge=0),
               scale: int = Field(default=16, ge=1, le=64)) -> bytes:
        """A PNG of the ``index``-th bundled example of ``digit``, ``scale`` times its 8x8 size."""
        try:
            return digit_png(digit, index=index, scale=scale)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from exc
