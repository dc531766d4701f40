"""``report``: render a sweep run into md / html / csv / json and plots."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("report")
@click.argument("run", type=click.Path(path_type=Path))
@click.option(
    "--max-ap-drop",
    type=float,
    default=1.0,
    show_default=True,
    help="AP-drop budget in points for the recommendation.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write the report here instead of into RUN.",
)
def report_command(run: Path, max_ap_drop: float, out: Path | None) -> None:
    """Tables, plots and a recommendation from a sweep run's results.json."""
    from selinet_compress.report import write_report

    written = write_report(run, max_ap_drop, out)
    for path in written.values():
        click.echo(str(path))
