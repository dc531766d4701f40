"""EMOTIC's 26 categories, the 3 sentiments and the default emotion -> sentiment map.

Category order is the label-vector order of the EMOTIC code and Tandon-A/emotic (alphabetical).
Sentiment order is the paper's Table I encoding: [Positive, Negative, Neutral].
EMOTIC publishes no sentiment labels; the paper ORs a per-emotion sentiment over a person's
emotions (multi-hot). No table was published, so this map, which agrees with the paper's Table I
and EMOTIC's category definitions, is the documented default; a model config may override it.
"""

from __future__ import annotations

import numpy as np

CATEGORIES: tuple[str, ...] = (
    "Affection", "Anger", "Annoyance", "Anticipation", "Aversion", "Confidence", "Disapproval",
    "Disconnection", "Disquietment", "Doubt/Confusion", "Embarrassment", "Engagement", "Esteem",
    "Excitement", "Fatigue", "Fear", "Happiness", "Pain", "Peace", "Pleasure", "Sadness",
    "Sensitivity", "Suffering", "Surprise", "Sympathy", "Yearning",
)  # fmt: skip

SENTIMENTS: tuple[str, ...] = ("Positive", "Negative", "Neutral")

_GROUPS: dict[tuple[str, ...], tuple[str, ...]] = {
    ("Positive",): ("Affection", "Confidence", "Esteem", "Excitement", "Happiness", "Pleasure"),
    ("Positive", "Neutral"): ("Peace", "Sensitivity", "Anticipation", "Engagement", "Sympathy"),
    ("Neutral",): ("Surprise",),
    ("Negative", "Neutral"): ("Doubt/Confusion", "Disconnection", "Fatigue", "Yearning"),
    ("Negative",): ("Anger", "Annoyance", "Aversion", "Disapproval", "Disquietment",
                    "Embarrassment", "Fear", "Pain", "Sadness", "Suffering"),
}  # fmt: skip

DEFAULT_SENTIMENT_MAP: dict[str, list[str]] = {
    emotion: list(sentiments) for sentiments, emotions in _GROUPS.items() for emotion in emotions
}
assert sorted(DEFAULT_SENTIMENT_MAP) == sorted(CATEGORIES)


def sentiment_matrix(
    sentiment_map: dict[str, list[str]] | None = None,
    categories: tuple[str, ...] | list[str] = CATEGORIES,
    sentiments: tuple[str, ...] | list[str] = SENTIMENTS,
) -> np.ndarray:
    """(n_categories, n_sentiments) 0/1 matrix: M[i, j] = 1 when emotion i belongs to sentiment j."""
    sentiment_map = DEFAULT_SENTIMENT_MAP if sentiment_map is None else sentiment_map
    matrix = np.zeros((len(categories), len(sentiments)), dtype=np.float32)
    for i, emotion in enumerate(categories):
        for sentiment in sentiment_map[emotion]:
            matrix[i, list(sentiments).index(sentiment)] = 1.0
    return matrix


def sentiments_from_emotions(labels: np.ndarray, matrix: np.ndarray | None = None) -> np.ndarray:
    """Multi-hot sentiment targets: the OR over a person's emotions (paper, Table I)."""
    matrix = sentiment_matrix() if matrix is None else matrix
    return (np.asarray(labels, dtype=np.float32) @ matrix > 0).astype(np.float32)
