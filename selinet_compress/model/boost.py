"""The paper's sentiment-boost post-processing, on numpy arrays so it serves every runtime."""

from __future__ import annotations

import numpy as np


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function."""
    x = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x)
    positive = x >= 0
    out[positive] = 1.0 / (1.0 + np.exp(-x[positive]))
    exp_x = np.exp(x[~positive])
    out[~positive] = exp_x / (1.0 + exp_x)
    return out


def sentiment_boost(
    emotions: np.ndarray,
    sentiments: np.ndarray | None,
    membership: np.ndarray,
    top_k: int = 5,
    threshold: float = 0.5,
) -> np.ndarray:
    """Boosted emotion scores (N x C, in (0, 1)) from raw emotion (N x C) and sentiment (N x S) scores.

    The paper (Sec. IV-B3, Eq. 1) takes the top-5 emotion scores E_i of a person and sets
    ``E_i = sigmoid(E_i + S_j)`` where emotion i belongs to sentiment j. Our interpretation, which
    keeps every score of a person on one scale so that they can be ranked together for AP:

    * a sentiment j is *predicted* when its raw score S_j exceeds ``threshold`` (0.5 for the
      paper's L2 loss on 0/1 targets);
    * each of the ``top_k`` highest-scoring emotions whose sentiment set (``membership[i]``) holds
      at least one predicted sentiment becomes ``sigmoid(E_i + S_j)``, with S_j the largest
      predicted score among its sentiments (Peace is positive and neutral: the stronger counts);
    * every other score (outside the top-k, or with no predicted sentiment) becomes ``sigmoid(E_i)``.

    Because a predicted S_j is positive, a boost only ever raises a score: emotions that agree
    with the predicted sentiment move up the ranking. ``sentiments=None`` (a model without the
    sentiment head) returns ``sigmoid(emotions)``, i.e. no boost.
    """
    emotions = np.asarray(emotions, dtype=np.float64)
    if emotions.ndim != 2:
        raise ValueError(f"emotions must be N x C, got shape {emotions.shape}")
    if sentiments is None:
        return sigmoid(emotions)
    sentiments = np.asarray(sentiments, dtype=np.float64)
    membership = np.asarray(membership, dtype=bool)
    if sentiments.shape[0] != emotions.shape[0] or membership.shape != (
        emotions.shape[1],
        sentiments.shape[1],
    ):
        raise ValueError(
            f"shape mismatch: emotions {emotions.shape}, sentiments {sentiments.shape}, "
            f"membership {membership.shape}"
        )
    k = min(top_k, emotions.shape[1])
    # Largest predicted sentiment score for every (person, emotion); -inf where none is predicted.
    predicted = np.where(sentiments > threshold, sentiments, -np.inf)  # N x S
    boost = np.where(membership[None, :, :], predicted[:, None, :], -np.inf).max(axis=2)  # N x C
    top = np.argsort(-emotions, axis=1, kind="stable")[:, :k]
    in_top = np.zeros_like(emotions, dtype=bool)
    np.put_along_axis(in_top, top, True, axis=1)
    boosted = in_top & np.isfinite(boost)
    return sigmoid(np.where(boosted, emotions + np.where(boosted, boost, 0.0), emotions))
