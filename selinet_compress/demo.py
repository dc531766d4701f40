"""``demo``: synthetic data -> training -> sweep of every recipe on every target -> report.

Each stage is skipped when its output is already complete and resumed when it was interrupted,
so running the demo again after Ctrl-C (or SIGKILL) continues where it stopped. The data is the
toolkit's synthetic EMOTIC-format set: the figures demonstrate the pipeline, not EMOTIC results.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from selinet_compress.io import write_json_atomic


@dataclass(frozen=True)
class DemoPlan:
    """Sizes and settings of one demo flavour."""

    train: int
    val: int
    test: int
    epochs: int
    lr: float
    lr_step: int
    batch_size: int
    recipes: tuple[str, ...] | None  # None: every built-in recipe
    targets: tuple[str, ...] | None  # None: every target
    bench_runs: int
    converters: tuple[str, ...] | None = None  # TFLite converters (None: both, side by side)
    # QAT in the demo: epochs and training samples per epoch of a labelled shortened int8_qat
    # (the built-in recipe's 3 full epochs alone would take the demo's whole budget on 2 cores).
    qat_epochs: int = 1
    qat_limit_train: int | None = 520
    optimizer: str = "adamw"
    # The synthetic set codes emotions in colours a few hue steps apart; the paper's hue / posterize
    # jitter erases exactly those cues, so the demo trains without it (EMOTIC runs keep it).
    augment: bool = False
    body_size: int = 128
    context_size: int = 224
    seed: int = 0


# Every recipe family on every target and converter: fp32, fp16, dynamic int8, static int8 (as
# shipped and with float output layers) and QAT. The calibration variants (entropy, percentile)
# and the ConvInteger recipe (int8_dynamic_conv, known to be several times slower on x86) are one
# `sweep --recipes` away; they would double the demo's time for rows the README already explains.
DEMO_RECIPES = ("fp32", "fp16", "int8_dynamic", "int8_static", "int8_static_float_outputs", "int8_qat")

PLANS: dict[str, DemoPlan] = {
    "full": DemoPlan(
        train=2000,
        val=300,
        test=600,
        epochs=3,
        lr=0.001,
        lr_step=2,
        batch_size=26,
        recipes=DEMO_RECIPES,
        targets=None,
        bench_runs=30,
    ),
    "quick": DemoPlan(
        train=600,
        val=150,
        test=300,
        epochs=2,
        lr=0.001,
        lr_step=2,
        batch_size=26,
        recipes=("fp32", "int8_static"),
        targets=("onnx", "tflite"),
        bench_runs=20,
        converters=("onnx2tf",),
    ),
}
REPORT_FILES = (
    "report.md",
    "report.html",
    "report.csv",
    "report.json",
    "ap_vs_size.png",
    "ap_vs_latency.png",
    "class_delta.png",
    "latency.png",
)


def _synth(data: Path, plan: DemoPlan, log: Callable[[str], None]) -> None:
    from selinet_compress.emotic.synth import generate

    wanted = {"train": plan.train, "val": plan.val, "test": plan.test}
    description = data / "synth.json"
    if description.is_file():
        done = json.loads(description.read_text(encoding="utf-8"))
        if done.get("sizes") == wanted and done.get("seed") == plan.seed and done.get("layout") == "arrays":
            log(f"data: reusing {data}")
            return
        shutil.rmtree(data)
    log(f"data: writing a synthetic EMOTIC set ({plan.train}/{plan.val}/{plan.test}) to {data}")
    generate(data, "arrays", wanted, seed=plan.seed, force=True, progress=True)


def native_bf16() -> bool:
    """Whether the CPU computes bfloat16 natively (elsewhere bf16 autocast is slower, not faster)."""
    from selinet_compress.environment import cpu_info

    return bool({"avx512_bf16", "amx_bf16", "bf16"} & set(cpu_info()["flags"]))


def _train(data: Path, model: Path, plan: DemoPlan, log: Callable[[str], None]) -> None:
    from selinet_compress.model.selinet import SeLiNetConfig
    from selinet_compress.train import TrainConfig, run_paths, train

    done = model.with_name(model.name + ".json")  # the run's sidecar is written last
    if model.is_file() and done.is_file():
        log(f"train: reusing {model}")
        return
    config = TrainConfig(
        epochs=plan.epochs,
        batch_size=plan.batch_size,
        lr=plan.lr,
        lr_step=plan.lr_step,
        optimizer=plan.optimizer,  # type: ignore[arg-type]
        augment=plan.augment,
        bf16=native_bf16(),
        seed=plan.seed,
    )
    model_config = SeLiNetConfig(body_size=plan.body_size, context_size=plan.context_size)
    resume = run_paths(model)["state"].is_file()
    log(
        ("train: resuming " if resume else "train: ")
        + f"{plan.epochs} epochs from scratch ({plan.optimizer}, lr {plan.lr}"
        + (", bf16" if config.bf16 else "")
        + f") -> {model}"
    )
    train(data, model, config, model_config=model_config, resume=resume, force=not resume, log=log)


def _demo_recipes(plan: DemoPlan, folder: Path) -> list[str] | None:
    """The plan's recipes, with int8_qat replaced by a labelled shortened copy (``int8_qat_demo``)."""
    import yaml

    from selinet_compress.io import write_text_atomic
    from selinet_compress.recipes import RECIPES_DIR

    if plan.recipes is None or "int8_qat" not in plan.recipes:
        return None if plan.recipes is None else list(plan.recipes)
    recipe = yaml.safe_load((RECIPES_DIR / "int8_qat.yaml").read_text(encoding="utf-8"))
    builtin_epochs = recipe["qat"]["epochs"]
    recipe["qat"].update(
        epochs=plan.qat_epochs,
        limit_train=plan.qat_limit_train,
        freeze_observers_epoch=plan.qat_epochs if plan.qat_epochs >= 2 else None,
        augment=plan.augment,
    )
    samples = "all" if plan.qat_limit_train is None else str(plan.qat_limit_train)
    recipe["description"] = (
        f"int8_qat shortened for the demo: {plan.qat_epochs} epoch(s) on {samples} train samples "
        f"(the built-in int8_qat runs {builtin_epochs})"
    )
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "int8_qat_demo.yaml"
    write_text_atomic(path, yaml.safe_dump(recipe, sort_keys=False))
    return [str(path) if name == "int8_qat" else name for name in plan.recipes]


def demo(
    out: str | os.PathLike = "selinet-demo",
    quick: bool = False,
    plan: DemoPlan | None = None,
    reports_dir: str | os.PathLike | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the whole pipeline into ``out``; returns the paths written and each stage's seconds."""
    from selinet_compress.report import write_report
    from selinet_compress.sweep import SweepSettings, sweep

    flavour = "custom" if plan is not None else "quick" if quick else "full"
    plan = plan or PLANS[flavour]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # Each flavour in its own files: a quick demo then a full one in the same folder never mix
    # data, model or run (a run folder refuses another checkpoint's cells).
    tag = "" if flavour == "full" else f"-{flavour}"
    data, model, run = out / f"data{tag}", out / f"model{tag}.pt", out / f"run{tag}"
    seconds: dict[str, float] = {}
    started = time.perf_counter()

    def timed(stage: str, action: Callable[[], Any]) -> Any:
        begin = time.perf_counter()
        result = action()
        seconds[stage] = round(time.perf_counter() - begin, 1)
        return result

    timed("synth", lambda: _synth(data, plan, log))
    timed("train", lambda: _train(data, model, plan, log))
    settings = SweepSettings(bench_runs=plan.bench_runs)
    recipes = _demo_recipes(plan, out / f"recipes{tag}")
    log(
        f"sweep: {'every recipe' if plan.recipes is None else ', '.join(plan.recipes)} on "
        f"{'every target' if plan.targets is None else ', '.join(plan.targets)} -> {run}"
    )
    results = timed(
        "sweep",
        lambda: sweep(model, data, run, recipes, plan.targets, settings, progress, variants=plan.converters),
    )
    written = timed("report", lambda: write_report(run))
    if reports_dir is not None:
        target = Path(reports_dir)
        target.mkdir(parents=True, exist_ok=True)
        for name in REPORT_FILES:
            if (run / name).is_file():
                shutil.copy2(run / name, target / name)
    seconds["total"] = round(time.perf_counter() - started, 1)
    record = {
        "plan": asdict(plan),
        "flavour": flavour,
        "seconds": seconds,
        "results": str(results),
        "report": str(written["html"]),
    }
    write_json_atomic(out / f"demo{tag}.json", record)
    return record
