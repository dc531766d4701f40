"""``train``: the paper's training recipe, from scratch or from a checkpoint."""

from __future__ import annotations

from pathlib import Path

import click

from selinet_compress.commands.common import ablation_options, config_from_options


@click.command("train")
@click.option(
    "--data",
    "data_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="EMOTIC folder (arrays, csv or mat layout) with train and val splits.",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Best checkpoint (by validation mAP); OUT.last.pt and OUT.train-state.pt go beside it.",
)
@click.option(
    "--init",
    type=click.Path(path_type=Path),
    default=None,
    help="Start from this checkpoint (fine-tuning) instead of a random initialisation.",
)
@click.option("--epochs", type=click.IntRange(min=1), default=25, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=26, show_default=True)
@click.option("--lr", type=float, default=0.001, show_default=True, help="Initial SGD learning rate.")
@click.option(
    "--lr-decay",
    type=click.FloatRange(0, 1, min_open=True),
    default=0.1,
    show_default=True,
    help="Factor applied to the learning rate every --lr-step epochs.",
)
@click.option("--lr-step", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--momentum", type=click.FloatRange(0, 1), default=0.9, show_default=True)
@click.option(
    "--optimizer",
    type=click.Choice(["sgd", "adamw"]),
    default="sgd",
    show_default=True,
    help="The paper's SGD, or AdamW (reaches a usable model in far fewer steps from scratch).",
)
@click.option("--weight-decay", type=click.FloatRange(min=0), default=5e-4, show_default=True)
@click.option(
    "--lambda",
    "lam",
    type=click.FloatRange(0, 1),
    default=0.8,
    show_default=True,
    help="Weight of the emotion loss; the sentiment loss gets 1 - lambda.",
)
@click.option(
    "--loss",
    type=click.Choice(["l2", "bce"]),
    default="l2",
    show_default=True,
    help="The paper's weighted L2, or binary cross-entropy for comparison.",
)
@click.option(
    "--freeze-trunks/--train-trunks",
    default=None,
    help="Freeze both trunks up to their last layer (default: only when starting from pretrained trunks).",
)
@click.option(
    "--bn-momentum",
    type=click.FloatRange(0, 1, min_open=True),
    default=0.1,
    show_default=True,
    help="BatchNorm momentum while training (MobileNetV3's own 0.01 lags badly in short runs).",
)
@click.option("--augment/--no-augment", default=True, show_default=True)
@click.option(
    "--channels-last/--no-channels-last",
    default=True,
    show_default=True,
    help="Channels-last convolutions (faster on CPU; same results up to rounding).",
)
@click.option(
    "--bf16",
    is_flag=True,
    help="bfloat16 autocast: faster on CPUs with native bf16 "
    "(AVX512-BF16, AMX); the weights and the checkpoint stay float32.",
)
@ablation_options
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=1,
    show_default=True,
    help="Threads preparing batches ahead of the model.",
)
@click.option("--limit-train", type=click.IntRange(min=1), default=None, help="Use only N training samples.")
@click.option("--limit-val", type=click.IntRange(min=1), default=None, help="Validate on N samples.")
@click.option(
    "--layout",
    type=click.Choice(["arrays", "csv", "mat"]),
    default=None,
    help="Force the dataset layout (default: detected).",
)
@click.option("--resume", is_flag=True, help="Continue an interrupted run from its last finished epoch.")
@click.option("--force", is_flag=True, help="Start over even if OUT (or its run files) exist.")
def train_command(
    data_dir: Path,
    out: Path,
    init: Path | None,
    resume: bool,
    force: bool,
    ablation: str | None,
    use_aesthetics,
    use_attention,
    use_sentiment,
    dropout,
    **options,
) -> None:
    """Train SeLiNet with the paper's loss and schedule; keeps the best checkpoint by val mAP."""
    from selinet_compress.errors import UserError
    from selinet_compress.train import TrainConfig, train

    flags = {
        "use_aesthetics": use_aesthetics,
        "use_attention": use_attention,
        "use_sentiment": use_sentiment,
        "dropout": dropout,
    }
    wants_config = ablation is not None or any(v is not None for v in flags.values())
    model_config = config_from_options(ablation, **flags) if wants_config else None
    try:
        config = TrainConfig(**options)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    result = train(
        data_dir,
        out,
        config,
        init=init,
        model_config=model_config,
        resume=resume,
        force=force,
        log=lambda line: click.echo(line, err=True),
    )
    click.echo(
        f"best val mAP {result.best_map * 100:.2f} at epoch {result.best_epoch}; "
        f"{result.wall_seconds:.0f} s; last: {result.last}",
        err=True,
    )
    click.echo(str(result.best))
