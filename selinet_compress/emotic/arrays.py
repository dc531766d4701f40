"""The preprocessed-array layout (Tandon-A/emotic): ``{split}_{context,body,cat,cont}_arr.npy``.

context N x 224 x 224 x 3 uint8 RGB, body N x 128 x 128 x 3 uint8 RGB, cat N x 26 0/1, cont N x 3
VAD. The image arrays are large (the EMOTIC test split is ~1.4 GB), so they are memory-mapped and
read a batch at a time; after each read the batch's pages are handed back to the kernel
(``madvise(MADV_DONTNEED)``), because pages touched through a mapping count towards the process's
resident memory and would otherwise grow it to the size of the file.
"""

from __future__ import annotations

import mmap
from pathlib import Path

import numpy as np

from selinet_compress.emotic.categories import CATEGORIES
from selinet_compress.emotic.dataset import LAYOUTS, SPLITS, WRITERS, EmoticSplit, labels_from_names
from selinet_compress.errors import UserError

PARTS = ("context", "body", "cat", "cont")
REQUIRED = ("context", "body", "cat")  # cont (VAD) is optional: NaN when absent


def array_path(folder: Path, split: str, part: str) -> Path:
    return folder / f"{split}_{part}_arr.npy"


def _folders(data_dir: Path) -> list[Path]:
    # mat2py --generate_npy writes the arrays into emotic_pre/ beside its CSVs.
    return [data_dir, data_dir / "emotic_pre"]


def _load(path: Path, mmap_mode: str | None = "r") -> np.ndarray:
    try:
        return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"cannot read {path} as a numpy array file: {first}") from None


@LAYOUTS.register("arrays", looks_for="{train,val,test}_{context,body,cat,cont}_arr.npy (or in emotic_pre/)")
class ArraysSplit(EmoticSplit):
    layout = "arrays"

    def __init__(
        self,
        root: Path,
        split: str,
        context: np.ndarray,
        body: np.ndarray,
        emotions: np.ndarray,
        vad: np.ndarray,
    ) -> None:
        ids = [f"{split}/{i:06d}" for i in range(len(emotions))]
        super().__init__(root, split, ids, emotions, vad)
        self._context = context
        self._body = body

    @classmethod
    def markers(cls, data_dir: Path) -> list[Path]:
        return [
            array_path(folder, split, "context")
            for folder in _folders(data_dir)
            for split in SPLITS
            if array_path(folder, split, "context").is_file()
        ]

    @classmethod
    def open(cls, data_dir: Path, split: str) -> ArraysSplit:
        folder = next((f for f in _folders(data_dir) if array_path(f, split, "context").is_file()), data_dir)
        missing = [
            array_path(folder, split, p).name for p in REQUIRED if not array_path(folder, split, p).is_file()
        ]
        if missing:
            raise UserError(f"arrays split '{split}' is incomplete in {folder}: missing {', '.join(missing)}")
        context = _load(array_path(folder, split, "context"))
        body = _load(array_path(folder, split, "body"))
        cat = _load(array_path(folder, split, "cat"), mmap_mode=None)
        cont_path = array_path(folder, split, "cont")
        cont = _load(cont_path, mmap_mode=None) if cont_path.is_file() else None

        for name, images in (("context", context), ("body", body)):
            path = array_path(folder, split, name)
            if images.ndim != 4 or images.shape[3] != 3:
                raise UserError(f"{path}: expected N x H x W x 3 RGB images, got shape {images.shape}")
            if images.dtype != np.uint8:
                raise UserError(f"{path}: expected uint8 pixels, got {images.dtype}")
        cat_path = array_path(folder, split, "cat")
        if cat.ndim != 2 or cat.shape[1] != len(CATEGORIES):
            width = cat.shape[1] if cat.ndim == 2 else f"shape {cat.shape}"
            raise UserError(
                f"{cat_path}: the category vector is {width} wide; EMOTIC has {len(CATEGORIES)} categories"
            )
        if cont is not None and (cont.ndim != 2 or cont.shape[1] != 3):
            raise UserError(f"{cont_path}: expected N x 3 VAD values, got shape {cont.shape}")
        lengths = {"context": len(context), "body": len(body), "cat": len(cat)}
        if cont is not None:
            lengths["cont"] = len(cont)
        if len(set(lengths.values())) > 1:
            detail = ", ".join(f"{k} {v}" for k, v in lengths.items())
            raise UserError(f"arrays of split '{split}' in {folder} have different lengths: {detail}")
        try:
            emotions = np.asarray(cat, dtype=np.float32)
        except (TypeError, ValueError):
            raise UserError(f"{cat_path}: category labels are not numbers ({cat.dtype})") from None
        bad = ~np.isfinite(emotions).all(axis=1)
        if bad.any():
            raise UserError(
                f"{cat_path}: NaN or infinite labels in {int(bad.sum())} rows "
                f"(first: row {int(np.argmax(bad))})"
            )
        not_binary = ~np.isin(emotions, (0.0, 1.0)).all(axis=1)
        if not_binary.any():
            raise UserError(
                f"{cat_path}: labels must be 0 or 1; row {int(np.argmax(not_binary))} holds "
                f"{sorted(set(emotions[np.argmax(not_binary)].tolist()))}"
            )
        vad = (
            np.asarray(cont, dtype=np.float32)
            if cont is not None
            else np.full((len(emotions), 3), np.nan, dtype=np.float32)
        )
        return cls(folder, split, context, body, emotions, vad)

    def _load_pixels(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        body = _read_rows(self._body, indices)
        context = _read_rows(self._context, indices)
        return body, context


def _read_rows(array: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Copy rows out of a memory-mapped array and release the mapped pages they occupied."""
    if indices.size and np.all(np.diff(indices) == 1):
        rows = np.array(array[indices[0] : indices[-1] + 1])  # one contiguous read
    else:
        rows = np.array(array[indices])
    _release(array, indices)
    return rows


def _release(array: np.ndarray, indices: np.ndarray) -> None:
    mapping = getattr(array, "_mmap", None)
    if mapping is None or not indices.size:
        return
    row_bytes = int(np.prod(array.shape[1:])) * array.itemsize
    # numpy maps from the allocation-granularity boundary below the array's offset.
    base = array.offset % mmap.ALLOCATIONGRANULARITY
    start = base + int(indices.min()) * row_bytes
    end = min(base + (int(indices.max()) + 1) * row_bytes, len(mapping))
    start -= start % mmap.PAGESIZE
    try:
        mapping.madvise(mmap.MADV_DONTNEED, start, end - start)
    except (OSError, ValueError, AttributeError):  # not Linux, or a mapping we cannot advise: RSS only
        pass


@WRITERS.register("arrays")
class ArraysWriter:
    """Streams each split into ``{split}_*_arr.npy`` (what mat2py --generate_npy writes: uint8
    images, float64 labels), never holding a whole split in memory."""

    def __init__(self, data_dir: Path) -> None:
        self.folder = Path(data_dir)
        self.folder.mkdir(parents=True, exist_ok=True)

    def begin(self, split: str, n_persons: int) -> None:
        self.split, self.n, self.count = split, n_persons, 0
        self.context: np.ndarray | None = None
        self.body: np.ndarray | None = None
        self.cat = np.zeros((n_persons, len(CATEGORIES)), dtype=np.float64)
        self.cont = np.zeros((n_persons, 3), dtype=np.float64)

    def _open(self, body: np.ndarray, context: np.ndarray) -> None:
        open_map = np.lib.format.open_memmap
        self.context = open_map(
            array_path(self.folder, self.split, "context"),
            mode="w+",
            dtype=np.uint8,
            shape=(self.n, *context.shape),
        )
        self.body = open_map(
            array_path(self.folder, self.split, "body"),
            mode="w+",
            dtype=np.uint8,
            shape=(self.n, *body.shape),
        )

    def add(
        self,
        folder: str,
        filename: str,
        jpeg: bytes,
        persons: list,
        bodies: list[np.ndarray],
        contexts: list[np.ndarray],
    ) -> None:
        for person, body, context in zip(persons, bodies, contexts, strict=True):
            if self.body is None:
                self._open(body, context)
            i = self.count
            self.body[i], self.context[i] = body, context
            self.cat[i] = labels_from_names(person.categories, "synthetic person")
            self.cont[i] = person.vad
            self.count += 1

    def end(self) -> None:
        if self.count != self.n:
            raise RuntimeError(f"wrote {self.count} of {self.n} rows of split {self.split}")
        for images in (self.context, self.body):
            if images is not None:
                images.flush()
        self.context = self.body = None
        np.save(array_path(self.folder, self.split, "cat"), self.cat)
        np.save(array_path(self.folder, self.split, "cont"), self.cont)

    def close(self) -> None:
        pass
