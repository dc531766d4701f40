"""Options shared by several commands."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import click

trust_pickled_code_option = click.option(
    "--trust-pickled-code",
    is_flag=True,
    help="DANGEROUS: allow checkpoints that hold pickled Python objects (whole modules). "
    "Unpickling runs code from the file; use only for files from a source you trust.",
)


def ablation_options(func):
    """Flags of the paper's Table III rows, plus the config knobs a user may change."""
    options = [
        click.option(
            "--ablation",
            type=click.Choice(["body", "body+aesthetics", "body+aesthetics+attention", "full"]),
            default=None,
            help="A row of the paper's Table III (default: full).",
        ),
        click.option(
            "--aesthetics/--no-aesthetics",
            "use_aesthetics",
            default=None,
            help="With / without the aesthetics (ReLIC, MobileNetV2) branch.",
        ),
        click.option(
            "--attention/--no-attention",
            "use_attention",
            default=None,
            help="Attention pooling / global average pooling in the branches.",
        ),
        click.option(
            "--sentiment/--no-sentiment",
            "use_sentiment",
            default=None,
            help="With / without the sentiment head (and the boost it enables).",
        ),
        click.option(
            "--dropout",
            type=click.FloatRange(0.0, 0.99),
            default=None,
            help="Dropout after every fusion / head dense layer.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def config_from_options(ablation: str | None, **flags: Any):
    """A SeLiNetConfig from --ablation and the individual switches (switches win)."""
    from selinet_compress.model.selinet import SeLiNetConfig, config_for_ablation

    config = config_for_ablation(ablation) if ablation else SeLiNetConfig()
    changes = {k: v for k, v in flags.items() if v is not None}
    return config.replace(**changes) if changes else config


def write_json_output(path: str | Path | None, payload: Any) -> None:
    """--json OUT: '-' prints to stdout, a path is written atomically."""
    if path is None:
        return
    from selinet_compress.io import _json_default, write_json_atomic

    if str(path) == "-":
        click.echo(json.dumps(payload, indent=2, default=_json_default))
    else:
        write_json_atomic(path, payload)


@contextlib.contextmanager
def one_line_warnings():
    """Show Python warnings raised inside as single 'warning: ...' lines on stderr (no source
    line, no file path), each distinct message once."""
    import warnings

    seen: set[str] = set()

    def show(message, category, filename, lineno, file=None, line=None):  # the showwarning signature
        text = str(message)
        if text not in seen:
            seen.add(text)
            click.echo(f"warning: {text}", err=True)

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = show
        yield
