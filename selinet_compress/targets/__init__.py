"""Build targets (onnx, tflite, ...) and the one API call that builds an artifact: :func:`quantize`.

Importing this package registers every target (and its recipe section); a target module imports
its heavy toolchain only inside ``build``. Adding a target: subclass
:class:`~selinet_compress.targets.base.Target` in ``targets/<name>.py``, register it in
:data:`TARGETS`, import the module below.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from selinet_compress.errors import UserError
from selinet_compress.targets import (
    onnx,  # noqa: F401  (registers "onnx")
    tflite,  # noqa: F401  (registers "tflite")
)
from selinet_compress.targets.base import TARGETS, BuildJob, Target

__all__ = [
    "TARGETS",
    "BuildJob",
    "Target",
    "artifact_path",
    "cache_key",
    "cache_key_inputs",
    "quantize",
    "unsupported_reason",
]


def unsupported_reason(recipe: Any, target: str) -> str | None:
    """Why ``target`` cannot build ``recipe`` (a name, path or Recipe), or None if it can."""
    from selinet_compress.recipes import load_recipe

    return TARGETS.get(target)().supports(load_recipe(recipe))


def artifact_path(out_dir: str | os.PathLike, recipe_name: str, target: str, name: str | None = None) -> Path:
    """Where :func:`quantize` writes: ``OUT_DIR/<name or recipe name><target suffix>``."""
    return Path(out_dir) / f"{name or recipe_name}{TARGETS.get(target).suffix}"


def cache_key_inputs(
    checkpoint: str | os.PathLike,
    recipe: Any,
    target: str,
    data_dir: str | os.PathLike,
    checkpoint_sha256: str | None = None,
    selection: Any = None,
) -> dict[str, Any]:
    """What an artifact depends on: checkpoint content, recipe, target, calibration samples
    (split, seed, ids) and tool versions. Cheap: hashes the checkpoint, reads no pixels.
    ``checkpoint_sha256`` / ``selection`` skip recomputing what the caller already has."""
    from selinet_compress.calibration import select_calibration
    from selinet_compress.io import sha256_file
    from selinet_compress.recipes import load_recipe

    recipe = load_recipe(recipe)
    builder = TARGETS.get(target)()
    if recipe.needs_calibration and selection is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            selection = select_calibration(data_dir, recipe.calibration)
    return {
        "checkpoint_sha256": checkpoint_sha256 or sha256_file(checkpoint),
        "recipe": recipe.to_dict(),
        "target": target,
        "calibration": (
            {k: v for k, v in selection.record().items() if k != "data_dir"}
            if recipe.needs_calibration
            else None
        ),
        "tool_versions": builder.tool_versions(),
    }


def cache_key(
    checkpoint: str | os.PathLike,
    recipe: Any,
    target: str,
    data_dir: str | os.PathLike,
    checkpoint_sha256: str | None = None,
    selection: Any = None,
) -> str:
    """Content hash of :func:`cache_key_inputs`: equal keys mean an identical build. Written into
    every sidecar as ``cache_key`` so a sweep can reuse a finished artifact."""
    from selinet_compress.io import sha256_json

    return sha256_json(cache_key_inputs(checkpoint, recipe, target, data_dir, checkpoint_sha256, selection))


def quantize(
    checkpoint: str | os.PathLike,
    recipe: Any,
    target: str = "onnx",
    data_dir: str | os.PathLike | None = None,
    out_dir: str | os.PathLike = ".",
    *,
    name: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    force: bool = False,
    check_samples: int = 8,
    progress: bool = True,
    trust_pickled_code: bool = False,
) -> Path:
    """Build one artifact: ``checkpoint`` x ``recipe`` (name, YAML path or Recipe) on ``target``.

    Calibration samples come from the train split of ``data_dir`` (int8_static recipes);
    ``check_samples`` samples of its val split compare every artifact with PyTorch. Writes
    ``OUT_DIR/<name or recipe name><suffix>`` and its JSON sidecar atomically and returns the
    artifact path. ``cache_dir`` keeps reusable intermediates (the validated fp32 export) between
    calls. Everything that can be checked quickly is checked before the long work starts.
    """
    from selinet_compress.calibration import load_calibration, load_check_samples, select_calibration
    from selinet_compress.checkpoint import load_model
    from selinet_compress.io import sha256_file
    from selinet_compress.recipes import load_recipe

    recipe = load_recipe(recipe)
    builder = TARGETS.get(target)()
    reason = builder.supports(recipe)
    if reason:
        raise UserError(f"cannot build recipe '{recipe.name}' for target '{target}': {reason}")
    if data_dir is None:
        raise UserError("quantize needs --data: real samples to check the export (and to calibrate)")
    artifact = artifact_path(out_dir, recipe.name, target, name)
    if artifact.exists() and not force:
        raise UserError(f"{artifact} exists; pass --force to overwrite it")
    model, _info = load_model(checkpoint, trust_pickled_code=trust_pickled_code)
    if recipe.keep_float_modules:  # a typo fails now, not after the export
        from selinet_compress.passes.onnx_scopes import check_modules

        check_modules(recipe.keep_float_modules, (name for name, _ in model.named_modules()))
    checkpoint_sha256 = sha256_file(checkpoint)
    notes: list[str] = []
    selection = calibration = None
    if recipe.needs_calibration:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            selection = select_calibration(data_dir, recipe.calibration)
        notes += [str(w.message) for w in caught]
    key = cache_key(checkpoint, recipe, target, data_dir, checkpoint_sha256, selection)
    # Calibration first: it is where bad data (NaN / inf after preprocessing) shows up.
    if selection is not None:
        calibration = load_calibration(data_dir, model.config, recipe.calibration, selection, progress)
    job = BuildJob(
        checkpoint=Path(checkpoint),
        checkpoint_sha256=checkpoint_sha256,
        model=model,
        recipe=recipe,
        data_dir=Path(data_dir),
        artifact=artifact,
        check=load_check_samples(data_dir, model.config, check_samples),
        calibration=calibration,
        cache_dir=Path(cache_dir) if cache_dir is not None else None,
        progress=progress,
        cache_key=key,
    )
    for note in notes:
        job.warn(note)
    if recipe.warning:
        job.warn(f"recipe '{recipe.name}': {recipe.warning}")
    return builder.build(job)
