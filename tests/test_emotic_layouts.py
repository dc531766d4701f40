"""The three EMOTIC layouts: one synthetic set written in each reads back identically; the files
have the structure of the real ones (mat2py CSV, the release's Annotations.mat)."""

from __future__ import annotations

import csv
import math
import warnings
from pathlib import Path

import numpy as np
import pytest

from selinet_compress.emotic import CATEGORIES, DataWarning, detect_layout, iterate_batches, open_split
from selinet_compress.errors import UserError
from selinet_compress.model.selinet import SeLiNetConfig

LAYOUTS = ("arrays", "csv", "mat")
SIZES = {"train": 6, "val": 5, "test": 10}


@pytest.fixture(scope="module")
def sets(tmp_path_factory) -> dict[str, Path]:
    from selinet_compress.emotic.synth import generate

    base = tmp_path_factory.mktemp("layouts")
    return {layout: generate(base / layout, layout, SIZES, seed=7).path for layout in LAYOUTS}


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_one_synthetic_set_reads_identically_in_all_three_layouts(sets, split):
    raws = {}
    for layout in LAYOUTS:
        data = open_split(sets[layout], split)
        assert data.layout == layout and len(data) == SIZES[split]
        raws[layout] = data.load_raw(range(len(data)))
    reference = raws["arrays"]
    assert reference["body"].shape == (SIZES[split], 128, 128, 3) and reference["body"].dtype == np.uint8
    assert reference["context"].shape == (SIZES[split], 224, 224, 3)
    for layout in ("csv", "mat"):
        for key in ("body", "context", "emotions"):
            np.testing.assert_array_equal(raws[layout][key], reference[key], err_msg=f"{layout} {key}")
        np.testing.assert_allclose(raws[layout]["vad"], reference["vad"], rtol=0, atol=1e-6)


def test_preprocessed_batches_are_identical_across_layouts(sets):
    config = SeLiNetConfig()
    batches = {
        layout: next(iterate_batches(open_split(sets[layout], "test"), 10, config)) for layout in LAYOUTS
    }
    for layout in ("csv", "mat"):
        for key in ("body", "context", "emotions", "sentiments"):
            np.testing.assert_array_equal(batches[layout][key], batches["arrays"][key])


def test_layout_is_detected(sets):
    for layout in LAYOUTS:
        assert detect_layout(sets[layout]) == layout


def test_ids_are_stable_and_name_the_source(sets):
    arrays, csv_split, mat = (open_split(sets[layout], "test") for layout in LAYOUTS)
    assert arrays.ids[:2] == ["test/000000", "test/000001"]
    assert csv_split.ids == mat.ids
    assert csv_split.ids[0] == "test/synthetic/images/test_000000.jpg#0"
    assert len(set(mat.ids)) == len(mat)


def test_labels_have_one_to_four_categories_and_vad_on_one_to_ten(sets):
    for split in SIZES:
        data = open_split(sets["arrays"], split)
        counts = data.emotions.sum(axis=1)
        assert counts.min() >= 1 and counts.max() <= 4
        assert np.nanmin(data.vad) >= 1 and np.nanmax(data.vad) <= 10


def test_load_raw_takes_any_order_and_repeats(sets):
    for layout in LAYOUTS:
        data = open_split(sets[layout], "test")
        some = data.load_raw([3, 0, 3])
        one = data.load_raw([3])
        np.testing.assert_array_equal(some["body"][0], one["body"][0])
        np.testing.assert_array_equal(some["context"][2], one["context"][0])
        assert some["ids"] == [data.ids[3], data.ids[0], data.ids[3]]
        with pytest.raises(IndexError):
            data.load_raw([len(data)])


def test_csv_has_the_mat2py_header_and_python_literal_cells(sets):
    path = sets["csv"] / "emotic_pre" / "val.csv"
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == [
        "Index",
        "Folder",
        "Filename",
        "Image Size",
        "BBox",
        "Categorical_Labels",
        "Continuous_Labels",
        "Gender",
        "Age",
    ]
    first = rows[1]
    assert first[0] == "0" and first[1] == "synthetic/images" and first[2].endswith(".jpg")
    assert first[4].startswith("[") and first[5].startswith("['")
    image = sets["csv"] / "emotic" / first[1] / first[2]
    assert image.read_bytes()[:2] == b"\xff\xd8"  # a real JPEG


def test_mat_has_the_structure_of_the_emotic_release(sets):
    """Read the file the way public EMOTIC tools do: scipy defaults and fields by position."""
    from scipy.io import loadmat

    from selinet_compress.emotic.images import read_image

    mat = loadmat(sets["mat"] / "Annotations" / "Annotations.mat")
    assert {"train", "val", "test"} <= set(mat)
    assert mat["train"].dtype.names == ("filename", "folder", "image_size", "original_database", "person")
    entry = mat["train"][0][0]
    filename, folder, size, person = entry[0][0], entry[1][0], entry[2][0][0], entry[4][0][0]
    assert size.dtype.names == ("n_col", "n_row")
    height, width = read_image(sets["mat"] / "emotic" / folder / filename).shape[:2]
    assert (size[0][0][0], size[1][0][0]) == (width, height)
    assert entry[4].dtype.names == (
        "body_bbox",
        "annotations_categories",
        "annotations_continuous",
        "gender",
        "age",
    )
    categories = [c[0] for c in person[1][0][0][0][0]]  # person.annotations_categories.categories
    assert categories and all(c in CATEGORIES for c in categories)
    assert person[2][0][0].dtype.names == ("valence", "arousal", "dominance")
    assert len(person[0][0]) == 4 and person[3][0] in ("Male", "Female")

    val_person = mat["val"][0][0][4][0][0]
    assert mat["val"][0][0][4].dtype.names == (
        "body_bbox",
        "annotations_categories",
        "combined_categories",
        "annotations_continuous",
        "combined_continuous",
        "gender",
        "age",
    )
    combined = {c[0] for c in val_person[2][0]}
    annotators = [{c[0] for c in a[0][0]} for a in val_person[1][0]]
    assert len(annotators) >= 2 and set().union(*annotators) == combined  # the union of annotators


def _write_mat(root: Path, split: str, persons) -> Path:
    from selinet_compress.emotic.images import encode_jpeg
    from selinet_compress.emotic.mat_layout import MatWriter

    writer = MatWriter(root)
    writer.begin(split, len(persons))
    writer.add("imgs", "a.jpg", encode_jpeg(np.full((60, 80, 3), 128, np.uint8)), persons)
    writer.end()
    writer.close()
    return root


def _person(**changes):
    from selinet_compress.emotic.records import Person

    fields = dict(
        folder="imgs",
        filename="a.jpg",
        bbox=(10.0, 5.0, 50.0, 55.0),
        categories=("Peace",),
        vad=(5.0, 6.0, 7.0),
        image_size=(80, 60),
        gender="Female",
        age="Kid",
    )
    return Person(**{**fields, **changes})


def test_mat_reader_handles_single_element_fields(tmp_path):
    """One image, one person, one category, one annotator: scipy squeezes them all to scalars."""
    root = _write_mat(tmp_path, "val", [_person(annotators=(("Peace",),), annotator_vad=((5.0, 6.0, 7.0),))])
    data = open_split(root, "val")
    assert len(data) == 1 and data.ids == ["val/imgs/a.jpg#0"]
    assert data.emotions[0, CATEGORIES.index("Peace")] == 1 and data.emotions.sum() == 1
    np.testing.assert_array_equal(data.vad[0], [5, 6, 7])
    assert data.load_raw([0])["body"].shape == (1, 128, 128, 3)


def test_mat_reader_skips_unlabelled_persons_like_mat2py(tmp_path):
    root = _write_mat(
        tmp_path, "train", [_person(), _person(categories=()), _person(vad=(math.nan, 5.0, 5.0))]
    )
    with pytest.warns(DataWarning, match="skipped 2 person"):
        data = open_split(root, "train")
    assert data.ids == ["train/imgs/a.jpg#0"]


def test_csv_image_root_may_be_the_data_folder_itself(sets, tmp_path):
    """Images under <data>/<Folder>/ (without the emotic/ level) are found too."""
    import shutil

    shutil.copytree(sets["csv"] / "emotic_pre", tmp_path / "emotic_pre")
    shutil.copytree(sets["csv"] / "emotic" / "synthetic", tmp_path / "synthetic")
    np.testing.assert_array_equal(
        open_split(tmp_path, "test").load_raw([1])["body"],
        open_split(sets["csv"], "test").load_raw([1])["body"],
    )


def test_arrays_in_emotic_pre_are_found(sets, tmp_path):
    import shutil

    shutil.copytree(sets["arrays"], tmp_path / "emotic_pre")
    data = open_split(tmp_path, "val")
    assert data.layout == "arrays" and data.root == tmp_path / "emotic_pre"


def test_reading_batches_does_not_grow_memory_with_the_file(tmp_path):
    """Pages read through the memory map are released: RSS stays near one batch, not the file."""
    import psutil

    n = 600  # 600 x 224 x 224 x 3 = 90 MB of contexts
    folder = tmp_path / "big"
    folder.mkdir()
    context = np.lib.format.open_memmap(folder / "test_context_arr.npy", "w+", np.uint8, (n, 224, 224, 3))
    context[:] = 90
    context.flush()
    del context
    np.save(folder / "test_body_arr.npy", np.full((n, 128, 128, 3), 30, np.uint8))
    np.save(folder / "test_cat_arr.npy", np.eye(26)[np.arange(n) % 26])
    data = open_split(folder, "test")
    process = psutil.Process()
    before = process.memory_info().rss
    peak = before
    for start in range(0, n, 50):
        raw = data.load_raw(range(start, min(n, start + 50)))
        assert raw["context"][0, 0, 0, 0] == 90
        peak = max(peak, process.memory_info().rss)
    assert peak - before < 45e6, f"RSS grew by {(peak - before) / 1e6:.0f} MB reading a 90 MB file"


def test_vad_is_nan_when_the_arrays_have_no_cont_file(sets, tmp_path):
    import shutil

    for path in sets["arrays"].glob("test_*_arr.npy"):
        if path.name != "test_cont_arr.npy":
            shutil.copy(path, tmp_path / path.name)
    data = open_split(tmp_path, "test")
    assert np.isnan(data.load_raw([0])["vad"]).all()


def test_unknown_split_and_layout_names(sets):
    with pytest.raises(UserError, match="did you mean 'test'"):
        open_split(sets["arrays"], "tset")
    with pytest.raises(UserError, match="unknown layout 'cvs'; did you mean 'csv'"):
        open_split(sets["arrays"], "test", layout="cvs")


def test_no_warning_for_clean_data(sets):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for layout in LAYOUTS:
            open_split(sets[layout], "test").load_raw(range(3))
