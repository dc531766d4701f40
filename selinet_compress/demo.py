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
    seed: int = 0


PLANS: dict[str, DemoPlan] = {
    "full": DemoPlan(
        train=2000,
        val=300,
        test=600,
        epochs=4,
        lr=0.01,
        lr_step=3,
        batch_size=26,
        recipes=None,
        targets=None,
        bench_runs=50,
    ),
    "quick": DemoPlan(
        train=600,
        val=150,
        test=300,
        epochs=2,
        lr=0.01,
        lr_step=2,
        batch_size=26,
        recipes=("fp32", "fp16", "int8_dynamic", "int8_static"),
        targets=("onnx", "tflite"),
        bench_runs=20,
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


def _train(data: Path, model: Path, plan: DemoPlan, log: Callable[[str], None]) -> None:
    from selinet_compress.train import TrainConfig, run_paths, train

    done = model.with_name(model.name + ".json")  # the run's sidecar is written last
    if model.is_file() and done.is_file():
        log(f"train: reusing {model}")
        return
    config = TrainConfig(
        epochs=plan.epochs, batch_size=plan.batch_size, lr=plan.lr, lr_step=plan.lr_step, seed=plan.seed
    )
    resume = run_paths(model)["state"].is_file()
    log(("train: resuming " if resume else "train: ") + f"{plan.epochs} epochs from scratch -> {model}")
    train(data, model, config, resume=resume, force=not resume, log=log)


def demo(
    out: str | os.PathLike = "selinet-demo",
    quick: bool = False,
    reports_dir: str | os.PathLike | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the whole pipeline into ``out``; returns the paths written and each stage's seconds."""
    from selinet_compress.report import write_report
    from selinet_compress.sweep import SweepSettings, sweep

    plan = PLANS["quick" if quick else "full"]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data, model, run = out / "data", out / "model.pt", out / "run"
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
    log(
        f"sweep: {'every recipe' if plan.recipes is None else ', '.join(plan.recipes)} on "
        f"{'every target' if plan.targets is None else ', '.join(plan.targets)} -> {run}"
    )
    results = timed("sweep", lambda: sweep(model, data, run, plan.recipes, plan.targets, settings, progress))
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
        "flavour": "quick" if quick else "full",
        "seconds": seconds,
        "results": str(results),
        "report": str(written["html"]),
    }
    write_json_atomic(out / "demo.json", record)
    return record
