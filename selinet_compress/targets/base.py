"""The target interface: a file format + toolchain that turns (checkpoint, recipe) into an artifact.

A target registers itself in :data:`TARGETS` under its name, with its file suffix. It declares the
precisions it can build; :meth:`Target.supports` turns anything else into a reason (the sweep shows
it as an "unsupported" row instead of failing). :meth:`Target.build` receives a :class:`BuildJob`
(model, recipe, calibration and check samples already loaded and validated) and writes the
artifact and its JSON sidecar under the job's output path.
"""

from __future__ import annotations

import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from selinet_compress.registry import Registry

if TYPE_CHECKING:
    from selinet_compress.calibration import CalibrationSet
    from selinet_compress.model.selinet import SeLiNet
    from selinet_compress.recipes import Recipe


class Target(ABC):
    """One output format and the toolchain that builds it."""

    name: ClassVar[str] = ""
    suffix: ClassVar[str] = ""
    # Recipe precisions this target can build.
    precisions: ClassVar[tuple[str, ...]] = ()
    # Distributions whose versions change the artifact (sidecar + cache key).
    packages: ClassVar[tuple[str, ...]] = ()
    # Optional recipe knobs this target implements; a recipe that sets another one is refused
    # rather than built without it.
    optional_knobs: ClassVar[frozenset[str]] = frozenset()
    # Modules the target needs to build and run its files, each with the pip requirement that
    # provides it: a missing one makes every cell of this target "unsupported" with that reason.
    runtime_modules: ClassVar[tuple[tuple[str, str], ...]] = ()

    def supports(self, recipe: Recipe) -> str | None:
        """None when this target can build ``recipe``, else the reason it cannot."""
        missing = self.missing_runtime()
        if missing:
            return missing
        if recipe.targets and self.name not in recipe.targets:
            return f"recipe '{recipe.name}' is restricted to targets: {', '.join(recipe.targets)}"
        if recipe.keep_outputs_float and "keep_outputs_float" not in self.optional_knobs:
            return f"the {self.name} target cannot keep the output layers in float (keep_outputs_float)"
        if recipe.precision not in self.precisions:
            return (
                f"the {self.name} target cannot build {recipe.precision} recipes "
                f"(it builds {', '.join(self.precisions)})"
            )
        return self.check_recipe(recipe)

    def missing_runtime(self) -> str | None:
        """The reason this target cannot work in this environment (a module not installed)."""
        import importlib.util

        for module, requirement in self.runtime_modules:
            if importlib.util.find_spec(module) is None:
                return (
                    f"the {self.name} target needs {module}, which is not installed "
                    f"(pip install {requirement})"
                )
        return None

    def variants(self, recipe: Recipe) -> list[tuple[str | None, Recipe]]:
        """The ways this target can build ``recipe`` that a sweep should put side by side, each
        with a short label (None: the only / default way). Override to offer e.g. two converters."""
        return [(None, recipe)]

    def check_recipe(self, recipe: Recipe) -> str | None:
        """Target-specific refusals beyond the precision (override when needed)."""
        return None

    def tool_versions(self) -> dict[str, str | None]:
        """Versions of this toolkit and of the packages that shape the artifact."""
        from selinet_compress import __version__
        from selinet_compress.environment import package_versions

        return {"selinet-compress": __version__, **package_versions(*self.packages)}

    @abstractmethod
    def build(self, job: BuildJob) -> Path:
        """Write ``job.artifact`` and its sidecar; return the artifact path."""


TARGETS: Registry[type[Target]] = Registry("target")


@dataclass
class BuildJob:
    """Everything a target needs, loaded and checked before minutes of work start."""

    checkpoint: Path
    checkpoint_sha256: str
    model: SeLiNet
    recipe: Recipe
    data_dir: Path
    artifact: Path
    check: CalibrationSet  # real samples every artifact is compared with PyTorch on
    calibration: CalibrationSet | None = None
    cache_dir: Path | None = None  # where reusable intermediates (the fp32 export) are kept
    progress: bool = True
    cache_key: str = ""
    warnings: list[str] = field(default_factory=list)

    def log(self, message: str) -> None:
        """A progress line on stderr (stdout carries only the artifact path)."""
        if self.progress:
            print(message, file=sys.stderr, flush=True)

    def warn(self, message: str) -> None:
        """A loud warning: printed now and recorded in the sidecar."""
        self.warnings.append(message)
        print(f"warning: {message}", file=sys.stderr, flush=True)

    def write_artifact(self, target: Target, built: Path, fields: dict[str, Any]) -> Path:
        """Copy the finished file ``built`` to :attr:`artifact` atomically, then write its sidecar
        (:meth:`base_record` + the file's hash and size + ``fields`` + the warnings) atomically.
        The sidecar comes last, so a sidecar always describes a complete artifact."""
        import shutil

        from selinet_compress.io import atomic_path, sha256_file, sidecar_path, write_json_atomic

        with atomic_path(self.artifact) as tmp:
            shutil.copyfile(built, tmp)
        size = self.artifact.stat().st_size
        record = self.base_record(target)
        record["artifact"] = {
            "path": self.artifact.name,
            "sha256": sha256_file(self.artifact),
            "size_bytes": size,
            "size_mb": round(size / 1e6, 4),
        }
        record.update(fields)
        record["warnings"] = list(self.warnings)
        write_json_atomic(sidecar_path(self.artifact), record)
        return self.artifact

    def base_record(self, target: Target) -> dict[str, Any]:
        """Sidecar fields every target writes: inputs' hashes, recipe, samples, environment."""
        import datetime as dt

        from selinet_compress.environment import environment

        env = environment(*target.packages)
        return {
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "target": target.name,
            "cache_key": self.cache_key,
            "recipe": {**self.recipe.to_dict(), "source": self.recipe.source},
            "checkpoint": {"path": str(self.checkpoint), "sha256": self.checkpoint_sha256},
            "model_config": self.model.config.to_dict(),
            "data_dir": str(self.data_dir),
            "calibration": self.calibration.record() if self.calibration is not None else None,
            "check_samples": self.check.record(),
            "tool_versions": env.pop("versions"),
            "environment": env,
        }
