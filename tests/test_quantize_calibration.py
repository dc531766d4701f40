"""The calibration set: deterministic, train split only, ids recorded, bad data refused."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from onnx_fixtures import small_config, small_setup

from selinet_compress.calibration import (
    CalibrationSet,
    CalibrationWarning,
    choose_indices,
    load_calibration,
    load_check_samples,
    select_calibration,
)
from selinet_compress.errors import UserError
from selinet_compress.recipes import Calibration


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return small_setup(tmp_path_factory.getbasetemp())


def test_choose_indices_is_deterministic_and_bounded():
    first = choose_indices(100, 10, seed=3)
    assert first == choose_indices(100, 10, seed=3) and first == sorted(first) and len(set(first)) == 10
    assert first != choose_indices(100, 10, seed=4)
    assert choose_indices(5, 10, seed=0) == [0, 1, 2, 3, 4]


def test_selection_comes_from_the_train_split_with_ids(setup):
    from selinet_compress.emotic import open_split

    selection = select_calibration(setup.data, Calibration(samples=6, seed=1))
    train = open_split(setup.data, "train")
    assert selection.split == "train" and len(selection.ids) == 6
    assert list(selection.ids) == [train.ids[i] for i in selection.indices]
    test_ids = set(open_split(setup.data, "test").ids)
    assert not test_ids & set(selection.ids)
    record = selection.record()
    assert record["ids"] == list(selection.ids) and record["used"] == 6 and record["requested"] == 6


def test_fewer_samples_than_requested_warns_and_records(setup):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        selection = select_calibration(setup.data, Calibration(samples=1000))
    assert any(issubclass(w.category, CalibrationWarning) for w in caught)
    assert selection.record()["requested"] == 1000 and selection.record()["used"] == 24


def test_loaded_samples_match_evaluation_preprocessing(setup):
    from selinet_compress.emotic import iterate_batches, open_split

    config = small_config()
    calibration = load_calibration(setup.data, config, Calibration(samples=5, seed=2), progress=False)
    assert set(calibration.inputs) == {"body"} and calibration.inputs["body"].shape == (5, 3, 64, 64)
    split = open_split(setup.data, "train")
    batch = next(iterate_batches(split, 5, config, indices=list(calibration.selection.indices)))
    np.testing.assert_array_equal(batch["body"], calibration.inputs["body"])
    nhwc = calibration.nhwc()["body"]
    assert nhwc.shape == (5, 64, 64, 3) and nhwc.flags.c_contiguous
    np.testing.assert_array_equal(nhwc.transpose(0, 3, 1, 2), calibration.inputs["body"])


def test_check_samples_come_from_val(setup):
    check = load_check_samples(setup.data, small_config(), count=3)
    assert len(check) == 3 and check.kind == "check" and "val split" in check.source


def test_nan_or_inf_in_calibration_data_is_refused():
    body = np.zeros((4, 3, 8, 8), np.float32)
    body[2, 1, 3, 3] = np.nan
    with pytest.raises(UserError, match="NaN or inf in 1 sample") as info:
        CalibrationSet.from_arrays({"body": body}, ids=["a", "b", "c", "d"])
    assert "c" in str(info.value)
    body[2, 1, 3, 3] = np.inf
    with pytest.raises(UserError, match="NaN or inf"):
        CalibrationSet.from_arrays({"body": body})


def test_empty_calibration_set_is_refused():
    with pytest.raises(UserError, match="calibration set is empty"):
        CalibrationSet.from_arrays({"body": np.zeros((0, 3, 8, 8), np.float32)})
    with pytest.raises(UserError, match="rows for"):
        CalibrationSet(ids=("a",), inputs={"body": np.zeros((2, 3, 8, 8), np.float32)})
