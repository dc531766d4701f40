"""The shared preprocessing and batch iteration (limits, indices, prefetching, sentiment targets)."""

from __future__ import annotations

import numpy as np
import pytest

from selinet_compress.emotic import CATEGORIES, iterate_batches, open_split, preprocess, sentiment_matrix
from selinet_compress.errors import UserError
from selinet_compress.model.selinet import SeLiNetConfig


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from selinet_compress.emotic.synth import generate

    return generate(tmp_path_factory.mktemp("batches") / "d", "arrays", {"test": 23}, seed=2).path


def test_preprocess_is_the_reference_normalisation():
    rng = np.random.default_rng(0)
    body = rng.integers(0, 256, (2, 128, 128, 3), dtype=np.uint8)
    context = rng.integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    config = SeLiNetConfig()
    out = preprocess(body, context, config)
    expected_body = ((body / 255.0 - np.array(config.body_mean)) / np.array(config.body_std)).transpose(
        0, 3, 1, 2
    )
    expected_context = (
        (context / 255.0 - np.array(config.context_mean)) / np.array(config.context_std)
    ).transpose(0, 3, 1, 2)
    assert out["body"].dtype == np.float32 and out["body"].flags.c_contiguous
    assert out["body"].shape == (2, 3, 128, 128) and out["context"].shape == (2, 3, 224, 224)
    np.testing.assert_allclose(out["body"], expected_body, atol=2e-6)
    np.testing.assert_allclose(out["context"], expected_context, atol=2e-6)


def test_preprocess_resizes_bilinearly_when_the_model_wants_other_sizes():
    import cv2

    rng = np.random.default_rng(1)
    body = rng.integers(0, 256, (1, 128, 128, 3), dtype=np.uint8)
    context = rng.integers(0, 256, (1, 224, 224, 3), dtype=np.uint8)
    config = SeLiNetConfig(body_size=64, context_size=96)
    out = preprocess(body, context, config)
    assert out["body"].shape == (1, 3, 64, 64) and out["context"].shape == (1, 3, 96, 96)
    small = cv2.resize(body[0], (64, 64), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(out["body"][0], preprocess(small[None], context, config)["body"][0])


def test_preprocess_refuses_float_or_channel_first_input():
    with pytest.raises(ValueError, match="uint8"):
        preprocess(
            np.zeros((1, 128, 128, 3), np.float32), np.zeros((1, 224, 224, 3), np.uint8), SeLiNetConfig()
        )
    with pytest.raises(ValueError, match="B x H x W x 3"):
        preprocess(
            np.zeros((1, 3, 128, 128), np.uint8), np.zeros((1, 224, 224, 3), np.uint8), SeLiNetConfig()
        )


def test_batches_cover_the_split_in_order(data):
    split = open_split(data, "test")
    batches = list(iterate_batches(split, 10, SeLiNetConfig()))
    assert [len(b["ids"]) for b in batches] == [10, 10, 3]
    assert [i for b in batches for i in b["ids"]] == split.ids
    np.testing.assert_array_equal(np.concatenate([b["emotions"] for b in batches]), split.emotions)
    first = batches[0]
    assert first["body"].shape == (10, 3, 128, 128) and first["context"].shape == (10, 3, 224, 224)
    assert first["vad"].shape == (10, 3)


def test_limit_and_indices(data):
    split = open_split(data, "test")
    limited = list(iterate_batches(split, 4, SeLiNetConfig(), limit=6))
    assert sum(len(b["ids"]) for b in limited) == 6
    picked = next(iterate_batches(split, 8, SeLiNetConfig(), indices=[5, 1, 7], limit=2))
    assert picked["ids"] == [split.ids[5], split.ids[1]]
    with pytest.raises(UserError, match="batch size"):
        next(iterate_batches(split, 0, SeLiNetConfig()))


def test_prefetching_workers_give_the_same_batches(data):
    split = open_split(data, "test")
    plain = list(iterate_batches(split, 5, SeLiNetConfig()))
    prefetched = list(iterate_batches(split, 5, SeLiNetConfig(), workers=2))
    assert len(plain) == len(prefetched) == 5
    for a, b in zip(plain, prefetched, strict=True):
        assert a["ids"] == b["ids"]
        np.testing.assert_array_equal(a["context"], b["context"])


def test_sentiment_targets_follow_the_config_map(data):
    split = open_split(data, "test")
    default = next(iterate_batches(split, 23, SeLiNetConfig()))
    np.testing.assert_array_equal(
        default["sentiments"], (split.emotions @ sentiment_matrix() > 0).astype(np.float32)
    )
    # A map that calls everything Neutral: every person is Neutral only.
    neutral = SeLiNetConfig(sentiment_map={c: ["Neutral"] for c in CATEGORIES})
    batch = next(iterate_batches(split, 23, neutral))
    np.testing.assert_array_equal(batch["sentiments"], np.tile([0, 0, 1], (23, 1)))


def test_model_categories_in_another_order_get_their_columns(data):
    split = open_split(data, "test")
    reordered = tuple(reversed(CATEGORIES))
    batch = next(iterate_batches(split, 23, SeLiNetConfig(categories=reordered)))
    np.testing.assert_array_equal(batch["emotions"], split.emotions[:, ::-1])


def test_progress_bar_goes_to_stderr(data, capsys):
    list(iterate_batches(open_split(data, "test"), 8, SeLiNetConfig(), progress="reading"))
    captured = capsys.readouterr()
    assert "reading" in captured.err and captured.out == ""
