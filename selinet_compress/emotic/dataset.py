"""One EMOTIC split in any of the three layouts users hold, behind one small interface.

``open_split(data_dir, split)`` finds the layout (preprocessed arrays, mat2py CSV + images, or the
original ``Annotations.mat`` + images), checks the files and returns an :class:`EmoticSplit`. Every
layout yields the same raw sample: body 128 x 128 and context 224 x 224 uint8 RGB, 26 0/1 emotion
labels in :data:`~selinet_compress.emotic.categories.CATEGORIES` order and VAD (NaN when absent).
Layouts register themselves in :data:`LAYOUTS`; nothing outside a layout's module knows its files.
"""

from __future__ import annotations

import os
import warnings
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np

from selinet_compress.emotic.categories import CATEGORIES
from selinet_compress.errors import UserError, did_you_mean
from selinet_compress.registry import Registry

SPLITS: tuple[str, ...] = ("train", "val", "test")


class DataWarning(UserWarning):
    """Something in the data was repaired or skipped (a clamped box, persons without labels)."""


class EmoticSplit(ABC):
    """A split of EMOTIC persons. Cheap to open: pixels are read only by :meth:`load_raw`.

    Attributes: ``layout``, ``split``, ``root`` (the folder the files were found in), ``ids``
    (stable sample ids), ``emotions`` (N x 26 float32 0/1, all labels, small) and ``vad``
    (N x 3 float32, NaN when absent).
    """

    layout: ClassVar[str] = ""

    def __init__(self, root: Path, split: str, ids: list[str], emotions: np.ndarray, vad: np.ndarray) -> None:
        self.root = Path(root)
        self.split = split
        self.ids = ids
        self.emotions = emotions
        self.vad = vad

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.root)!r}, split={self.split!r}, n={len(self)})"

    @abstractmethod
    def _load_pixels(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(body B x 128 x 128 x 3, context B x 224 x 224 x 3) uint8 RGB for these rows."""

    def load_raw(self, indices: Sequence[int]) -> dict:
        """Raw samples: ``body``, ``context`` (uint8 NHWC RGB), ``emotions`` (B x 26 float32 0/1),
        ``vad`` (B x 3 float32, NaN when absent) and ``ids``."""
        index = np.asarray(indices, dtype=np.int64).reshape(-1)
        if index.size and (index.min() < 0 or index.max() >= len(self)):
            raise IndexError(f"sample index out of range 0..{len(self) - 1}")
        body, context = self._load_pixels(index)
        return {
            "body": body,
            "context": context,
            "emotions": self.emotions[index],
            "vad": self.vad[index],
            "ids": [self.ids[i] for i in index],
        }

    def describe(self) -> dict:
        """Where the samples came from, for result records."""
        return {"layout": self.layout, "split": self.split, "root": str(self.root), "n": len(self)}

    # A layout implements these two classmethods (and registers itself in LAYOUTS).
    @classmethod
    def markers(cls, data_dir: Path) -> list[Path]:  # pragma: no cover - abstract
        """Files under ``data_dir`` that show this layout is present (empty: not this layout)."""
        raise NotImplementedError

    @classmethod
    def open(cls, data_dir: Path, split: str) -> EmoticSplit:  # pragma: no cover - abstract
        raise NotImplementedError


LAYOUTS: Registry[type[EmoticSplit]] = Registry("layout")
# Writers of the same layouts, for the synthetic generator. Interface: ``Writer(out_dir)``, then per
# split ``begin(split, n_persons)``, ``add(folder, filename, jpeg, persons, bodies, contexts)`` per
# image, ``end()``; finally ``close()``.
WRITERS: Registry[type] = Registry("layout")


def _layout_patterns() -> str:
    return "; ".join(f"{name}: {LAYOUTS.meta(name)['looks_for']}" for name in LAYOUTS)


def register_layouts() -> None:
    """Import the layout modules, which register their readers and writers."""
    from selinet_compress.emotic import arrays, csv_layout, mat_layout  # noqa: F401  (they register)


def detect_layout(data_dir: str | os.PathLike) -> str:
    """The one layout present in ``data_dir``; a UserError when none or several are found."""
    register_layouts()
    data_dir = Path(data_dir)
    found = {name: LAYOUTS.get(name).markers(data_dir) for name in LAYOUTS}
    found = {name: paths for name, paths in found.items() if paths}
    if not found:
        raise UserError(f"{data_dir}: no EMOTIC data found; looked for {_layout_patterns()}")
    if len(found) > 1:
        what = ", ".join(f"{name} ({found[name][0].relative_to(data_dir)})" for name in found)
        raise UserError(
            f"{data_dir} holds more than one EMOTIC layout: {what}; pass --layout {'|'.join(found)}"
        )
    return next(iter(found))


def open_split(data_dir: str | os.PathLike, split: str = "test", layout: str | None = None) -> EmoticSplit:
    """Open one split (``train``, ``val``, ``test``) of the EMOTIC data in ``data_dir``.

    ``layout`` ("arrays", "csv", "mat") forces a layout; by default it is detected from the files.
    Bad data (missing split files, mismatched lengths, labels not 26 wide, NaN labels, an empty
    split, missing images) is a one-line UserError raised here, before any long work starts.
    """
    register_layouts()
    data_dir = Path(data_dir)
    if not data_dir.exists():
        raise UserError(f"no such folder: {data_dir}")
    if not data_dir.is_dir():
        raise UserError(f"{data_dir} is a file; pass the folder that holds the EMOTIC data")
    if split not in SPLITS:
        raise UserError(f"unknown split '{split}'{did_you_mean(split, SPLITS)}")
    layout = layout or detect_layout(data_dir)
    opened = LAYOUTS.get(layout).open(data_dir, split)
    if len(opened) == 0:
        raise UserError(f"{layout} split '{split}' in {data_dir} is empty (0 persons)")
    return opened


def labels_from_names(names: Sequence[str], where: str) -> np.ndarray:
    """26-dim 0/1 vector from category names (EMOTIC spellings); unknown names fail clearly."""
    vector = np.zeros(len(CATEGORIES), dtype=np.float32)
    for name in names:
        try:
            vector[CATEGORIES.index(name)] = 1.0
        except ValueError:
            raise UserError(
                f"{where}: unknown emotion category '{name}'{did_you_mean(name, CATEGORIES)}"
            ) from None
    return vector


def warn_data(message: str) -> None:
    """A data warning (shown by the CLI as one 'warning:' line)."""
    warnings.warn(message, DataWarning, stacklevel=3)
