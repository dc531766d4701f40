"""Checkpoint I/O: the project's own format, the wrappings users' checkpoints come in, and
torchvision MobileNet weights for one branch.

Files are always opened with ``torch.load(weights_only=True)``: unpickling arbitrary objects runs
code, so whole pickled modules load only with ``trust_pickled_code=True`` (CLI flag
``--trust-pickled-code``).
"""

from __future__ import annotations

import datetime as _dt
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from selinet_compress import __version__
from selinet_compress.errors import UserError
from selinet_compress.io import atomic_path
from selinet_compress.model.selinet import SeLiNet, SeLiNetConfig

FORMAT = "selinet-compress/checkpoint"
FORMAT_VERSION = 1
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "network", "weights")
KNOWN_PREFIXES = ("module.", "_orig_mod.", "model.")
TRUST_FLAG = "--trust-pickled-code"


@dataclass
class CheckpointInfo:
    """What was found in a checkpoint file and how it was unwrapped."""

    path: str
    format: str  # "selinet-compress" | "state_dict" | "pickled-module"
    wrapping: list[str] = field(default_factory=list)  # e.g. ["model_state_dict", "prefix module."]
    config_source: str = "checkpoint"  # "checkpoint" | "inferred from keys" | "given"
    metadata: dict[str, Any] = field(default_factory=dict)
    file_size: int = 0


# ---------------------------------------------------------------------------------------------
# Reading files


def read_checkpoint_file(path: str | os.PathLike, trust_pickled_code: bool = False) -> Any:
    """``torch.load`` with one-line errors for the ways a checkpoint file can be wrong."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"no such file: {path}")
    if path.is_dir():
        raise UserError(f"{path} is a folder, not a checkpoint file")
    with open(path, "rb") as handle:
        head = handle.read(4)
    if not head:
        raise UserError(f"{path} is empty")
    if not (head.startswith(b"PK") or head[:1] == b"\x80"):
        kind = "text" if _looks_like_text(path) else "not a zip archive or pickle"
        raise UserError(f"{path} is not a PyTorch checkpoint ({kind})")
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust_pickled_code)
    except Exception as exc:  # torch raises RuntimeError, UnpicklingError, EOFError, KeyError...
        message = str(exc)
        if "Weights only load failed" in message:
            found = re.search(r"GLOBAL ([\w.]+)", message)
            what = f" ({found.group(1)})" if found else ""
            raise UserError(
                f"{path} holds pickled Python objects{what}, not only tensors; loading it would run "
                f"code from the file. If you trust its source, pass {TRUST_FLAG}"
            ) from None
        if "central directory" in message or "zip archive" in message or isinstance(exc, EOFError):
            raise UserError(f"{path} is truncated or corrupt (cannot read its zip archive)") from None
        if trust_pickled_code and isinstance(exc, (AttributeError, ModuleNotFoundError)):
            raise UserError(
                f"{path} holds a pickled module whose class cannot be imported here: {exc}"
            ) from None
        raise UserError(
            f"{path} could not be read as a PyTorch checkpoint: {message.splitlines()[0][:200]}"
        ) from None


def _looks_like_text(path: Path) -> bool:
    with open(path, "rb") as handle:
        sample = handle.read(512)
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _is_state_dict(obj: Any) -> bool:
    return (
        isinstance(obj, dict)
        and bool(obj)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def unwrap(obj: Any, source: str) -> tuple[dict[str, torch.Tensor], dict | None, dict, list[str]]:
    """Find the state_dict inside whatever was saved.

    Returns (state_dict with prefixes stripped, config dict or None, metadata, wrapping steps).
    """
    wrapping: list[str] = []
    config = None
    metadata: dict = {}
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        config, metadata = obj.get("config"), dict(obj.get("metadata") or {})
        obj = obj.get("state_dict")
        wrapping.append("selinet-compress checkpoint")
    for _ in range(3):  # nested wrappings such as {"model": {"state_dict": ...}}
        if isinstance(obj, nn.Module):
            wrapping.append(f"pickled {type(obj).__name__}")
            if config is None and isinstance(obj, SeLiNet):
                config = obj.config.to_dict()
            obj = obj.state_dict()
        if _is_state_dict(obj):
            break
        if isinstance(obj, dict):
            key = next((k for k in WRAPPER_KEYS if k in obj), None)
            if key is None:
                break
            wrapping.append(f"['{key}']")
            obj = obj[key]
    if not _is_state_dict(obj):
        keys = list(obj)[:6] if isinstance(obj, dict) else []
        raise UserError(
            f"{source}: found no state_dict (a mapping of names to tensors)"
            + (f"; top-level keys: {keys}" if keys else f"; found {type(obj).__name__}")
        )
    state_dict, stripped = strip_prefixes(obj)
    wrapping += [f"prefix '{p}'" for p in stripped]
    return state_dict, config, metadata, wrapping


def strip_prefixes(state_dict: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Remove ``module.`` (DataParallel), ``_orig_mod.`` (torch.compile) and ``model.`` prefixes
    carried by every key, in any nesting order."""
    stripped: list[str] = []
    changed = True
    while changed:
        changed = False
        for prefix in KNOWN_PREFIXES:
            if all(k.startswith(prefix) for k in state_dict):
                state_dict = {k[len(prefix) :]: v for k, v in state_dict.items()}
                stripped.append(prefix)
                changed = True
    return state_dict, stripped


# ---------------------------------------------------------------------------------------------
# SeLiNet checkpoints


def infer_config(state_dict: dict[str, torch.Tensor], base: SeLiNetConfig | None = None) -> SeLiNetConfig:
    """Guess the ablation switches of a foreign checkpoint (one saved without our config)."""
    base = base or SeLiNetConfig()
    keys = set(state_dict)
    changes: dict[str, Any] = {
        "use_aesthetics": any(k.startswith("aesthetics.") for k in keys),
        "use_attention": any(k.startswith("body.pool.") for k in keys),
        "use_sentiment": any(k.startswith("sentiment_head.") for k in keys),
    }
    hidden = state_dict.get("body.pool.score.0.weight")
    changes["attention_hidden"] = int(hidden.shape[0]) if hidden is not None else 0
    out = state_dict.get("emotion_head.out.weight")
    if out is not None and out.shape[0] != len(base.categories):
        raise UserError(
            f"the checkpoint predicts {out.shape[0]} emotions, the config lists {len(base.categories)} "
            "categories: pass a config whose categories match"
        )
    return base.replace(**changes)


def load_state_dict_checked(
    module: nn.Module, state_dict: dict[str, torch.Tensor], source: str, what: str
) -> None:
    """``load_state_dict(strict=True)`` with a short error naming the first bad keys and a cause."""
    own = module.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    wrong_shape = [
        f"{k} {tuple(state_dict[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state_dict and state_dict[k].shape != own[k].shape
    ]
    if missing or unexpected or wrong_shape:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (first: {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (first: {', '.join(unexpected[:3])})")
        if wrong_shape:
            parts.append(f"{len(wrong_shape)} of another shape (first: {wrong_shape[0]} expected)")
        cause = _likely_cause(missing, unexpected, wrong_shape)
        raise UserError(f"{source} does not fit {what}: {'; '.join(parts)}. Likely cause: {cause}")
    module.load_state_dict(state_dict, strict=True)


def _likely_cause(missing: list[str], unexpected: list[str], wrong_shape: list[str]) -> str:
    roots = {k.split(".")[0] for k in missing + unexpected}
    if (
        unexpected
        and any(k.startswith(("features.", "classifier.")) for k in unexpected)
        and not any(k.startswith(("body.", "fusion.")) for k in unexpected)
    ):
        return (
            "this is a torchvision MobileNet state_dict, i.e. the weights of one branch; load it "
            "with `init --body-weights` / `--aesthetics-weights`"
        )
    if (
        unexpected
        and not missing
        and len({k.split(".")[0] for k in unexpected}) == 1
        and len(unexpected) > 10
    ):
        return f"keys carry an extra prefix '{unexpected[0].split('.')[0]}.'"
    if missing and unexpected and len(roots) > 4:
        return "this checkpoint is not a SeLiNet (or uses other module names)"
    if roots <= {"aesthetics", "sentiment_head", "body", "fusion"} and not wrong_shape:
        return (
            "the checkpoint was saved with another ablation config (aesthetics branch, "
            "attention or sentiment head on/off)"
        )
    if wrong_shape:
        return "another config (number of categories, layer widths or attention size)"
    return "a different model definition"


def load_model(
    path: str | os.PathLike,
    config: SeLiNetConfig | None = None,
    trust_pickled_code: bool = False,
) -> tuple[SeLiNet, CheckpointInfo]:
    """Load a SeLiNet from any usual wrapping; returns the model in eval mode and what was found.

    The config comes from ``config`` if given, else from the checkpoint (our format), else it is
    inferred from the state_dict keys.
    """
    path = Path(path)
    obj = read_checkpoint_file(path, trust_pickled_code)
    state_dict, stored_config, metadata, wrapping = unwrap(obj, str(path))
    if config is not None:
        source = "given"
    elif stored_config is not None:
        config, source = SeLiNetConfig.from_dict(stored_config, f"config in {path}"), "checkpoint"
    else:
        config, source = infer_config(state_dict), "inferred from keys"
    model = SeLiNet(config)
    load_state_dict_checked(model, state_dict, str(path), f"SeLiNet ({config.ablation})")
    fmt = (
        "selinet-compress"
        if "selinet-compress checkpoint" in wrapping
        else ("pickled-module" if any(w.startswith("pickled") for w in wrapping) else "state_dict")
    )
    info = CheckpointInfo(str(path), fmt, wrapping, source, metadata, path.stat().st_size)
    return model.eval(), info


def save_checkpoint(model: SeLiNet, path: str | os.PathLike, metadata: dict | None = None) -> Path:
    """Write config + weights + metadata in one file, atomically; loadable with weights_only=True."""
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": model.config.to_dict(),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "metadata": {
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "selinet_compress": __version__,
            "torch": str(torch.__version__),
            **(metadata or {}),
        },
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


# ---------------------------------------------------------------------------------------------
# torchvision MobileNet weights for one branch

BRANCH_TRUNKS = {"body": "mobilenet_v3_large", "aesthetics": "mobilenet_v2"}


def load_branch_weights(
    model: SeLiNet, branch: str, path: str | os.PathLike, trust_pickled_code: bool = False
) -> list[str]:
    """Load a torchvision ``mobilenet_v3_large`` (body) or ``mobilenet_v2`` (aesthetics) state_dict
    into that branch's trunk. ``classifier.*`` keys are ignored; keys may be bare trunk keys
    (``0.0.weight``), ``features.*`` or a whole SeLiNet branch (``body.features.*``).
    Returns the wrapping steps that were undone."""
    if branch not in BRANCH_TRUNKS:
        raise UserError(f"unknown branch '{branch}'; valid: {', '.join(BRANCH_TRUNKS)}")
    target = getattr(model, branch)
    if target is None:
        raise UserError(f"this SeLiNet config has no {branch} branch")
    obj = read_checkpoint_file(path, trust_pickled_code)
    state_dict, _, _, wrapping = unwrap(obj, str(path))
    for prefix in (f"{branch}.features.", "features."):
        if any(k.startswith(prefix) for k in state_dict):
            state_dict = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
            break
    else:
        state_dict = {k: v for k, v in state_dict.items() if not k.startswith("classifier.")}
    load_state_dict_checked(
        target.features,
        state_dict,
        str(path),
        f"the {branch} trunk (torchvision {BRANCH_TRUNKS[branch]}.features)",
    )
    return wrapping


def init_checkpoint(
    out: str | os.PathLike,
    config: SeLiNetConfig | None = None,
    seed: int = 0,
    body_weights: str | os.PathLike | None = None,
    aesthetics_weights: str | os.PathLike | None = None,
    trust_pickled_code: bool = False,
) -> Path:
    """A randomly initialised SeLiNet (optionally with pretrained trunks) saved to ``out``."""
    from selinet_compress.model.selinet import build_model

    model = build_model(config, seed=seed)
    sources: dict[str, str] = {}
    for branch, weights in (("body", body_weights), ("aesthetics", aesthetics_weights)):
        if weights is not None:
            load_branch_weights(model, branch, weights, trust_pickled_code)
            sources[branch] = str(weights)
    return save_checkpoint(model, out, {"init": {"seed": seed, "branch_weights": sources}})
