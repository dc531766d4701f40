"""Image decoding, body cropping and resizing exactly as the EMOTIC preprocessing does it.

The reference preprocessing (Tandon-A/emotic ``mat2py.py``, which made the ``*_arr.npy`` files most
users hold) decodes with OpenCV, converts BGR to RGB, clamps the body box to the image, crops
``image[y1:y2, x1:x2]`` and resizes with ``cv2.resize`` (bilinear) to 128 x 128 (body) and
224 x 224 (context). Doing the same here makes the CSV / mat readers give the same pixels as the
users' array files, and makes the synthetic generator's array layout bit-identical to its
JPEG layouts (it derives its arrays through these very functions).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from selinet_compress.errors import UserError

BODY_SIZE = 128
CONTEXT_SIZE = 224


def decode_image_bytes(data: bytes, where: str = "image") -> np.ndarray:
    """JPEG/PNG bytes -> H x W x 3 uint8 RGB (grey and RGBA images become RGB)."""
    import cv2

    buffer = np.frombuffer(data, dtype=np.uint8)
    image = cv2.imdecode(buffer, cv2.IMREAD_COLOR) if buffer.size else None
    if image is None:
        raise UserError(f"{where}: cannot decode the image (not a readable JPEG/PNG, or truncated)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as H x W x 3 uint8 RGB; a missing or unreadable file is a UserError."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"image not found: {path}") from None
    except OSError as exc:
        raise UserError(f"cannot read image {path}: {exc.strerror or exc}") from None
    return decode_image_bytes(data, where=str(path))


def encode_jpeg(image_rgb: np.ndarray, quality: int = 92) -> bytes:
    """H x W x 3 uint8 RGB -> JPEG bytes (OpenCV's libjpeg, deterministic for a given build)."""
    import cv2

    ok, buffer = cv2.imencode(
        ".jpg", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    )
    if not ok:  # pragma: no cover - OpenCV only fails on invalid arrays
        raise RuntimeError("JPEG encoding failed")
    return buffer.tobytes()


def clamp_bbox(
    bbox: list[float] | tuple[float, ...] | np.ndarray, width: int, height: int
) -> tuple[tuple[int, int, int, int], bool]:
    """Clamp an [x1, y1, x2, y2] box to a width x height image, as mat2py does (then to ints).

    Returns the box and whether anything changed. A box that is empty after clamping (wholly
    outside the image, or x2 <= x1) is a UserError: there is no body to crop.
    """
    x1, y1, x2, y2 = (float(v) for v in bbox)
    cx1, cx2 = min(width, max(0.0, x1)), min(width, max(0.0, x2))
    cy1, cy2 = min(height, max(0.0, y1)), min(height, max(0.0, y2))
    box = (int(cx1), int(cy1), int(cx2), int(cy2))
    if box[2] <= box[0] or box[3] <= box[1]:
        raise UserError(f"body box {[x1, y1, x2, y2]} is empty inside the {width}x{height} image")
    return box, (cx1, cy1, cx2, cy2) != (x1, y1, x2, y2)


def resize_bilinear(image: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Resize H x W x C uint8 to size x size (or (height, width)) with OpenCV bilinear."""
    import cv2

    height, width = (size, size) if isinstance(size, int) else size
    if image.shape[0] == height and image.shape[1] == width:
        return image
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)


def body_and_context(
    image: np.ndarray,
    box: tuple[int, int, int, int],
    body_size: int = BODY_SIZE,
    context_size: int = CONTEXT_SIZE,
) -> tuple[np.ndarray, np.ndarray]:
    """(body crop resized to body_size², whole image resized to context_size²), uint8 RGB.

    ``box`` must already be clamped (see :func:`clamp_bbox`).
    """
    x1, y1, x2, y2 = box
    body = np.ascontiguousarray(image[y1:y2, x1:x2])
    return resize_bilinear(body, body_size), resize_bilinear(image, context_size)
