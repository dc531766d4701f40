"""``quantize`` and ``recipes``."""

from __future__ import annotations

from pathlib import Path

import click

from selinet_compress.commands.common import trust_pickled_code_option


@click.command("quantize")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option(
    "--recipe",
    "-r",
    required=True,
    metavar="NAME|PATH",
    help="A recipe name (see `selinet-compress recipes`) or a path to a recipe YAML.",
)
@click.option(
    "--target",
    "-t",
    default="onnx",
    show_default=True,
    metavar="NAME",
    help="Output format / toolchain (onnx).",
)
@click.option(
    "--data",
    "data_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="EMOTIC data folder: the train split calibrates (never test), the val split checks "
    "the result against PyTorch.",
)
@click.option(
    "--out",
    "out_dir",
    default=Path("artifacts"),
    show_default=True,
    type=click.Path(path_type=Path),
    help="Output folder; the artifact is OUT/<recipe><suffix>, its sidecar OUT/<recipe><suffix>.json.",
)
@click.option("--name", default=None, help="File name stem instead of the recipe name.")
@click.option(
    "--cache",
    "cache_dir",
    default=None,
    type=click.Path(path_type=Path),
    help="Keep reusable intermediates (the validated fp32 export) here, shared between recipes.",
)
@click.option(
    "--check-samples",
    default=8,
    show_default=True,
    type=click.IntRange(1, 1024),
    help="Val samples every artifact is compared with PyTorch on.",
)
@click.option("--force", is_flag=True, help="Overwrite the artifact if it exists.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output on stderr.")
@click.option(
    "--converter",
    type=click.Choice(["onnx2tf", "litert-torch"]),
    default=None,
    help="TFLite target only: ONNX -> onnx2tf (default) or PyTorch -> litert-torch (optional extra).",
)
@trust_pickled_code_option
def quantize_command(
    checkpoint: Path,
    recipe: str,
    target: str,
    data_dir: Path,
    out_dir: Path,
    name: str | None,
    cache_dir: Path | None,
    check_samples: int,
    force: bool,
    quiet: bool,
    converter: str | None,
    trust_pickled_code: bool,
) -> None:
    """Build CHECKPOINT x recipe on a target (export, calibrate, quantize, check against PyTorch,
    audit) and print the artifact's path."""
    from selinet_compress.targets import quantize

    if converter is not None:
        from selinet_compress.errors import UserError
        from selinet_compress.recipes import load_recipe
        from selinet_compress.targets.tflite import with_tflite_options

        if target != "tflite":
            raise UserError(f"--converter applies to --target tflite, not '{target}'")
        recipe = with_tflite_options(load_recipe(recipe), converter=converter)
    path = quantize(
        checkpoint,
        recipe,
        target,
        data_dir,
        out_dir,
        name=name,
        cache_dir=cache_dir,
        force=force,
        check_samples=check_samples,
        progress=not quiet,
        trust_pickled_code=trust_pickled_code,
    )
    click.echo(str(path))


@click.command("recipes")
@click.argument("recipe", required=False, metavar="[NAME|PATH]")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def recipes_command(recipe: str | None, as_json: bool) -> None:
    """List the built-in recipes (one line each), or show every field of one recipe (a name or a
    path to your own YAML, which is validated)."""
    from selinet_compress.commands.common import write_json_output
    from selinet_compress.recipes import list_recipes, load_recipe
    from selinet_compress.targets import TARGETS

    recipes = [load_recipe(recipe)] if recipe else list_recipes()
    rows = []
    for item in recipes:
        support = {t: TARGETS.get(t)().supports(item) for t in TARGETS.names()}
        rows.append(
            {
                **item.to_dict(),
                "source": item.source,
                "targets_supported": [t for t, reason in support.items() if reason is None],
                "unsupported": {t: reason for t, reason in support.items() if reason is not None},
            }
        )
    if as_json:
        write_json_output("-", rows if recipe is None else rows[0])
        return
    if recipe is None:
        width = max(len(r["name"]) for r in rows)
        for row in rows:
            targets = ",".join(row["targets_supported"]) or "-"
            click.echo(f"{row['name']:<{width}}  {row['precision']:<13} {targets:<12} {row['description']}")
        return
    import yaml

    click.echo(yaml.safe_dump(rows[0], sort_keys=False, allow_unicode=True).rstrip())
