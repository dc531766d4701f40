"""Recipes: a precision scheme and its knobs, one YAML file per recipe under ``recipes/``.

A recipe says *what* to do to the weights and activations (fp32, fp16, int8 dynamic, int8 static
with a calibration method, int8 QAT), independently of the file format; a target (``onnx``,
``tflite``) says *how* to do it in its toolchain (see :mod:`selinet_compress.targets`). YAML keys
are the field names of :class:`Recipe` and :class:`Calibration`; unknown keys and values fail at
load with a did-you-mean. Knobs that only one target understands live in a section named after
it (``onnx:``, ``tflite:``), validated by the dataclass that target registers in
:data:`SECTIONS`; a scheme may register a section the same way (``qat:``).

``load_recipe("int8_static")`` reads ``recipes/int8_static.yaml``; a path to a user's own YAML
works wherever a name does.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from selinet_compress.configs import dataclass_from_dict, to_plain
from selinet_compress.errors import UserError, did_you_mean
from selinet_compress.registry import Registry

RECIPES_DIR = Path(__file__).resolve().parent.parent / "recipes"

Precision = Literal["fp32", "fp16", "int8_dynamic", "int8_static", "int8_qat"]
# The order `recipes` lists them in (then by name).
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8_dynamic", "int8_static", "int8_qat")
# Precisions whose build needs calibration samples from the train split.
CALIBRATED: frozenset[str] = frozenset({"int8_static"})
DataType = Literal["uint8", "int8", "uint16", "int16"]

# Target- or scheme-specific sections: section name -> frozen dataclass of its knobs. Targets
# register theirs under their own name; the modules below are imported before a recipe is loaded
# so that every section is known (add a module here when a new one registers sections).
SECTIONS: Registry[type] = Registry("recipe section")
SECTION_MODULES: tuple[str, ...] = ("selinet_compress.targets", "selinet_compress.passes.qat_options")


@dataclass(frozen=True)
class Calibration:
    """How an int8_static recipe finds activation ranges: which samples (drawn with ``seed`` from
    the train split, never test) and which method turns their activations into ranges."""

    method: Literal["minmax", "entropy", "percentile"] = "minmax"
    samples: int = 128
    seed: int = 0
    # percentile: the share of |values| (symmetric) or values (asymmetric) the range keeps.
    percentile: float = 99.999
    # entropy / percentile: histogram bins. Entropy searches thresholds between
    # num_quantized_bins and num_bins; with equal counts it returns the min-max range.
    num_bins: int = 2048
    num_quantized_bins: int = 128
    # Symmetric activation ranges (around 0); asymmetric suits uint8 after ReLU / hard-swish.
    symmetric: bool = False

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise ValueError(f"calibration needs at least 1 sample, got samples: {self.samples}")
        if not 0.0 < self.percentile <= 100.0:
            raise ValueError(f"percentile must be in (0, 100], got {self.percentile}")
        if self.num_quantized_bins < 2 or self.num_bins < self.num_quantized_bins:
            raise ValueError(
                f"need 2 <= num_quantized_bins <= num_bins, got {self.num_quantized_bins} and {self.num_bins}"
            )


@dataclass(frozen=True)
class Recipe:
    """A precision scheme and its knobs. Fields with target-specific meaning say so."""

    name: str
    description: str  # one line, shown by `selinet-compress recipes`
    precision: Precision
    activation_type: DataType = "uint8"
    weight_type: DataType = "int8"
    per_channel: bool = True
    reduce_range: bool = False
    # Op types to quantize; empty: every type the target's quantizer supports for static
    # recipes, and MatMul + Gemm for dynamic ones (dynamic Conv is slow on x86; see int8_dynamic).
    op_types: tuple[str, ...] = ()
    # Kept in float: PyTorch module paths (prefixes such as "body.features" or
    # "body.features.0") and/or exported node names.
    keep_float_modules: tuple[str, ...] = ()
    keep_float_nodes: tuple[str, ...] = ()
    # Keep the layers that produce the model's outputs (the two head output layers) in float:
    # 8-bit output scores take at most 256 values, and the ties they create cost AP (measured:
    # see README "ONNX recipes"). A target that cannot do this refuses the recipe.
    keep_outputs_float: bool = False
    calibration: Calibration = field(default_factory=Calibration)
    # Restrict the recipe to these targets (empty: every target that supports its precision).
    targets: tuple[str, ...] = ()
    # Printed loudly whenever the recipe is built (a known cost, such as a slow op).
    warning: str = ""
    # Validated target- / scheme-specific sections (see SECTIONS); not a YAML key itself.
    sections: Mapping[str, Any] = field(default_factory=dict, hash=False)
    # Where the recipe came from ("built-in" or a path); not a YAML key.
    source: str = ""

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise ValueError("a recipe needs a name")
        if "\n" in self.description.strip() or not self.description.strip():
            raise ValueError("description must be one non-empty line")

    @property
    def needs_calibration(self) -> bool:
        return self.precision in CALIBRATED

    def section(self, name: str) -> Any:
        """The validated options of section ``name`` (its defaults when the YAML has none)."""
        if name in self.sections:
            return self.sections[name]
        return SECTIONS.get(name)()

    def to_dict(self) -> dict[str, Any]:
        """Plain form for sidecars and cache keys (``source`` left out: moving a file does not
        change what it does)."""
        data = to_plain(self)
        data.pop("source")
        data["sections"] = {name: to_plain(self.section(name)) for name in sorted(self.sections)}
        return data


# Keys a YAML file may not set: they are filled by the loader.
_RESERVED = ("sections", "source")


def _ensure_sections() -> None:
    for module in SECTION_MODULES:
        importlib.import_module(module)


def recipe_from_dict(data: Any, where: str, default_name: str = "", source: str = "") -> Recipe:
    """Validate a plain mapping (parsed YAML) into a :class:`Recipe`."""
    _ensure_sections()
    if not isinstance(data, dict):
        raise UserError(f"{where}: expected a mapping of recipe fields, got {type(data).__name__}")
    fields = [f.name for f in dataclasses.fields(Recipe) if f.name not in _RESERVED]
    allowed = [*fields, *SECTIONS.names()]
    for key in data:
        if str(key) not in allowed:
            raise UserError(f"unknown key '{key}' in {where}{did_you_mean(str(key), allowed)}")
    plain = {k: v for k, v in data.items() if k in fields}
    plain.setdefault("name", default_name)
    if "calibration" in plain:
        plain["calibration"] = dataclass_from_dict(Calibration, plain["calibration"], f"{where}: calibration")
    sections = {
        name: dataclass_from_dict(
            SECTIONS.get(name), data[name] if data[name] is not None else {}, f"{where}: {name}"
        )
        for name in SECTIONS.names()
        if name in data
    }
    recipe = dataclass_from_dict(Recipe, plain, where)
    return dataclasses.replace(recipe, sections=sections, source=source)


def _parse_yaml(path: Path) -> Any:
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read recipe {path}: {exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"{path} is not valid YAML{where}: {problem}") from None


def builtin_names() -> list[str]:
    """Names of the recipes shipped in ``recipes/``."""
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def _looks_like_path(spec: str) -> bool:
    return spec.endswith((".yaml", ".yml")) or os.sep in spec or "/" in spec


def load_recipe(spec: str | os.PathLike | Recipe) -> Recipe:
    """A recipe by built-in name (``int8_static``) or by path to a YAML file."""
    if isinstance(spec, Recipe):
        return spec
    text = str(spec)
    path = Path(text)
    if _looks_like_path(text) or path.is_file():
        if not path.is_file():
            raise UserError(f"no such recipe file: {path}")
        return recipe_from_dict(_parse_yaml(path), str(path), default_name=path.stem, source=str(path))
    builtin = RECIPES_DIR / f"{text}.yaml"
    if not builtin.is_file():
        raise UserError(f"unknown recipe '{text}'{did_you_mean(text, builtin_names())}")
    recipe = recipe_from_dict(
        _parse_yaml(builtin), f"recipes/{builtin.name}", default_name=text, source="built-in"
    )
    if recipe.name != text:
        raise UserError(f"recipes/{builtin.name} names itself '{recipe.name}'; rename one of them")
    return recipe


def list_recipes() -> list[Recipe]:
    """Every built-in recipe, in precision order (fp32 first), then by name."""
    recipes = [load_recipe(name) for name in builtin_names()]
    return sorted(recipes, key=lambda r: (PRECISIONS.index(r.precision), r.name))
