"""The calibration set: N samples drawn deterministically from the TRAIN split, never test.

Every target calibrates on exactly the same samples (ONNX feeds them as NCHW, TFLite as NHWC),
and their ids go into each artifact's sidecar and into the sweep's cache key, so a result can
always be traced to the samples that set its ranges. Selecting (:func:`select_calibration`:
reads only the split's ids) is separate from loading pixels (:func:`load_calibration`), so a
cache lookup costs no image decoding.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from selinet_compress.errors import UserError

if TYPE_CHECKING:
    import numpy as np

    from selinet_compress.model.selinet import SeLiNetConfig
    from selinet_compress.recipes import Calibration

CALIBRATION_SPLIT = "train"  # fixed: calibrating on test would leak it into the measured AP
LOAD_BATCH = 16


class CalibrationWarning(UserWarning):
    """The calibration set differs from what the recipe asked for (fewer samples available)."""


@dataclass(frozen=True)
class CalibrationSelection:
    """Which samples calibrate: their row indices and stable ids in the train split."""

    data_dir: str
    seed: int
    requested: int
    available: int
    indices: tuple[int, ...]
    ids: tuple[str, ...]
    split: str = CALIBRATION_SPLIT

    def record(self) -> dict[str, Any]:
        """The sidecar / cache-key form (ids included)."""
        return {
            "split": self.split,
            "data_dir": self.data_dir,
            "seed": self.seed,
            "requested": self.requested,
            "available": self.available,
            "used": len(self.ids),
            "ids": list(self.ids),
        }


def choose_indices(available: int, samples: int, seed: int) -> list[int]:
    """``min(samples, available)`` distinct row indices, sorted, the same for the same arguments."""
    import numpy as np

    count = min(samples, available)
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(available, size=count, replace=False))


def select_calibration(data_dir: str | os.PathLike, settings: Calibration) -> CalibrationSelection:
    """Draw the calibration rows of ``data_dir``'s train split (ids only; no pixels read).

    Fewer available samples than requested: all are used and a :class:`CalibrationWarning` says
    so (the sidecar records requested and used). An empty train split is a UserError.
    """
    from selinet_compress.emotic import open_split

    split = open_split(data_dir, CALIBRATION_SPLIT)
    available = len(split)
    if available == 0:
        raise UserError(f"calibration set is empty: the train split of {data_dir} has no samples")
    indices = choose_indices(available, settings.samples, settings.seed)
    if len(indices) < settings.samples:
        warnings.warn(
            f"calibration: the recipe asks for {settings.samples} samples but the train split of "
            f"{data_dir} has {available}; calibrating on all {available}",
            CalibrationWarning,
            stacklevel=2,
        )
    return CalibrationSelection(
        data_dir=str(data_dir),
        seed=settings.seed,
        requested=settings.samples,
        available=available,
        indices=tuple(indices),
        ids=tuple(str(split.ids[i]) for i in indices),
    )


@dataclass(frozen=True)
class CalibrationSet:
    """Preprocessed calibration inputs: normalised NCHW float32 arrays named like the model's
    inputs (``body``, ``context``), one row per id. Checked on construction: not empty, one row
    per id, finite (a NaN or inf would silently become a garbage range)."""

    ids: tuple[str, ...]
    inputs: dict[str, np.ndarray]
    selection: CalibrationSelection | None = None
    source: str = ""
    kind: str = "calibration"  # or "check": samples that compare an export with PyTorch

    def __post_init__(self) -> None:
        import numpy as np

        where = f"{self.kind} data ({self.source})" if self.source else f"{self.kind} data"
        if not self.ids or not self.inputs:
            raise UserError(f"{self.kind} set is empty ({self.source or 'no samples'})")
        for name, array in self.inputs.items():
            if array.shape[0] != len(self.ids):
                raise UserError(f"{where}: '{name}' has {array.shape[0]} rows for {len(self.ids)} sample ids")
            finite = np.isfinite(array.reshape(array.shape[0], -1)).all(axis=1)
            if not finite.all():
                bad = [self.ids[i] for i in np.flatnonzero(~finite)[:3]]
                raise UserError(
                    f"{where}: '{name}' holds NaN or inf in {int((~finite).sum())} sample(s), "
                    f"e.g. {', '.join(bad)}; fix or drop them before calibrating"
                )

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def from_arrays(
        cls, inputs: dict[str, np.ndarray], ids: Sequence[str] | None = None, source: str = "arrays"
    ) -> CalibrationSet:
        """A calibration set from arrays already preprocessed (tests, callers with their own data)."""
        import numpy as np

        inputs = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in inputs.items()}
        count = next(iter(inputs.values())).shape[0] if inputs else 0
        ids = tuple(ids) if ids is not None else tuple(f"{source}:{i}" for i in range(count))
        return cls(ids=ids, inputs=inputs, source=source)

    def batches(
        self, batch_size: int = 8, names: Sequence[str] | None = None
    ) -> Iterator[dict[str, np.ndarray]]:
        """NCHW batches (the ONNX layout) of the inputs in ``names`` (default: all)."""
        names = list(names) if names is not None else list(self.inputs)
        for start in range(0, len(self), batch_size):
            yield {n: self.inputs[n][start : start + batch_size] for n in names}

    def nhwc(self) -> dict[str, np.ndarray]:
        """The same samples as NHWC float32 arrays (TFLite converters calibrate on these)."""
        import numpy as np

        return {n: np.ascontiguousarray(a.transpose(0, 2, 3, 1)) for n, a in self.inputs.items()}

    def record(self) -> dict[str, Any]:
        """Sidecar form: the selection (split, seed, ids) or, for in-memory sets, the ids."""
        if self.selection is not None:
            return self.selection.record()
        return {"split": None, "source": self.source, "used": len(self.ids), "ids": list(self.ids)}


def _read_rows(
    data_dir: str | os.PathLike,
    split_name: str,
    indices: Sequence[int],
    config: SeLiNetConfig,
    progress: bool,
    desc: str,
) -> tuple[list[str], dict[str, np.ndarray]]:
    """Preprocessed NCHW inputs of these rows, through the same code path evaluation uses."""
    import numpy as np
    from tqdm import tqdm

    from selinet_compress.emotic import iterate_batches, open_split

    split = open_split(data_dir, split_name)
    names = ["body", "context"] if config.use_aesthetics else ["body"]
    parts: dict[str, list[np.ndarray]] = {n: [] for n in names}
    ids: list[str] = []
    with tqdm(total=len(indices), desc=desc, unit="sample", disable=not progress, leave=False) as bar:
        for batch in iterate_batches(split, LOAD_BATCH, config, indices=list(indices)):
            for n in names:
                parts[n].append(np.asarray(batch[n], dtype=np.float32))
            ids.extend(str(i) for i in batch["ids"])
            bar.update(len(batch["ids"]))
    return ids, {n: np.concatenate(parts[n]) for n in names if parts[n]}


def load_calibration(
    data_dir: str | os.PathLike,
    config: SeLiNetConfig,
    settings: Calibration,
    selection: CalibrationSelection | None = None,
    progress: bool = True,
) -> CalibrationSet:
    """Select (unless given) and preprocess the calibration samples exactly as evaluation does."""
    selection = selection or select_calibration(data_dir, settings)
    ids, inputs = _read_rows(
        data_dir, selection.split, selection.indices, config, progress, "calibration samples"
    )
    if ids != list(selection.ids):
        raise UserError(f"{data_dir}: the train split changed while reading calibration samples")
    return CalibrationSet(
        ids=tuple(ids), inputs=inputs, selection=selection, source=f"train split of {Path(data_dir)}"
    )


def load_check_samples(
    data_dir: str | os.PathLike, config: SeLiNetConfig, count: int = 8, progress: bool = False
) -> CalibrationSet:
    """The first ``count`` samples of the val split (train when there is no val split), for
    comparing an export with PyTorch on real inputs. Numerics only: no AP is measured on them."""
    from selinet_compress.emotic import open_split

    try:
        split_name, available = "val", len(open_split(data_dir, "val"))
    except UserError:
        split_name, available = CALIBRATION_SPLIT, len(open_split(data_dir, CALIBRATION_SPLIT))
    indices = list(range(min(count, available)))
    ids, inputs = _read_rows(data_dir, split_name, indices, config, progress, "check samples")
    return CalibrationSet(
        ids=tuple(ids), inputs=inputs, source=f"{split_name} split of {Path(data_dir)}", kind="check"
    )
