"""EMOTIC data: categories and sentiment map, readers of the three layouts users hold, the one
preprocessing every runtime uses, batch iteration, and a synthetic generator (``synth``)."""

from selinet_compress.emotic.batches import iterate_batches, preprocess
from selinet_compress.emotic.categories import (
    CATEGORIES,
    DEFAULT_SENTIMENT_MAP,
    SENTIMENTS,
    sentiment_matrix,
    sentiments_from_emotions,
)
from selinet_compress.emotic.dataset import (
    LAYOUTS,
    SPLITS,
    DataWarning,
    EmoticSplit,
    detect_layout,
    open_split,
)

__all__ = [
    "CATEGORIES",
    "DEFAULT_SENTIMENT_MAP",
    "LAYOUTS",
    "SENTIMENTS",
    "SPLITS",
    "DataWarning",
    "EmoticSplit",
    "detect_layout",
    "iterate_batches",
    "open_split",
    "preprocess",
    "sentiment_matrix",
    "sentiments_from_emotions",
]
