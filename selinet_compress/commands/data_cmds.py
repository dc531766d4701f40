"""``synth``: write a synthetic EMOTIC (demos and tests only) in one of the three layouts."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("synth")
@click.argument("out", type=click.Path(path_type=Path))
@click.option(
    "--layout",
    type=click.Choice(["arrays", "csv", "mat"]),
    default="arrays",
    show_default=True,
    help="arrays: {split}_*_arr.npy; csv: emotic_pre/{split}.csv + JPEGs; "
    "mat: Annotations/Annotations.mat + JPEGs.",
)
@click.option(
    "--train",
    "n_train",
    type=click.IntRange(min=0),
    default=2000,
    show_default=True,
    help="Persons in the train split (0: no train split).",
)
@click.option(
    "--val",
    "n_val",
    type=click.IntRange(min=0),
    default=300,
    show_default=True,
    help="Persons in the val split.",
)
@click.option(
    "--test",
    "n_test",
    type=click.IntRange(min=0),
    default=600,
    show_default=True,
    help="Persons in the test split.",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Same seed: same persons, labels and pixels in every layout.",
)
@click.option("--force", is_flag=True, help="Replace OUT if it exists and is not empty.")
def synth_command(
    out: Path, layout: str, n_train: int, n_val: int, n_test: int, seed: int, force: bool
) -> None:
    """Write a synthetic EMOTIC to OUT: EMOTIC's files and label statistics with learnable visual
    cues. For demos and tests only; its AP says nothing about EMOTIC."""
    from selinet_compress.commands.common import one_line_warnings
    from selinet_compress.emotic.synth import generate

    with one_line_warnings():
        result = generate(
            out,
            layout,
            {"train": n_train, "val": n_val, "test": n_test},
            seed=seed,
            force=force,
            progress=True,
        )
    sizes = ", ".join(f"{split} {n}" for split, n in result.sizes.items() if n)
    click.echo(
        f"{result.path}: synthetic EMOTIC, {layout} layout ({sizes}; seed {seed}) in {result.seconds:.1f} s"
    )
    per_person = ", ".join(f"{split} {v:.2f}" for split, v in result.labels_per_person.items())
    click.echo(f"labels per person: {per_person}; description in {result.path / 'synth.json'}")
