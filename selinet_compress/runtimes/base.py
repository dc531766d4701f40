"""The runner interface every target implements, and the registry that finds one for a file.

A runner takes the *same* inputs on every target: a dict of normalised NCHW float32 arrays named
``body`` (N x 3 x 128 x 128) and ``context`` (N x 3 x 224 x 224), and returns a dict with
``emotions`` (N x 26 raw scores) and, when the model has a sentiment head, ``sentiments``
(N x 3). Layout changes (NHWC for TFLite), input-name mapping and int8 I/O are the runner's job.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from selinet_compress.errors import UserError
from selinet_compress.model.selinet import SeLiNetConfig
from selinet_compress.registry import Registry


class Runner(ABC):
    """A loaded model on one runtime."""

    target: str = ""

    def __init__(self, path: Path, config: SeLiNetConfig, threads: int | None) -> None:
        self.path = Path(path)
        self.config = config
        self.threads = threads

    @property
    def input_names(self) -> list[str]:
        return ["body", "context"] if self.config.use_aesthetics else ["body"]

    @property
    def has_sentiment(self) -> bool:
        return self.config.use_sentiment

    @abstractmethod
    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Forward one batch: NCHW float32 arrays in, float32 score arrays out."""

    def describe(self) -> dict:
        """Runtime name, version and settings, for result records."""
        return {"target": self.target, "path": str(self.path), "threads": self.threads}


RUNTIMES: Registry[type[Runner]] = Registry("target")


def target_for_path(path: str | os.PathLike) -> str:
    """The target whose runner opens this file, by suffix."""
    suffix = Path(path).suffix.lower()
    for name in RUNTIMES:
        if suffix in RUNTIMES.meta(name).get("suffixes", ()):
            return name
    known = sorted(s for n in RUNTIMES for s in RUNTIMES.meta(n).get("suffixes", ()))
    raise UserError(f"{path}: unknown model file type '{suffix}'; known: {', '.join(known)}")


def open_runner(
    path: str | os.PathLike,
    target: str | None = None,
    threads: int | None = None,
    **options: object,
) -> Runner:
    """Open ``path`` on its runtime (chosen by suffix unless ``target`` is given)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"no such file: {path}")
    target = target or target_for_path(path)
    runner_cls = RUNTIMES.get(target)
    try:
        return runner_cls.open(path, threads=threads, **options)  # type: ignore[attr-defined]
    except ModuleNotFoundError as exc:
        raise UserError(f"the {target} runtime is not installed: {exc}") from None
