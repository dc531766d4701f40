"""A synthetic EMOTIC: the same files and label statistics, with cues a small CNN can learn.

For demos and tests only — never a stand-in for EMOTIC results. EMOTIC cannot be fetched here,
yet compression's cost in AP only shows on a model that has learnt something; this generator
makes a data set on which a briefly trained SeLiNet scores far above chance but not perfectly.

What it draws (one scene per image, 1-2 annotated persons):

* labels with EMOTIC-like prevalence (Engagement ~55 %, Embarrassment / Aversion ~1 %), 1-4 per
  person, correlated through a per-image mood (positive / negative / neutral);
* per emotion one visual cue, shown with probability ``p_show`` when the emotion is present and
  ``p_false`` when it is absent (so even a perfect cue detector does not reach AP 1):
  - colour: a band of the emotion's colour on the torso (Happiness / Excitement and Anticipation /
    Confidence differ only by a small shift of green: fine-grained, the kind of difference int8
    rounding can blur);
  - texture: a striped / checked / dotted patch on the body;
  - shape: a white badge (ring, triangle, star, and an X vs a + for Pain vs Suffering);
  - placement: the same magenta marker on the head (Yearning) or at the feet (Sensitivity);
  - context only (outside every body box, so only the whole-image branch sees it): a sky band
    (Peace), a dark scene (Aversion), a second person in rose or teal (Affection, Sympathy),
    a red sign (Disapproval), confetti (Embarrassment);
* distractors: random shapes and colours, noise patches, unlabelled markers, per-image gain,
  colour cast and sensor noise, JPEG compression.

Identical tensors in every layout: each image is JPEG-encoded, decoded again with the readers'
decoder and cropped / resized with the readers' functions; the CSV and mat layouts store the JPEG
bytes, the array layout stores the decoded, cropped, resized pixels. Reading any layout therefore
gives bit-identical tensors (same OpenCV build), which a test checks.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from selinet_compress.emotic.categories import CATEGORIES, DEFAULT_SENTIMENT_MAP
from selinet_compress.emotic.dataset import SPLITS, WRITERS, register_layouts
from selinet_compress.emotic.images import body_and_context, clamp_bbox, decode_image_bytes, encode_jpeg
from selinet_compress.emotic.records import Person
from selinet_compress.errors import UserError

GENERATOR_VERSION = 1
FOLDER = "synthetic/images"
JPEG_QUALITY = 92
PURPOSE = "synthetic data for demos and tests of selinet-compress; never a stand-in for EMOTIC results"

# Share of persons carrying each category, close to EMOTIC's training split.
PREVALENCE: dict[str, float] = {
    "Engagement": 0.55, "Happiness": 0.27, "Anticipation": 0.25, "Pleasure": 0.20, "Excitement": 0.18,
    "Confidence": 0.17, "Peace": 0.10, "Affection": 0.09, "Disconnection": 0.08, "Doubt/Confusion": 0.06,
    "Disquietment": 0.05, "Sympathy": 0.045, "Esteem": 0.035, "Sadness": 0.035, "Fatigue": 0.03,
    "Annoyance": 0.03, "Surprise": 0.03, "Yearning": 0.025, "Suffering": 0.02, "Fear": 0.02,
    "Disapproval": 0.02, "Anger": 0.015, "Sensitivity": 0.015, "Aversion": 0.012, "Pain": 0.012,
    "Embarrassment": 0.01,
}  # fmt: skip
assert sorted(PREVALENCE) == sorted(CATEGORIES)

MOODS = ("positive", "negative", "neutral")
MOOD_PROBABILITY = np.array([0.6, 0.25, 0.15])
# How a mood scales the chance of each sentiment group (normalised below so prevalence holds).
_MOOD_FACTOR = {
    ("Positive",): (1.45, 0.30, 0.70),
    ("Neutral", "Positive"): (1.20, 0.70, 1.10),
    ("Neutral",): (0.80, 1.20, 1.60),
    ("Negative", "Neutral"): (0.50, 1.80, 1.30),
    ("Negative",): (0.30, 2.90, 0.90),
}


@dataclass(frozen=True)
class Cue:
    """How one emotion shows: ``kind`` names a renderer; ``value`` its colour / pattern / shape."""

    kind: str  # colour | texture | shape | place | context
    value: object
    p_show: float
    p_false: float


def _cue(kind: str, value: object, p_show: float, p_false: float, emotion: str) -> Cue:
    # A false cue rate below the prevalence keeps rare classes learnable (as in EMOTIC, rare
    # classes are hard but not hopeless).
    return Cue(kind, value, p_show, min(p_false, 0.6 * PREVALENCE[emotion]))


_CUE_TABLE: dict[str, tuple[str, object, float, float]] = {
    # colour bands on the torso (RGB). Two fine-grained pairs of common emotions differ only by
    # a small shift of the green channel: telling them apart needs precise activations, which is
    # where int8 rounding shows.
    "Engagement": ("colour", (40, 160, 60), 0.92, 0.03),
    "Happiness": ("colour", (250, 212, 40), 0.92, 0.03),
    "Excitement": ("colour", (250, 168, 40), 0.90, 0.03),  # Happiness's yellow, less green
    "Anticipation": ("colour", (40, 172, 210), 0.90, 0.03),
    "Confidence": ("colour", (40, 128, 210), 0.90, 0.03),  # Anticipation's cyan, less green
    "Pleasure": ("colour", (240, 130, 200), 0.90, 0.03),
    "Anger": ("colour", (205, 25, 30), 0.88, 0.02),
    "Annoyance": ("colour", (120, 60, 170), 0.88, 0.02),
    # texture patches
    "Disconnection": ("texture", "horizontal", 0.85, 0.03),
    "Fatigue": ("texture", "vertical", 0.85, 0.03),
    "Doubt/Confusion": ("texture", "checker", 0.85, 0.03),
    "Disquietment": ("texture", "diagonal", 0.85, 0.03),
    "Sadness": ("texture", "dots", 0.85, 0.03),
    # white badges
    "Surprise": ("shape", "ring", 0.82, 0.02),
    "Fear": ("shape", "triangle", 0.82, 0.02),
    "Esteem": ("shape", "star", 0.82, 0.02),
    "Pain": ("shape", "x", 0.82, 0.02),  # fine-grained pair: the same bars,
    "Suffering": ("shape", "plus", 0.82, 0.02),  # turned by 45 degrees
    # one marker, two places
    "Yearning": ("place", "head", 0.80, 0.02),
    "Sensitivity": ("place", "feet", 0.80, 0.02),
    # outside the body box only
    "Peace": ("context", "sky", 0.85, 0.02),
    "Aversion": ("context", "dark", 0.85, 0.02),
    "Affection": ("context", (225, 80, 120), 0.85, 0.02),
    "Sympathy": ("context", (60, 170, 160), 0.85, 0.02),
    "Disapproval": ("context", "sign", 0.85, 0.02),
    "Embarrassment": ("context", "confetti", 0.85, 0.02),
}
CUES: dict[str, Cue] = {name: _cue(*spec, name) for name, spec in _CUE_TABLE.items()}
assert sorted(CUES) == sorted(CATEGORIES)
CONTEXT_ONLY = tuple(name for name in CATEGORIES if CUES[name].kind == "context")
MARKER = (220, 40, 220)
WHITE = (238, 238, 238)


# ---------------------------------------------------------------------------------------------
# Labels


def _mood_table() -> np.ndarray:
    """(26, 3) factor by which each mood scales each category's chance, mean 1 over moods."""
    table = np.zeros((len(CATEGORIES), len(MOODS)))
    for i, name in enumerate(CATEGORIES):
        factors = np.array(_MOOD_FACTOR[tuple(sorted(DEFAULT_SENTIMENT_MAP[name]))])
        table[i] = factors / (factors @ MOOD_PROBABILITY)
    return table


_PREVALENCE = np.array([PREVALENCE[c] for c in CATEGORIES])
_MOOD = _mood_table()


def sample_labels(rng: np.random.Generator, mood: int, fixed: dict[int, bool] | None = None) -> np.ndarray:
    """A 0/1 vector of 26 with 1-4 ones; ``fixed`` forces some categories (shared scene labels)."""
    p = np.clip(_PREVALENCE * _MOOD[:, mood], 0.0, 0.95)
    labels = rng.random(len(CATEGORIES)) < p
    for index, value in (fixed or {}).items():
        labels[index] = value
    chosen = np.flatnonzero(labels)
    if len(chosen) > 4:  # keep 4: the forced ones first, the rest drawn with weights p
        forced = [int(i) for i in chosen if (fixed or {}).get(int(i))][:4]
        free = [int(i) for i in chosen if int(i) not in forced]
        extra = 4 - len(forced)
        keep = forced + (
            list(rng.choice(free, size=extra, replace=False, p=p[free] / p[free].sum())) if extra else []
        )
        labels[:] = False
        labels[keep] = True
    if not labels.any():
        free = [i for i in range(len(CATEGORIES)) if i not in (fixed or {})]
        labels[rng.choice(free, p=p[free] / p[free].sum())] = True
    return labels


def _vad(rng: np.random.Generator, mood: int, labels: np.ndarray) -> np.ndarray:
    valence = (7.0, 3.5, 5.5)[mood]
    arousal = (
        5.0
        + 1.5
        * labels[[CATEGORIES.index("Excitement"), CATEGORIES.index("Anger"), CATEGORIES.index("Fear")]].any()
    )
    dominance = 6.0 - 1.5 * labels[[CATEGORIES.index("Fear"), CATEGORIES.index("Embarrassment")]].any()
    return np.clip(rng.normal([valence, arousal, dominance], 1.3), 1, 10)


def _annotations(
    rng: np.random.Generator, names: list[str], vad: np.ndarray, split: str
) -> tuple[tuple[float, float, float], tuple, tuple]:
    """(combined VAD, per-annotator categories, per-annotator VAD). Train has one annotator with
    integer ratings; val/test have 2-3 whose categories' union is the person's label set and whose
    ratings average to the combined VAD."""
    if split == "train":
        return tuple(float(v) for v in np.round(vad)), (), ()
    count = int(rng.integers(2, 4))
    assignment = [[] for _ in range(count)]
    for name in names:
        mask = rng.random(count) < 0.6
        mask[rng.integers(count)] = True
        for a in np.flatnonzero(mask):
            assignment[a].append(name)
    for a in range(count):
        if not assignment[a]:
            assignment[a].append(names[int(rng.integers(len(names)))])
    ratings = np.clip(np.round(rng.normal(vad, 0.8, size=(count, 3))), 1, 10)
    combined = tuple(float(v) for v in ratings.mean(axis=0))
    return (
        combined,
        tuple(tuple(sorted(a, key=CATEGORIES.index)) for a in assignment),
        tuple(tuple(float(v) for v in r) for r in ratings),
    )


# ---------------------------------------------------------------------------------------------
# Drawing (cv2 primitives on H x W x 3 uint8 RGB arrays; colours are RGB tuples)


def _muted(rng: np.random.Generator) -> tuple[int, int, int]:
    base = rng.integers(70, 180)
    return tuple(int(np.clip(base + d, 0, 255)) for d in rng.integers(-35, 36, size=3))


def _saturated(rng: np.random.Generator) -> tuple[int, int, int]:
    import colorsys

    r, g, b = colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.5, 1.0), rng.uniform(0.5, 1.0))
    return int(r * 255), int(g * 255), int(b * 255)


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A vertical colour gradient with soft blobs, built on a 6 x 8 grid and upsampled (fast)."""
    import cv2

    top, bottom = np.array(_muted(rng), np.float32), np.array(_muted(rng), np.float32)
    ramp = np.linspace(0.0, 1.0, 6, dtype=np.float32)[:, None, None]
    grid = top * (1 - ramp) + bottom * ramp + rng.normal(0, 18, size=(6, 8, 3)).astype(np.float32)
    image = cv2.resize(grid, (width, height), interpolation=cv2.INTER_LINEAR)
    return np.clip(image, 0, 255, out=image).astype(np.uint8)


def _texture(size: int, pattern: str) -> np.ndarray:
    """size x size 0/1 mask of a texture with a period of a fifth of the patch."""
    period = max(4, size // 5)
    y, x = np.mgrid[0:size, 0:size]
    if pattern == "horizontal":
        mask = (y % period) < period // 2
    elif pattern == "vertical":
        mask = (x % period) < period // 2
    elif pattern == "checker":
        mask = ((x // (period // 2 + 1)) + (y // (period // 2 + 1))) % 2 == 0
    elif pattern == "diagonal":
        mask = ((x + y) % period) < period // 2
    elif pattern == "dots":
        mask = ((x % period - period / 2) ** 2 + (y % period - period / 2) ** 2) < (period / 3.2) ** 2
    else:  # noise (a distractor)
        mask = np.random.default_rng(size).random((size, size)) < 0.5
    return mask


def _draw_texture(image: np.ndarray, x: int, y: int, size: int, pattern: str) -> None:
    region = image[y : y + size, x : x + size]
    mask = _texture(size, pattern)[: region.shape[0], : region.shape[1]]
    region[mask] = (30, 30, 30)
    region[~mask] = (225, 225, 225)


def _draw_shape(image: np.ndarray, cx: int, cy: int, size: int, shape: str, colour=WHITE) -> None:
    import cv2

    r = max(3, size // 2)
    thick = max(2, size // 5)
    if shape == "ring":
        cv2.circle(image, (cx, cy), r - thick // 2, colour, thick, cv2.LINE_AA)
    elif shape == "triangle":
        points = np.array([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], np.int32)
        cv2.fillPoly(image, [points], colour, cv2.LINE_AA)
    elif shape == "star":
        angles = np.pi / 2 + np.arange(10) * np.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, r, r * 0.45)
        points = np.stack([cx + radii * np.cos(angles), cy - radii * np.sin(angles)], 1).astype(np.int32)
        cv2.fillPoly(image, [points], colour, cv2.LINE_AA)
    elif shape == "x":
        cv2.line(image, (cx - r, cy - r), (cx + r, cy + r), colour, thick, cv2.LINE_AA)
        cv2.line(image, (cx - r, cy + r), (cx + r, cy - r), colour, thick, cv2.LINE_AA)
    elif shape == "plus":
        cv2.line(image, (cx - r, cy), (cx + r, cy), colour, thick, cv2.LINE_AA)
        cv2.line(image, (cx, cy - r), (cx, cy + r), colour, thick, cv2.LINE_AA)
    else:  # ellipse / hexagon distractors
        cv2.ellipse(image, (cx, cy), (r, max(2, r // 2)), 30, 0, 360, colour, -1, cv2.LINE_AA)


def _draw_figure(
    image: np.ndarray,
    box: tuple[int, int, int, int],
    torso: list[tuple[int, int, int]],
    rng: np.random.Generator,
) -> dict[str, tuple[int, int, int, int]]:
    """A simple person in ``box``: head, torso in colour bands, legs. Returns its part boxes."""
    import cv2

    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    skin = tuple(
        int(v)
        for v in np.array([(224, 180, 150), (190, 140, 100), (140, 95, 65), (95, 65, 45)])[rng.integers(4)]
        + rng.integers(-12, 13, 3)
    )
    head_r = max(4, int(min(w * 0.16, h * 0.09)))
    head = (x1 + w // 2, y1 + int(0.05 * h) + head_r)
    cv2.circle(image, head, head_r, skin, -1, cv2.LINE_AA)
    tx1, tx2 = x1 + int(0.18 * w), x2 - int(0.18 * w)
    ty1, ty2 = head[1] + head_r + max(1, int(0.02 * h)), y1 + int(0.62 * h)
    bands = torso or [_muted(rng)]
    edges = np.linspace(ty1, ty2, len(bands) + 1).astype(int)
    for colour, top, bottom in zip(bands, edges[:-1], edges[1:], strict=True):
        image[top:bottom, tx1:tx2] = colour
    legs = tuple(int(v) for v in rng.integers(30, 90, 3))
    leg_w = max(2, (tx2 - tx1) // 3)
    image[ty2 : y1 + int(0.97 * h), tx1 : tx1 + leg_w] = legs
    image[ty2 : y1 + int(0.97 * h), tx2 - leg_w : tx2] = legs
    arm = max(2, int(0.07 * w))
    image[ty1 : ty1 + int(0.3 * h), tx1 - arm : tx1] = skin
    image[ty1 : ty1 + int(0.3 * h), tx2 : tx2 + arm] = skin
    return {
        "head": (head[0] - head_r, head[1] - head_r, head[0] + head_r, head[1] + head_r),
        "torso": (tx1, ty1, tx2, ty2),
        "legs": (tx1, ty2, tx2, y1 + int(0.97 * h)),
    }


def _outside(rng: np.random.Generator, width: int, height: int, boxes: list, margin: int) -> tuple[int, int]:
    """A random point at least ``margin`` away from every box (best effort)."""
    for _ in range(30):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        if all(
            not (b[0] - margin <= x <= b[2] + margin and b[1] - margin <= y <= b[3] + margin) for b in boxes
        ):
            return x, y
    return int(rng.integers(0, width)), int(rng.integers(0, height))


def _draw_context(image: np.ndarray, shown: set[str], boxes: list, rng: np.random.Generator) -> None:
    """Scene cues, drawn on the whole canvas; the caller restores the body boxes afterwards."""
    import cv2

    height, width = image.shape[:2]
    if "Peace" in shown:  # sky above, meadow below
        sky = int(0.3 * height)
        image[:sky] = (np.array([135, 200, 235]) * np.linspace(0.85, 1.0, sky)[:, None, None]).astype(
            np.uint8
        )
        image[height - int(0.18 * height) :] = (90, 170, 80)
    if "Aversion" in shown:  # a dark scene
        image[:] = (image.astype(np.uint16) * 2 // 5).astype(np.uint8)
    for name in ("Affection", "Sympathy"):
        if name in shown:  # another person beside the annotated one
            size = int(min(width, height) * rng.uniform(0.22, 0.32))
            cx, cy = _outside(rng, width, height, boxes, size // 2)
            other = (cx - size // 3, cy - size // 2, cx + size // 3, cy + size // 2)
            _draw_figure(image, other, [CUES[name].value], rng)
    if "Disapproval" in shown:  # a red sign
        size = int(min(width, height) * rng.uniform(0.16, 0.24))
        cx, cy = _outside(rng, width, height, boxes, size // 2)
        cv2.rectangle(
            image, (cx - size // 2, cy - size // 3), (cx + size // 2, cy + size // 3), (150, 20, 30), -1
        )
        cv2.rectangle(image, (cx - size // 3, cy - size // 12), (cx + size // 3, cy + size // 12), WHITE, -1)
    if "Embarrassment" in shown:  # confetti
        for _ in range(int(rng.integers(40, 80))):
            x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
            cv2.circle(image, (x, y), int(rng.integers(2, 5)), _saturated(rng), -1)


@dataclass
class _PersonPlan:
    box: tuple[int, int, int, int]
    labels: np.ndarray  # bool (26,)
    shown: set[str]  # cues drawn for this person (body cues) / the scene (context cues)


def _show(rng: np.random.Generator, labels: np.ndarray, names: tuple[str, ...]) -> set[str]:
    shown = set()
    for name in names:
        cue = CUES[name]
        if rng.random() < (cue.p_show if labels[CATEGORIES.index(name)] else cue.p_false):
            shown.add(name)
    return shown


_BODY_CUES = tuple(n for n in CATEGORIES if CUES[n].kind != "context")


def _draw_person(image: np.ndarray, plan: _PersonPlan, rng: np.random.Generator) -> None:
    x1, y1, x2, y2 = plan.box
    w = x2 - x1
    colours = [CUES[n].value for n in CATEGORIES if n in plan.shown and CUES[n].kind == "colour"]
    if rng.random() < 0.3:
        colours.append(_muted(rng))  # a plain band: clothes are not all cues
    rng.shuffle(colours)
    parts = _draw_figure(image, plan.box, colours, rng)
    tx1, ty1, tx2, ty2 = parts["torso"]
    _, ly1, _, ly2 = parts["legs"]
    patch = max(8, int(0.3 * w))
    slots = [
        (x1 + 1, ly1),
        (x2 - patch - 1, ly1),
        (x1 + 1, ty1 + (ty2 - ty1) // 3),
        (x2 - patch - 1, ty1 + (ty2 - ty1) // 3),
        (x1 + (w - patch) // 2, ly1 + (ly2 - ly1) // 3),
    ]
    order = rng.permutation(len(slots))
    textures = [CUES[n].value for n in CATEGORIES if n in plan.shown and CUES[n].kind == "texture"]
    if rng.random() < 0.25:
        textures.append("noise")
    for pattern, slot in zip(textures, order, strict=False):
        sx, sy = slots[slot]
        _draw_texture(image, sx, min(sy, y2 - patch), patch, str(pattern))
    badge = max(8, int(0.2 * w))
    badge_slots = [
        (x1 + badge // 2 + 1, y1 + badge // 2 + 1),
        (x2 - badge // 2 - 1, y1 + badge // 2 + 1),
        ((tx1 + tx2) // 2, (ty1 + ty2) // 2),
        (x1 + badge // 2 + 1, (ty1 + ty2) // 2),
        (x2 - badge // 2 - 1, (ty1 + ty2) // 2),
    ]
    order = rng.permutation(len(badge_slots))
    shapes = [CUES[n].value for n in CATEGORIES if n in plan.shown and CUES[n].kind == "shape"]
    if rng.random() < 0.25:
        shapes.append("ellipse")
    for shape, slot in zip(shapes, order, strict=False):
        _draw_shape(image, *badge_slots[slot], badge, str(shape))
    marker = max(6, int(0.13 * w))
    places = {"head": (parts["head"][1] - marker // 2), "feet": (y2 - marker - 1)}
    for name in ("Yearning", "Sensitivity"):
        if name in plan.shown:
            top = max(y1, places[CUES[name].value])
            image[top : top + marker, x1 + (w - marker) // 2 : x1 + (w + marker) // 2] = MARKER
    if rng.random() < 0.08:  # an unlabelled marker at the waist
        image[ty2 - marker : ty2, x1 + (w - marker) // 2 : x1 + (w + marker) // 2] = MARKER


def _boxes(rng: np.random.Generator, width: int, height: int, count: int) -> list[tuple[int, int, int, int]]:
    boxes = []
    lanes = np.linspace(0, width, count + 1).astype(int)
    for lane in range(count):
        lane_w = lanes[lane + 1] - lanes[lane]
        w = int(min(lane_w - 4, width * rng.uniform(0.22, 0.42)))
        h = int(height * rng.uniform(0.5, 0.92))
        x1 = int(lanes[lane] + rng.integers(0, max(1, lane_w - w)))
        y1 = int(rng.integers(0, max(1, height - h)))
        boxes.append((x1, y1, x1 + w, y1 + h))
    return boxes


def render_image(
    rng: np.random.Generator, plans_labels: list[np.ndarray], noise: np.ndarray
) -> tuple[np.ndarray, list[tuple[int, int, int, int]], list[set[str]]]:
    """One scene with one person per label vector: (RGB image, body boxes, cues shown per person)."""
    import cv2

    width, height = int(rng.integers(320, 641)), int(rng.integers(240, 481))
    boxes = _boxes(rng, width, height, len(plans_labels))
    background = _background(rng, width, height)
    # Scene (context-only) cues follow the first person's labels; later persons share them.
    scene = _show(rng, plans_labels[0], CONTEXT_ONLY)
    image = background.copy()
    _draw_context(image, scene, boxes, rng)
    for x1, y1, x2, y2 in boxes:  # context cues never reach into a body box
        image[y1:y2, x1:x2] = background[y1:y2, x1:x2]
    for _ in range(int(rng.integers(3, 7))):  # distractors, anywhere
        colour = _saturated(rng) if rng.random() < 0.3 else _muted(rng)
        cx, cy = int(rng.integers(0, width)), int(rng.integers(0, height))
        size = int(rng.integers(8, max(9, min(width, height) // 5)))
        if rng.random() < 0.5:
            cv2.rectangle(image, (cx - size, cy - size // 2), (cx + size, cy + size // 2), colour, -1)
        else:
            cv2.circle(image, (cx, cy), size // 2, colour, -1, cv2.LINE_AA)
    shown_all = []
    for box, labels in zip(boxes, plans_labels, strict=True):
        plan = _PersonPlan(box, labels, _show(rng, labels, _BODY_CUES))
        _draw_person(image, plan, rng)
        shown_all.append(plan.shown | scene)
    # Photometric jitter and sensor noise (a window of a pre-drawn noise field: fast).
    gain = rng.uniform(0.88, 1.12) * rng.uniform(0.96, 1.04, size=3)
    bias = rng.uniform(-10, 10)
    oy, ox = int(rng.integers(0, noise.shape[0] - height)), int(rng.integers(0, noise.shape[1] - width))
    out = image.astype(np.float32)
    out *= gain.astype(np.float32)
    out += noise[oy : oy + height, ox : ox + width]
    out += np.float32(bias)
    return np.clip(out, 0, 255, out=out).astype(np.uint8), boxes, shown_all


# ---------------------------------------------------------------------------------------------
# Data sets


@dataclass
class SynthResult:
    """What ``generate`` wrote: where, which layout, persons per split, label statistics, time."""

    path: Path
    layout: str
    sizes: dict[str, int]
    seed: int
    seconds: float
    prevalence: dict[str, dict[str, float]]
    labels_per_person: dict[str, float]
    cue_rate: dict[str, float]

    def to_json(self) -> dict:
        return {
            "purpose": PURPOSE,
            "generator_version": GENERATOR_VERSION,
            "layout": self.layout,
            "sizes": self.sizes,
            "seed": self.seed,
            "seconds": round(self.seconds, 2),
            "jpeg_quality": JPEG_QUALITY,
            "labels_per_person": self.labels_per_person,
            "prevalence": self.prevalence,
            "cue_shown_when_label_present": self.cue_rate,
        }


def _split_persons(
    rng: np.random.Generator, n: int, split: str, writer, progress: Callable[[int], None], stats: dict
) -> None:
    noise = rng.normal(0.0, 5.0, size=(800, 1000, 3)).astype(np.float32)
    written = 0
    image_number = 0
    while written < n:
        count = 2 if (n - written >= 2 and rng.random() < 0.15) else 1
        mood = int(rng.choice(len(MOODS), p=MOOD_PROBABILITY))
        labels = [sample_labels(rng, mood)]
        for _ in range(count - 1):  # the scene's (context-only) emotions are shared
            shared = {CATEGORIES.index(c): bool(labels[0][CATEGORIES.index(c)]) for c in CONTEXT_ONLY}
            labels.append(sample_labels(rng, mood, fixed=shared))
        image, boxes, shown = render_image(rng, labels, noise)
        jpeg = encode_jpeg(image, JPEG_QUALITY)
        decoded = decode_image_bytes(jpeg, "synthetic image")
        height, width = decoded.shape[:2]
        filename = f"{split}_{image_number:06d}.jpg"
        persons, bodies, contexts = [], [], []
        for index, (box, person_labels, cues) in enumerate(zip(boxes, labels, shown, strict=True)):
            names = [CATEGORIES[i] for i in np.flatnonzero(person_labels)]
            vad, annotators, annotator_vad = _annotations(rng, names, _vad(rng, mood, person_labels), split)
            persons.append(
                Person(
                    folder=FOLDER,
                    filename=filename,
                    bbox=tuple(float(v) for v in box),
                    categories=tuple(names),
                    vad=vad,
                    image_size=(width, height),
                    gender=("Male", "Female")[int(rng.integers(2))],
                    age=("Adult", "Adult", "Teenager", "Kid")[int(rng.integers(4))],
                    person=index,
                    annotators=annotators,
                    annotator_vad=annotator_vad,
                )
            )
            body, context = body_and_context(decoded, clamp_bbox(box, width, height)[0])
            bodies.append(body)
            contexts.append(context)
            stats["labels"].append(person_labels)
            stats["shown"].append([name in cues for name in CATEGORIES])
        writer.add(FOLDER, filename, jpeg, persons, bodies=bodies, contexts=contexts)
        written += count
        image_number += 1
        progress(count)


def _stats_summary(labels: np.ndarray, shown: np.ndarray) -> tuple[dict[str, float], float, dict[str, float]]:
    prevalence = {c: round(float(labels[:, i].mean()), 4) for i, c in enumerate(CATEGORIES)}
    per_person = round(float(labels.sum(axis=1).mean()), 3)
    present = labels.sum(axis=0)
    rate = {
        c: (round(float((shown[:, i] & labels[:, i]).sum() / present[i]), 3) if present[i] else None)
        for i, c in enumerate(CATEGORIES)
    }
    return prevalence, per_person, rate


def generate(
    out: str | os.PathLike,
    layout: str = "arrays",
    sizes: dict[str, int] | None = None,
    seed: int = 0,
    force: bool = False,
    progress: bool = False,
) -> SynthResult:
    """Write a synthetic EMOTIC to ``out`` in ``layout`` ("arrays", "csv" or "mat").

    ``sizes`` gives persons per split (default 2,000 / 300 / 600; a split of 0 is not written).
    The same seed gives the same persons, labels and pixels in every layout. The data set is
    built in a hidden folder beside ``out`` and renamed into place at the end, so an interrupted
    run never leaves a half data set under ``out``. A non-empty ``out`` is refused unless ``force``.
    """
    register_layouts()
    from selinet_compress.io import write_json_atomic

    sizes = dict(sizes or {"train": 2000, "val": 300, "test": 600})
    unknown = [s for s in sizes if s not in SPLITS]
    if unknown:
        raise UserError(f"unknown split(s) {unknown}; splits are {', '.join(SPLITS)}")
    if any(n < 0 for n in sizes.values()) or not any(sizes.values()):
        raise UserError("give a non-negative number of persons per split, at least one split above 0")
    writer_cls = WRITERS.get(layout)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} exists and is a file")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise UserError(f"{out} exists and is not empty; pass --force to replace it")

    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    started = time.perf_counter()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=sum(sizes.values()), unit="person", desc=f"synth {layout}", leave=False)
    try:
        writer = writer_cls(staging)
        summary: dict[str, tuple] = {}
        for split_number, split in enumerate(SPLITS):
            n = sizes.get(split, 0)
            if n == 0:
                continue
            rng = np.random.default_rng([seed, split_number, GENERATOR_VERSION])
            stats: dict[str, list] = {"labels": [], "shown": []}
            writer.begin(split, n)
            _split_persons(rng, n, split, writer, bar.update if bar else (lambda _n: None), stats)
            writer.end()
            summary[split] = _stats_summary(np.array(stats["labels"], bool), np.array(stats["shown"], bool))
        writer.close()
        seconds = time.perf_counter() - started
        result = SynthResult(
            out,
            layout,
            {s: sizes.get(s, 0) for s in SPLITS},
            seed,
            seconds,
            {s: v[0] for s, v in summary.items()},
            {s: v[1] for s, v in summary.items()},
            summary.get("train", next(iter(summary.values())))[2],
        )
        write_json_atomic(staging / "synth.json", result.to_json())
        _replace_dir(staging, out)
    finally:
        if bar is not None:
            bar.close()
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return result


def _replace_dir(staging: Path, out: Path) -> None:
    """Move the finished ``staging`` folder to ``out`` (replacing it when it exists)."""
    if not out.exists():
        os.replace(staging, out)
        return
    trash = out.parent / f".{out.name}.old-{os.getpid()}"
    os.replace(out, trash)
    try:
        os.replace(staging, out)
    except OSError:
        os.replace(trash, out)
        raise
    shutil.rmtree(trash, ignore_errors=True)


__all__ = ["CUES", "PREVALENCE", "PURPOSE", "SynthResult", "generate", "render_image", "sample_labels"]
