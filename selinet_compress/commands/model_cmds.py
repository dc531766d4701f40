"""``init`` and ``inspect``."""

from __future__ import annotations

from pathlib import Path

import click

from selinet_compress.commands.common import (
    ablation_options,
    config_from_options,
    trust_pickled_code_option,
)


@click.command("init")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@ablation_options
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random initialisation.")
@click.option(
    "--body-weights",
    type=click.Path(path_type=Path),
    default=None,
    help="torchvision mobilenet_v3_large state_dict for the body trunk (e.g. ImageNet).",
)
@click.option(
    "--aesthetics-weights",
    type=click.Path(path_type=Path),
    default=None,
    help="torchvision mobilenet_v2 state_dict for the aesthetics trunk (e.g. ReLIC).",
)
@trust_pickled_code_option
@click.option("--force", is_flag=True, help="Overwrite OUT if it exists.")
def init_command(
    out: Path,
    seed: int,
    body_weights: Path | None,
    aesthetics_weights: Path | None,
    trust_pickled_code: bool,
    force: bool,
    ablation: str | None,
    **flags,
) -> None:
    """Write a randomly initialised SeLiNet checkpoint (config + weights) to OUT."""
    from selinet_compress.checkpoint import init_checkpoint
    from selinet_compress.errors import UserError

    if out.exists() and not force:
        raise UserError(f"{out} exists; pass --force to overwrite it")
    config = config_from_options(ablation, **flags)
    path = init_checkpoint(
        out,
        config,
        seed=seed,
        body_weights=body_weights,
        aesthetics_weights=aesthetics_weights,
        trust_pickled_code=trust_pickled_code,
    )
    click.echo(str(path))


@click.command("inspect")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@trust_pickled_code_option
def inspect_command(model: Path, as_json: bool, trust_pickled_code: bool) -> None:
    """Show what a checkpoint (or an exported model) holds: config, parameters and MB per part."""
    from selinet_compress.commands.common import write_json_output
    from selinet_compress.summary import format_summary, summarize

    summary = summarize(model, trust_pickled_code=trust_pickled_code)
    if as_json:
        write_json_output("-", summary)
    else:
        click.echo(format_summary(summary))
