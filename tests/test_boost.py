"""The sentiment boost of the paper's Eq. 1, as documented in boost.py."""

from __future__ import annotations

import numpy as np

from selinet_compress.emotic.categories import CATEGORIES, sentiment_matrix
from selinet_compress.model.boost import sentiment_boost, sigmoid

MEMBERSHIP = sentiment_matrix()
POSITIVE, NEGATIVE, NEUTRAL = 0, 1, 2


def test_top5_with_predicted_sentiment_are_boosted_others_are_sigmoid():
    emotions = np.linspace(-2, 1, 26)[None, :]  # ascending: the top 5 are the last five categories
    sentiments = np.array([[0.9, 0.1, 0.2]])  # only Positive is predicted
    out = sentiment_boost(emotions, sentiments, MEMBERSHIP, top_k=5, threshold=0.5)
    top5 = np.argsort(-emotions[0])[:5]
    for i in range(26):
        expected = sigmoid(emotions[0, i])
        if i in top5 and MEMBERSHIP[i, POSITIVE]:
            expected = sigmoid(emotions[0, i] + 0.9)
        np.testing.assert_allclose(out[0, i], expected, rtol=1e-12)
    assert (out[0] != sigmoid(emotions[0])).sum() == sum(MEMBERSHIP[i, POSITIVE] for i in top5)


def test_emotion_in_two_sentiments_gets_the_stronger_predicted_one():
    peace = CATEGORIES.index("Peace")  # positive and neutral
    emotions = np.full((1, 26), -5.0)
    emotions[0, peace] = 1.0
    out = sentiment_boost(emotions, np.array([[0.6, 0.0, 0.8]]), MEMBERSHIP)
    np.testing.assert_allclose(out[0, peace], sigmoid(1.0 + 0.8))


def test_boost_only_raises_scores_and_without_sentiments_is_sigmoid():
    rng = np.random.default_rng(0)
    emotions, sentiments = rng.normal(size=(50, 26)), rng.normal(0.5, 0.5, size=(50, 3))
    boosted = sentiment_boost(emotions, sentiments, MEMBERSHIP)
    assert np.all(boosted >= sigmoid(emotions) - 1e-15)
    assert np.all((boosted > sigmoid(emotions)).sum(axis=1) <= 5)
    np.testing.assert_array_equal(sentiment_boost(emotions, None, MEMBERSHIP), sigmoid(emotions))


def test_no_sentiment_predicted_means_no_boost():
    emotions = np.random.default_rng(1).normal(size=(4, 26))
    out = sentiment_boost(emotions, np.zeros((4, 3)), MEMBERSHIP, threshold=0.5)
    np.testing.assert_allclose(out, sigmoid(emotions))
