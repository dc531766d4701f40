"""AP metrics: scikit-learn's AP per class, undefined classes, vectorised AP, paired bootstrap."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from selinet_compress.emotic.categories import CATEGORIES
from selinet_compress.metrics import (
    UndefinedAPWarning,
    bootstrap_delta_map,
    map_score,
    mean_ap,
    per_class_ap,
    sentiment_ap,
    weighted_ap,
)


def fixed_arrays(n: int = 400, seed: int = 0, ties: bool = True):
    rng = np.random.default_rng(seed)
    prevalence = np.linspace(0.02, 0.5, 26)
    labels = (rng.random((n, 26)) < prevalence).astype(np.float32)
    scores = rng.normal(size=(n, 26)) + 1.2 * labels
    return labels, (np.round(scores, 1) if ties else scores)


def test_map_equals_sklearn_on_fixed_arrays():
    labels, scores = fixed_arrays()
    expected = [average_precision_score(labels[:, c], scores[:, c]) for c in range(26)]
    per_class = per_class_ap(labels, scores)
    assert list(per_class) == list(CATEGORIES)
    np.testing.assert_allclose(list(per_class.values()), expected, rtol=0, atol=1e-12)
    assert map_score(labels, scores) == pytest.approx(np.mean(expected), abs=1e-12)


def test_a_class_without_positives_is_undefined_and_left_out_with_a_warning():
    labels, scores = fixed_arrays()
    labels[:, 4] = 0  # Aversion
    with pytest.warns(UndefinedAPWarning, match="Aversion"):
        per_class = per_class_ap(labels, scores)
    assert per_class["Aversion"] is None
    defined = [average_precision_score(labels[:, c], scores[:, c]) for c in range(26) if c != 4]
    assert mean_ap(per_class) == pytest.approx(np.mean(defined), abs=1e-12)


def test_perfect_and_reversed_rankings():
    labels = np.array([[1, 0], [0, 1], [1, 0], [0, 0]], dtype=float)
    assert per_class_ap(labels, labels.copy(), ["a", "b"]) == {"a": 1.0, "b": 1.0}
    reversed_ap = per_class_ap(labels, -labels, ["a", "b"])
    assert reversed_ap["a"] == pytest.approx(average_precision_score(labels[:, 0], -labels[:, 0]))


def test_sentiment_ap_per_sentiment():
    rng = np.random.default_rng(3)
    labels = (rng.random((50, 3)) < 0.4).astype(float)
    scores = rng.random((50, 3)) + labels
    result = sentiment_ap(labels, scores)
    assert list(result) == ["Positive", "Negative", "Neutral"]
    assert result["Neutral"] == pytest.approx(average_precision_score(labels[:, 2], scores[:, 2]))


def test_bad_shapes_and_nan_scores_are_refused():
    labels, scores = fixed_arrays(20)
    with pytest.raises(ValueError, match="N x C"):
        per_class_ap(labels, scores[:, :25])
    scores[3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        per_class_ap(labels, scores)


def test_weighted_ap_equals_sklearn_with_sample_weights_and_on_resamples():
    labels, scores = fixed_arrays(150, seed=2)
    rng = np.random.default_rng(5)
    picks = [rng.integers(0, 150, 150) for _ in range(3)]
    counts = np.stack([np.bincount(p, minlength=150) for p in picks])
    result = weighted_ap(labels, scores, counts)
    for b, pick in enumerate(picks):
        for c in range(26):
            if labels[pick, c].any():
                assert result[b, c] == pytest.approx(
                    average_precision_score(labels[pick, c], scores[pick, c]), abs=1e-9
                )
                assert result[b, c] == pytest.approx(
                    average_precision_score(labels[:, c], scores[:, c], sample_weight=counts[b]), abs=1e-9
                )
            else:
                assert np.isnan(result[b, c])


def test_bootstrap_of_a_model_against_itself_is_zero():
    labels, scores = fixed_arrays()
    assert bootstrap_delta_map(labels, scores, scores, n_boot=50) == (0.0, 0.0, 0.0)


def test_bootstrap_delta_is_the_map_difference_and_inside_its_interval():
    labels, scores = fixed_arrays(ties=False)
    worse = scores + np.random.default_rng(9).normal(0, 1.0, scores.shape)
    delta, low, high = bootstrap_delta_map(labels, scores, worse, n_boot=200, seed=1)
    assert delta == pytest.approx(map_score(labels, worse) - map_score(labels, scores), abs=1e-9)
    assert low < delta < high < 0  # noise only hurts, and clearly so at this size
    assert bootstrap_delta_map(labels, scores, worse, n_boot=200, seed=1) == (delta, low, high)


def test_bootstrap_interval_narrows_as_n_grows():
    widths = {}
    for n in (200, 3200):
        labels, scores = fixed_arrays(n, seed=4, ties=False)
        new = scores + np.random.default_rng(n).normal(0, 0.7, scores.shape)
        _, low, high = bootstrap_delta_map(labels, scores, new, n_boot=200, seed=0)
        widths[n] = high - low
    # The width shrinks roughly with sqrt(N): 16x the samples -> about a quarter of the width.
    assert widths[3200] < 0.45 * widths[200], widths


def test_bootstrap_is_fast_enough_for_reports():
    import time

    labels, scores = fixed_arrays(2000, ties=False)
    started = time.perf_counter()
    bootstrap_delta_map(labels, scores, scores + 0.1 * np.sin(scores), n_boot=200)
    assert time.perf_counter() - started < 20
