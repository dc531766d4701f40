"""``bench``: latency / size / memory of model files on their runtimes."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("bench")
@click.argument("model", type=click.Path(path_type=Path))
@click.option(
    "--target",
    type=click.Choice(["torch", "onnx", "tflite"]),
    default=None,
    help="Runtime (default: from the file suffix); with a folder, bench only this target's files.",
)
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--runs", type=click.IntRange(min=2), default=50, show_default=True)
@click.option("--warmup", type=click.IntRange(min=0), default=5, show_default=True)
@click.option(
    "--json",
    "json_out",
    type=click.Path(path_type=Path),
    default=None,
    help="Write the records as JSON ('-' for stdout): one object, or a list for a folder.",
)
def bench_command(
    model: Path,
    target: str | None,
    threads: int,
    batch_size: int,
    runs: int,
    warmup: int,
    json_out: Path | None,
) -> None:
    """Latency percentiles, throughput, load time, peak RSS and size of MODEL (a file or a folder
    of artifacts), each measured in a fresh process on the same inputs."""
    from tqdm.auto import tqdm

    from selinet_compress.bench import bench_model, format_table, model_files
    from selinet_compress.commands.common import write_json_output

    files = model_files(model, target)
    records = []
    for path in tqdm(files, desc="bench", unit="model", disable=len(files) == 1, leave=False):
        records.append(bench_model(path, target, threads, batch_size, runs, warmup))
    if json_out is not None:
        write_json_output(json_out, records[0] if model.is_file() else records)
    if str(json_out) != "-":
        click.echo(format_table(records))
