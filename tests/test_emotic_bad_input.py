"""Bad EMOTIC data through the CLI: one 'error:' line naming the problem, no traceback (a clamped
body box is a warning, and evaluation goes on)."""

from __future__ import annotations

import ast
import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_one_line_error


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> dict[str, Path]:
    from selinet_compress.checkpoint import init_checkpoint
    from selinet_compress.emotic.synth import generate
    from selinet_compress.model.selinet import SeLiNetConfig

    root = tmp_path_factory.mktemp("bad")
    sizes = {"train": 3, "val": 0, "test": 4}
    paths = {
        layout: generate(root / layout, layout, sizes, seed=3).path for layout in ("arrays", "csv", "mat")
    }
    paths["model"] = init_checkpoint(root / "small.pt", SeLiNetConfig(body_size=32, context_size=32), seed=0)
    return paths


@pytest.fixture
def copy(base, tmp_path):
    def make(layout: str) -> Path:
        return Path(shutil.copytree(base[layout], tmp_path / layout))

    return make


def evaluate(cli, base, data: Path, *extra: str):
    return cli("evaluate", base["model"], "--data", data, *extra)


def rewrite_csv(path: Path, change) -> None:
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    change(rows)
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows(rows)


def test_good_data_evaluates(cli, base):
    result = evaluate(cli, base, base["csv"])
    assert result.exit_code == 0, result.output
    assert "mAP" in result.output


def test_missing_split_files(cli, base, copy):
    arrays = copy("arrays")
    (arrays / "test_body_arr.npy").unlink()
    assert_one_line_error(evaluate(cli, base, arrays), "incomplete", "test_body_arr.npy")
    assert_one_line_error(evaluate(cli, base, base["csv"], "--split", "val"), "val", "missing", "val.csv")
    assert_one_line_error(evaluate(cli, base, base["mat"], "--split", "val"), "val", "missing")


def test_arrays_of_mismatched_length(cli, base, copy):
    arrays = copy("arrays")
    np.save(arrays / "test_cat_arr.npy", np.load(arrays / "test_cat_arr.npy")[:3])
    assert_one_line_error(evaluate(cli, base, arrays), "different lengths", "context 4", "cat 3")


def test_category_vector_not_26_wide(cli, base, copy):
    arrays = copy("arrays")
    np.save(arrays / "test_cat_arr.npy", np.load(arrays / "test_cat_arr.npy")[:, :25])
    assert_one_line_error(evaluate(cli, base, arrays), "25 wide", "26 categories")


def test_nan_labels(cli, base, copy):
    arrays = copy("arrays")
    cat = np.load(arrays / "test_cat_arr.npy")
    cat[2, 5] = np.nan
    np.save(arrays / "test_cat_arr.npy", cat)
    assert_one_line_error(evaluate(cli, base, arrays), "NaN", "row 2")


def test_labels_that_are_not_zero_or_one(cli, base, copy):
    arrays = copy("arrays")
    cat = np.load(arrays / "test_cat_arr.npy")
    cat[1, 0] = 0.5
    np.save(arrays / "test_cat_arr.npy", cat)
    assert_one_line_error(evaluate(cli, base, arrays), "0 or 1", "row 1")


def test_empty_split(cli, base, copy):
    arrays = copy("arrays")
    for part in ("context", "body", "cat", "cont"):
        path = arrays / f"test_{part}_arr.npy"
        np.save(path, np.load(path)[:0])
    assert_one_line_error(evaluate(cli, base, arrays), "empty")
    csv_data = copy("csv")
    rewrite_csv(csv_data / "emotic_pre" / "test.csv", lambda rows: rows.__delitem__(slice(1, None)))
    assert_one_line_error(evaluate(cli, base, csv_data), "empty")


def test_a_file_that_is_not_a_numpy_array(cli, base, copy):
    arrays = copy("arrays")
    (arrays / "test_context_arr.npy").write_text("not an array")
    assert_one_line_error(evaluate(cli, base, arrays), "test_context_arr.npy", "numpy")


def test_images_of_the_wrong_kind(cli, base, copy):
    arrays = copy("arrays")
    np.save(arrays / "test_body_arr.npy", np.zeros((4, 128, 128, 3), np.float32))
    assert_one_line_error(evaluate(cli, base, arrays), "uint8")


@pytest.mark.parametrize("layout", ["csv", "mat"])
def test_missing_image(cli, base, copy, layout):
    data = copy(layout)
    victim = sorted((data / "emotic" / "synthetic" / "images").glob("test_*.jpg"))[1]
    victim.unlink()
    assert_one_line_error(evaluate(cli, base, data), "image not found", victim.name)


@pytest.mark.parametrize("layout", ["csv", "mat"])
def test_unreadable_image(cli, base, copy, layout):
    data = copy(layout)
    victim = sorted((data / "emotic" / "synthetic" / "images").glob("test_*.jpg"))[-1]
    victim.write_bytes(b"\xff\xd8 this is not really a jpeg")
    assert_one_line_error(evaluate(cli, base, data), "cannot decode", victim.name)


def test_body_box_reaching_outside_the_image_is_clamped_with_a_warning(cli, base, copy):
    data = copy("csv")

    def widen(rows):
        x1, y1, x2, y2 = ast.literal_eval(rows[1][4])
        rows[1][4] = str([x1 - 500, y1, x2 + 5000, y2])

    rewrite_csv(data / "emotic_pre" / "test.csv", widen)
    result = evaluate(cli, base, data)
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert any("clamped" in line and "test/synthetic/images/test_000000.jpg#0" in line for line in warnings)
    assert "Traceback" not in result.output


def test_body_box_wholly_outside_the_image(cli, base, copy):
    data = copy("csv")
    rewrite_csv(
        data / "emotic_pre" / "test.csv", lambda rows: rows[2].__setitem__(4, "[5000, 5000, 5100, 5100]")
    )
    assert_one_line_error(evaluate(cli, base, data), "empty inside", "image")


def test_unknown_category_name_in_csv(cli, base, copy):
    data = copy("csv")
    rewrite_csv(data / "emotic_pre" / "test.csv", lambda rows: rows[1].__setitem__(5, "['Hapiness']"))
    assert_one_line_error(
        evaluate(cli, base, data), "unknown emotion category 'Hapiness'", "did you mean 'Happiness'"
    )


def test_malformed_csv_cell(cli, base, copy):
    data = copy("csv")
    rewrite_csv(data / "emotic_pre" / "test.csv", lambda rows: rows[1].__setitem__(4, "[1, 2, 3"))
    assert_one_line_error(evaluate(cli, base, data), "test.csv line 2", "BBox")


def test_csv_without_the_mat2py_columns(cli, base, copy):
    data = copy("csv")
    rewrite_csv(data / "emotic_pre" / "test.csv", lambda rows: rows[0].__setitem__(4, "Box"))
    assert_one_line_error(evaluate(cli, base, data), "missing column", "BBox")


def test_corrupt_annotations_mat(cli, base, copy):
    data = copy("mat")
    (data / "Annotations" / "Annotations.mat").write_bytes(b"MATLAB 5.0 MAT-file, garbage" * 10)
    assert_one_line_error(evaluate(cli, base, data), "Annotations.mat")


def test_folder_without_emotic_data_lists_what_was_looked_for(cli, base, tmp_path):
    assert_one_line_error(
        evaluate(cli, base, tmp_path), "no EMOTIC data", "_arr.npy", "emotic_pre", "Annotations.mat"
    )
    assert_one_line_error(evaluate(cli, base, tmp_path / "nope"), "no such folder")


def test_two_layouts_in_one_folder_is_ambiguous(cli, base, copy):
    data = copy("csv")
    for path in base["arrays"].glob("*.npy"):
        shutil.copy(path, data / path.name)
    assert_one_line_error(evaluate(cli, base, data), "more than one EMOTIC layout", "--layout")
    result = evaluate(cli, base, data, "--layout", "arrays")
    assert result.exit_code == 0, result.output


def test_bad_scores_path(cli, base):
    assert_one_line_error(evaluate(cli, base, base["arrays"], "--scores", "out.txt"), ".npz")


def test_csv_row_without_an_image_name(cli, base, copy):
    data = copy("csv")
    rewrite_csv(data / "emotic_pre" / "test.csv", lambda rows: rows[3].__setitem__(2, ""))
    assert_one_line_error(evaluate(cli, base, data), "test.csv line 4", "Filename")
