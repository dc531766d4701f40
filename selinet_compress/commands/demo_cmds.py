"""``demo``: the whole pipeline on generated data."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("demo")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("selinet-demo"),
    show_default=True,
    help="Folder for the data, model, artifacts and report (resumable).",
)
@click.option(
    "--quick",
    is_flag=True,
    help="Smaller data, 2 epochs, fp32 and int8_static on ONNX and TFLite (onnx2tf); under 5 minutes.",
)
@click.option(
    "--reports-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Also copy the report (md, html, csv, json, plots; never models or data) here.",
)
def demo_command(out: Path, quick: bool, reports_dir: Path | None) -> None:
    """Synthetic EMOTIC -> train SeLiNet -> sweep every recipe on every target -> report.
    The data is synthetic: the numbers show the pipeline, not EMOTIC results."""
    from selinet_compress.demo import demo
    from selinet_compress.sweep import summary_lines

    record = demo(out, quick=quick, reports_dir=reports_dir, log=lambda line: click.echo(line, err=True))
    for line in summary_lines(Path(record["results"])):
        click.echo(line, err=True)
    seconds = record["seconds"]
    click.echo("time: " + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()), err=True)
    click.echo(record["report"])
