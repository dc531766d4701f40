"""``sweep``: every recipe on every target, evaluated and benchmarked, one row each."""

from __future__ import annotations

from pathlib import Path

import click


def _names(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


@click.command("sweep")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option(
    "--data",
    "data_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="EMOTIC folder: train (calibration), val (export checks) and the evaluated split.",
)
@click.option(
    "--out",
    "run_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Run folder; rerunning with the same folder resumes and skips finished cells.",
)
@click.option(
    "--recipes", default=None, help="Comma-separated recipe names or YAML paths (default: all built-in)."
)
@click.option("--targets", default=None, help="Comma-separated targets (default: all: onnx, tflite).")
@click.option(
    "--converters",
    default=None,
    help="Comma-separated TFLite converters to put side by side (default: both: onnx2tf, litert-torch).",
)
@click.option("--split", default="test", show_default=True, help="Split every variant is evaluated on.")
@click.option(
    "--limit", type=click.IntRange(min=1), default=None, help="Evaluate on the first N samples only."
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="Threads for every runtime (evaluation and benchmark).",
)
@click.option(
    "--runs", type=click.IntRange(min=2), default=50, show_default=True, help="Timed benchmark runs."
)
@click.option("--warmup", type=click.IntRange(min=0), default=5, show_default=True)
@click.option("--layout", type=click.Choice(["arrays", "csv", "mat"]), default=None)
def sweep_command(
    checkpoint: Path,
    data_dir: Path,
    run_dir: Path,
    recipes: str | None,
    targets: str | None,
    converters: str | None,
    split: str,
    limit: int | None,
    threads: int,
    runs: int,
    warmup: int,
    layout: str | None,
) -> None:
    """Build, evaluate (AP on the target's own runtime) and benchmark every recipe x target cell,
    plus the PyTorch fp32 reference; failures become rows. Writes RUN/results.json and .csv."""
    from selinet_compress.errors import UserError, did_you_mean
    from selinet_compress.sweep import SweepSettings, summary_lines, sweep

    known = ("onnx2tf", "litert-torch")
    for name in _names(converters) or ():
        if name not in known:
            raise UserError(f"unknown converter '{name}'{did_you_mean(name, known)}")

    settings = SweepSettings(
        split=split, limit=limit, threads=threads, bench_runs=runs, bench_warmup=warmup, layout=layout
    )
    results = sweep(
        checkpoint, data_dir, run_dir, _names(recipes), _names(targets), settings, variants=_names(converters)
    )
    for line in summary_lines(results):
        click.echo(line, err=True)
    click.echo(f"next: selinet-compress report {run_dir}", err=True)
    click.echo(str(results))
