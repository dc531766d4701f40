"""The mat2py CSV layout: ``emotic_pre/{train,val,test}.csv`` + images under ``<root>/<Folder>/<Filename>``.

Header ``Index,Folder,Filename,Image Size,BBox,Categorical_Labels,Continuous_Labels,Gender,Age``;
list cells are Python literals (``"['Engagement', 'Happiness']"``, ``"[x1, y1, x2, y2]"``), as
Tandon-A/emotic's ``mat2py.py`` writes them. ``Image Size`` is ``[width, height]`` (mat2py's
``[n_col, n_row]``), val/test rows hold the union of the annotators' categories.
"""

from __future__ import annotations

import ast
import csv
import math
from pathlib import Path

from selinet_compress.emotic.dataset import LAYOUTS, SPLITS, WRITERS
from selinet_compress.emotic.records import ImageSplit, Person, image_root
from selinet_compress.errors import UserError

HEADER = (
    "Index",
    "Folder",
    "Filename",
    "Image Size",
    "BBox",
    "Categorical_Labels",
    "Continuous_Labels",
    "Gender",
    "Age",
)
REQUIRED = ("Folder", "Filename", "BBox", "Categorical_Labels")


def csv_path(data_dir: Path, split: str) -> Path:
    return data_dir / "emotic_pre" / f"{split}.csv"


def _literal(cell: str, column: str, where: str):
    text = (cell or "").strip()
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        # mat2py never writes NaN, but hand-made files do ("[nan, 5, 6]"): read it as NaN.
        if "nan" in text.lower():
            try:
                value = ast.literal_eval(text.lower().replace("nan", "None"))
                return [math.nan if v is None else v for v in value]
            except (ValueError, SyntaxError, TypeError):
                pass
        raise UserError(f"{where}: column {column} holds {text[:60]!r}, not a Python literal list") from None


def _numbers(value, count: int | None, column: str, where: str) -> tuple[float, ...]:
    if (
        not isinstance(value, (list, tuple))
        or (count is not None and len(value) != count)
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    ):
        expected = f"{count} numbers" if count else "numbers"
        raise UserError(f"{where}: column {column} should be a list of {expected}, got {value!r}"[:200])
    return tuple(float(v) for v in value)


def parse_row(row: dict[str, str], where: str, person: int) -> Person:
    """One CSV row -> :class:`Person` (strict: a malformed cell is a one-line UserError)."""
    if not row.get("Folder") or not row.get("Filename"):
        raise UserError(f"{where}: Folder and Filename must name the image")
    categories = _literal(row["Categorical_Labels"], "Categorical_Labels", where)
    if isinstance(categories, str):
        categories = [categories]
    if not isinstance(categories, (list, tuple)) or not all(isinstance(c, str) for c in categories):
        raise UserError(f"{where}: column Categorical_Labels should list category names, got {categories!r}")
    bbox = _numbers(_literal(row["BBox"], "BBox", where), 4, "BBox", where)
    vad = (math.nan,) * 3
    if (row.get("Continuous_Labels") or "").strip() not in ("", "[]"):
        vad = _numbers(
            _literal(row["Continuous_Labels"], "Continuous_Labels", where), 3, "Continuous_Labels", where
        )
    size = None
    if (row.get("Image Size") or "").strip():
        width, height = _numbers(_literal(row["Image Size"], "Image Size", where), 2, "Image Size", where)
        size = (int(width), int(height))
    return Person(
        folder=row["Folder"],
        filename=row["Filename"],
        bbox=bbox,
        categories=tuple(categories),
        vad=vad,
        image_size=size,
        gender=row.get("Gender") or "",
        age=row.get("Age") or "",
        person=person,
    )


@LAYOUTS.register("csv", looks_for="emotic_pre/{train,val,test}.csv with images under emotic/<Folder>/")
class CsvSplit(ImageSplit):
    layout = "csv"

    @classmethod
    def markers(cls, data_dir: Path) -> list[Path]:
        return [csv_path(data_dir, s) for s in SPLITS if csv_path(data_dir, s).is_file()]

    @classmethod
    def open(cls, data_dir: Path, split: str) -> CsvSplit:
        path = csv_path(data_dir, split)
        if not path.is_file():
            raise UserError(f"csv split '{split}' missing: {path} not found")
        try:
            with open(path, newline="", encoding="utf-8") as handle:
                reader = csv.DictReader(handle)
                columns = reader.fieldnames or []
                missing = [c for c in REQUIRED if c not in columns]
                if missing:
                    raise UserError(
                        f"{path}: missing column(s) {', '.join(missing)}; expected header {','.join(HEADER)}"
                    )
                persons, seen = [], {}
                for line, row in enumerate(reader, start=2):
                    key = (row["Folder"], row["Filename"])
                    persons.append(parse_row(row, f"{path.name} line {line}", seen.get(key, 0)))
                    seen[key] = seen.get(key, 0) + 1
        except UnicodeDecodeError:
            raise UserError(f"{path} is not a UTF-8 text CSV file") from None
        except csv.Error as exc:
            raise UserError(f"{path}: malformed CSV ({exc})") from None
        return cls(data_dir, split, image_root(data_dir), persons, path.name)


@WRITERS.register("csv")
class CsvWriter:
    """Writes ``emotic_pre/{split}.csv`` and the JPEGs under ``emotic/<folder>/``, as mat2py's
    output and the EMOTIC release look."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.images = image_root_for_writing(data_dir)

    def begin(self, split: str, n_persons: int) -> None:
        self.path = csv_path(self.data_dir, split)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.rows: list[list] = []

    def add(self, folder: str, filename: str, jpeg: bytes, persons: list[Person], **_: object) -> None:
        write_image(self.images, folder, filename, jpeg)
        for person in persons:
            size = list(person.image_size) if person.image_size else []
            bbox = [int(v) if float(v).is_integer() else v for v in person.bbox]
            self.rows.append(
                [
                    len(self.rows),
                    folder,
                    filename,
                    size,
                    bbox,
                    list(person.categories),
                    list(person.vad),
                    person.gender,
                    person.age,
                ]
            )

    def end(self) -> None:
        with open(self.path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, delimiter=",", dialect="excel")
            writer.writerow(HEADER)
            writer.writerows(self.rows)

    def close(self) -> None:
        pass


def image_root_for_writing(data_dir: Path) -> Path:
    """Images go to ``<data_dir>/emotic/<folder>/`` like the EMOTIC release."""
    return Path(data_dir) / "emotic"


def write_image(images: Path, folder: str, filename: str, jpeg: bytes) -> None:
    path = images / folder / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():  # persons of one image share it
        path.write_bytes(jpeg)
