"""Persons annotated on image files: the common part of the CSV and the ``Annotations.mat`` layouts.

Both list, per person, an image (``<image root>/<folder>/<filename>``), a body box and labels; the
pixels are made on demand by decoding the image, clamping and cropping the box and resizing,
exactly like the reference preprocessing (see :mod:`selinet_compress.emotic.images`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from selinet_compress.emotic.dataset import EmoticSplit, labels_from_names, warn_data
from selinet_compress.emotic.images import body_and_context, clamp_bbox, read_image
from selinet_compress.errors import UserError


@dataclass(frozen=True)
class Person:
    """One annotated person. ``image_size`` is (width, height) as declared by the annotations.

    ``annotators`` / ``annotator_vad`` hold the individual annotations of val/test persons (the
    combined ``categories`` are their union); they are only written, never needed for reading.
    """

    folder: str
    filename: str
    bbox: tuple[float, float, float, float]
    categories: tuple[str, ...]
    vad: tuple[float, float, float] = (math.nan, math.nan, math.nan)
    image_size: tuple[int, int] | None = None
    gender: str = ""
    age: str = ""
    person: int = 0
    annotators: tuple[tuple[str, ...], ...] = field(default=(), compare=False)
    annotator_vad: tuple[tuple[float, float, float], ...] = field(default=(), compare=False)


def image_root(data_dir: Path) -> Path:
    """Where ``<folder>/<filename>`` paths start: ``<data_dir>/emotic`` (the EMOTIC release and
    mat2py's convention) when it exists, else ``data_dir`` itself."""
    nested = data_dir / "emotic"
    return nested if nested.is_dir() else data_dir


class ImageSplit(EmoticSplit):
    """A split whose pixels come from image files, one person per row."""

    def __init__(self, root: Path, split: str, images: Path, persons: Sequence[Person], where: str) -> None:
        ids = [f"{split}/{p.folder}/{p.filename}#{p.person}" for p in persons]
        emotions = (
            np.stack([labels_from_names(p.categories, f"{where} ({i})") for i, p in enumerate(persons)])
            if persons
            else np.zeros((0, 26), dtype=np.float32)
        )
        vad = np.asarray([p.vad for p in persons], dtype=np.float32).reshape(-1, 3)
        super().__init__(root, split, ids, emotions, vad)
        self.images = images
        self.persons = list(persons)
        self._check_images()
        self._warned: set[int] = set()
        self._check_boxes()

    def image_path(self, person: Person) -> Path:
        return self.images / person.folder / person.filename

    def _check_images(self) -> None:
        paths = sorted({self.image_path(p) for p in self.persons})
        missing = [p for p in paths if not p.is_file()]
        if missing:
            more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
            raise UserError(f"image not found: {missing[0]}{more} ({self.layout} split '{self.split}')")

    def _check_boxes(self) -> None:
        """Warn once, at open time, about boxes reaching outside their declared image size."""
        clamped = []
        for i, person in enumerate(self.persons):
            if person.image_size is None:
                continue
            try:
                _, changed = clamp_bbox(person.bbox, *person.image_size)
            except UserError as exc:
                raise UserError(f"{self.ids[i]}: {exc}") from None
            if changed:
                clamped.append(i)
        if clamped:
            self._warned.update(clamped)
            first = self.persons[clamped[0]]
            warn_data(
                f"{len(clamped)} body box(es) of split '{self.split}' reach outside their image and "
                f"are clamped to it (first: {self.ids[clamped[0]]}, box {list(first.bbox)} in a "
                f"{first.image_size[0]}x{first.image_size[1]} image)"
            )

    def _load_pixels(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        bodies, contexts = [], []
        decoded: dict[Path, np.ndarray] = {}  # persons of one image share one decode
        for i in indices.tolist():
            person = self.persons[i]
            path = self.image_path(person)
            if path not in decoded:
                decoded = {path: read_image(path)}
            image = decoded[path]
            try:
                box, changed = clamp_bbox(person.bbox, image.shape[1], image.shape[0])
            except UserError as exc:
                raise UserError(f"{self.ids[i]} ({path}): {exc}") from None
            if changed and i not in self._warned:
                self._warned.add(i)
                warn_data(
                    f"{self.ids[i]}: body box {list(person.bbox)} reaches outside the "
                    f"{image.shape[1]}x{image.shape[0]} image; clamped to {list(box)}"
                )
            body, context = body_and_context(image, box)
            bodies.append(body)
            contexts.append(context)
        return np.stack(bodies), np.stack(contexts)
