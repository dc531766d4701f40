"""The original EMOTIC release: ``Annotations/Annotations.mat`` + images under ``emotic/<folder>/``.

The file holds one struct array per split (keys ``train``, ``val``, ``test``), one entry per image:

    filename, folder, image_size {n_col, n_row}, original_database {name, info}, person[]

and per person (train): ``body_bbox`` [x1 y1 x2 y2], ``annotations_categories`` {categories: cell},
``annotations_continuous`` {valence, arousal, dominance}, ``gender``, ``age``; (val/test, several
annotators): ``body_bbox``, ``annotations_categories[]`` (one per annotator),
``combined_categories`` (cell, the union), ``annotations_continuous[]``, ``combined_continuous``,
``gender``, ``age``. Field order matters to tools that index fields by position (mat2py), so the
writer keeps the release's order.

Reading follows mat2py's filtering so split sizes match the usual 23,266 / 3,315 / 7,203: persons
without category labels or with NaN VAD are skipped (with a warning saying how many).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from selinet_compress.emotic.csv_layout import image_root_for_writing, write_image
from selinet_compress.emotic.dataset import LAYOUTS, SPLITS, WRITERS, warn_data
from selinet_compress.emotic.records import ImageSplit, Person, image_root
from selinet_compress.errors import UserError


def annotations_path(data_dir: Path) -> Path:
    return data_dir / "Annotations" / "Annotations.mat"


def _items(value) -> list:
    """A struct / cell value of ``loadmat(squeeze_me=True)`` as a list (1-element arrays are
    squeezed to scalars there, empty ones to 0-size arrays)."""
    if value is None:
        return []
    if isinstance(value, np.ndarray):
        return list(value.ravel())
    return [value]


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value] if value else []
    return [s for v in _items(value) for s in _strings(v)]


def _number(value) -> float:
    items = _items(value)
    return float(items[0]) if items else math.nan


def _vad(struct) -> tuple[float, float, float]:
    if struct is None or (isinstance(struct, np.ndarray) and struct.size == 0):
        return (math.nan,) * 3
    return (_number(struct.valence), _number(struct.arousal), _number(struct.dominance))


def _has(struct, name: str) -> bool:
    return name in getattr(struct, "_fieldnames", ())


def person_labels(person) -> tuple[list[str], tuple[float, float, float]]:
    """(categories, VAD) of one person: the combined annotation on val/test, the single one on train."""
    if _has(person, "combined_categories"):
        categories = _strings(person.combined_categories)
    else:
        categories = sorted(
            {c for a in _items(person.annotations_categories) for c in _strings(a.categories)}
        )
    if _has(person, "combined_continuous"):
        vad = _vad(person.combined_continuous)
    else:
        annotations = _items(person.annotations_continuous)
        vad = _vad(annotations[0]) if len(annotations) == 1 else (math.nan,) * 3
    return categories, vad


def read_annotations(path: Path, split: str) -> list[Person]:
    """Persons of one split of an Annotations.mat, in file order, filtered like mat2py."""
    from scipy.io import loadmat

    try:
        mat = loadmat(path, squeeze_me=True, struct_as_record=False, variable_names=[split])
    except Exception as exc:  # scipy raises ValueError, MatReadError, TypeError... on bad files
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:160]
        raise UserError(f"cannot read {path} as a MATLAB annotations file: {first}") from None
    if split not in mat:
        raise UserError(f"mat split '{split}' missing: {path} has no '{split}' entry")
    persons, skipped = [], 0
    for number, image in enumerate(_items(mat[split])):
        try:
            folder, filename = str(image.folder), str(image.filename)
            size = (int(_number(image.image_size.n_col)), int(_number(image.image_size.n_row)))
            people = _items(image.person)
        except (AttributeError, ValueError, TypeError) as exc:
            raise UserError(
                f"{path}: entry {number} of '{split}' is not an EMOTIC image record ({exc})"
            ) from None
        for index, person in enumerate(people):
            try:
                bbox = tuple(float(v) for v in np.asarray(person.body_bbox, dtype=float).ravel())
                categories, vad = person_labels(person)
            except (AttributeError, ValueError, TypeError) as exc:
                raise UserError(
                    f"{path}: person {index} of {folder}/{filename} ({split}) is not an EMOTIC "
                    f"person record ({exc})"
                ) from None
            if len(bbox) != 4:
                raise UserError(
                    f"{path}: body_bbox of person {index} of {folder}/{filename} has {len(bbox)} "
                    "values, expected 4"
                )
            if not categories or any(math.isnan(v) for v in vad):
                skipped += 1
                continue
            persons.append(
                Person(
                    folder=folder,
                    filename=filename,
                    bbox=bbox,
                    categories=tuple(categories),
                    vad=vad,
                    image_size=size,
                    gender=" ".join(_strings(person.gender)),
                    age=" ".join(_strings(person.age)),
                    person=index,
                )
            )
    if skipped:
        warn_data(
            f"{path.name} '{split}': skipped {skipped} person(s) without category labels or with NaN "
            "VAD, as the reference preprocessing (mat2py) does"
        )
    return persons


@LAYOUTS.register("mat", looks_for="Annotations/Annotations.mat with images under emotic/<folder>/")
class MatSplit(ImageSplit):
    layout = "mat"

    @classmethod
    def markers(cls, data_dir: Path) -> list[Path]:
        path = annotations_path(data_dir)
        return [path] if path.is_file() else []

    @classmethod
    def open(cls, data_dir: Path, split: str) -> MatSplit:
        path = annotations_path(data_dir)
        if not path.is_file():
            raise UserError(f"mat split '{split}' missing: {path} not found")
        return cls(data_dir, split, image_root(data_dir), read_annotations(path, split), path.name)


# ---------------------------------------------------------------------------------------------
# Writing (the synthetic generator): the release's structure, field order included.


def _struct(shape: tuple[int, int], **fields) -> np.ndarray:
    """A MATLAB struct array for scipy.io.savemat; ``fields`` maps name -> list of values."""
    array = np.empty(shape, dtype=[(name, object) for name in fields])
    for name, values in fields.items():
        for i, value in enumerate(values):
            array[0, i][name] = value
    return array


def _cell(strings: list[str] | tuple[str, ...]) -> np.ndarray:
    cell = np.empty((1, len(strings)), dtype=object)
    for i, s in enumerate(strings):
        cell[0, i] = s
    return cell


def _double(value: float) -> np.ndarray:
    return np.array([[float(value)]])


def _vad_struct(vads: list[tuple[float, float, float]]) -> np.ndarray:
    return _struct(
        (1, len(vads)),
        valence=[_double(v[0]) for v in vads],
        arousal=[_double(v[1]) for v in vads],
        dominance=[_double(v[2]) for v in vads],
    )


def _person_struct(persons: list[Person], split: str) -> np.ndarray:
    def categories(p: Person) -> list[tuple[str, ...]]:
        return list(p.annotators) or [p.categories]

    def vads(p: Person) -> list[tuple[float, float, float]]:
        return list(p.annotator_vad) or [p.vad]

    common = {"body_bbox": [np.array([list(map(float, p.bbox))]) for p in persons]}
    if split == "train":
        fields = {
            **common,
            "annotations_categories": [_struct((1, 1), categories=[_cell(p.categories)]) for p in persons],
            "annotations_continuous": [_vad_struct([p.vad]) for p in persons],
        }
    else:
        fields = {
            **common,
            "annotations_categories": [
                _struct((1, len(categories(p))), categories=[_cell(c) for c in categories(p)])
                for p in persons
            ],
            "combined_categories": [_cell(p.categories) for p in persons],
            "annotations_continuous": [_vad_struct(vads(p)) for p in persons],
            "combined_continuous": [_vad_struct([p.vad]) for p in persons],
        }
    fields["gender"] = [p.gender for p in persons]
    fields["age"] = [p.age for p in persons]
    return _struct((1, len(persons)), **fields)


@WRITERS.register("mat")
class MatWriter:
    """Collects images and persons of every split; ``close`` writes Annotations/Annotations.mat."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.images = image_root_for_writing(data_dir)
        self.splits: dict[str, list[tuple[str, str, tuple[int, int], list[Person]]]] = {}
        self.split = ""

    def begin(self, split: str, n_persons: int) -> None:
        self.split = split
        self.splits[split] = []

    def add(self, folder: str, filename: str, jpeg: bytes, persons: list[Person], **_: object) -> None:
        write_image(self.images, folder, filename, jpeg)
        self.splits[self.split].append((folder, filename, persons[0].image_size, persons))

    def end(self) -> None:
        pass

    def close(self) -> None:
        from scipy.io import savemat

        content = {}
        for split in SPLITS:
            entries = self.splits.get(split)
            if not entries:
                continue
            n = len(entries)
            content[split] = _struct(
                (1, n),
                filename=[e[1] for e in entries],
                folder=[e[0] for e in entries],
                image_size=[
                    _struct((1, 1), n_col=[_double(e[2][0])], n_row=[_double(e[2][1])]) for e in entries
                ],
                original_database=[
                    _struct(
                        (1, 1),
                        name=["synthetic"],
                        info=[_struct((1, 1), generator=["selinet-compress synth"])],
                    )
                    for _ in entries
                ],
                person=[_person_struct(e[3], split) for e in entries],
            )
        path = annotations_path(self.data_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        savemat(path, content, do_compression=True, oned_as="row")
