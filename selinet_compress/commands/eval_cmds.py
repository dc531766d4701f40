"""``evaluate``: AP of a model (any runner's file) on an EMOTIC split, raw and boosted."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("evaluate")
@click.argument("model", type=click.Path(path_type=Path))
@click.option(
    "--data",
    "data_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="Folder holding EMOTIC (arrays, emotic_pre/ CSVs + images, or Annotations/ + images).",
)
@click.option("--split", type=click.Choice(["train", "val", "test"]), default="test", show_default=True)
@click.option(
    "--layout",
    type=click.Choice(["arrays", "csv", "mat"]),
    default=None,
    help="Force the data layout (default: detected from the folder).",
)
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Evaluate only the first N persons.")
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="Threads of the model's runtime (default: the runtime's own).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=1,
    show_default=True,
    help="Threads loading and preprocessing batches ahead of the model (0: none).",
)
@click.option(
    "--json",
    "json_out",
    type=click.Path(path_type=Path),
    default=None,
    help="Write the metrics as JSON to this file ('-': stdout).",
)
@click.option(
    "--scores",
    "scores_out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write per-sample scores and labels to this .npz.",
)
def evaluate_command(
    model: Path,
    data_dir: Path,
    split: str,
    layout: str | None,
    batch_size: int,
    limit: int | None,
    threads: int | None,
    workers: int,
    json_out: Path | None,
    scores_out: Path | None,
) -> None:
    """Score MODEL on an EMOTIC split: mAP raw and after the sentiment boost, sentiment AP,
    AP per category (percentage points, as in the paper) and throughput."""
    from selinet_compress.commands.common import one_line_warnings, write_json_output
    from selinet_compress.errors import UserError
    from selinet_compress.evaluate import evaluate, format_result

    if scores_out is not None and scores_out.suffix != ".npz":
        raise UserError(f"--scores {scores_out}: give a path ending in .npz")
    with one_line_warnings():
        result = evaluate(
            model,
            data_dir,
            split=split,
            batch_size=batch_size,
            limit=limit,
            threads=threads,
            layout=layout,
            workers=workers,
            progress=True,
        )
    if str(json_out) != "-":
        click.echo(format_result(result))
    write_json_output(json_out, result.to_json())
    if scores_out is not None:
        click.echo(f"scores: {result.save_scores(scores_out)}")
