"""The ``selinet-compress`` command line: a thin, lazy layer over the Python API.

Each command lives in ``selinet_compress/commands/<module>.py`` and is imported only when it
runs (or when ``--help`` lists it), and command modules import torch / onnx / tensorflow only
inside their functions, so ``selinet-compress --help`` stays fast.
"""

from __future__ import annotations

import importlib
import sys

import click

from selinet_compress import __version__

# command name -> "module:attribute" under selinet_compress.commands
COMMANDS: dict[str, str] = {
    "bench": "bench_cmds:bench_command",
    "demo": "demo_cmds:demo_command",
    "evaluate": "eval_cmds:evaluate_command",
    "init": "model_cmds:init_command",
    "inspect": "model_cmds:inspect_command",
    "quantize": "quantize_cmds:quantize_command",
    "recipes": "quantize_cmds:recipes_command",
    "report": "report_cmds:report_command",
    "sweep": "sweep_cmds:sweep_command",
    "synth": "data_cmds:synth_command",
    "train": "train_cmds:train_command",
}


class LazyGroup(click.Group):
    """A click group whose commands are imported on first use, and which turns the toolkit's
    UserError into a one-line message and exit code 2 instead of a traceback."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attribute = target.split(":")
        module = importlib.import_module(f"selinet_compress.commands.{module_name}")
        return getattr(module, attribute)

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        from selinet_compress.errors import UserError

        try:
            return super().invoke(ctx)
        except UserError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted: finished artifacts are kept, partial ones were removed", err=True)
            sys.exit(130)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="selinet-compress")
def main() -> None:
    """Compress a SeLiNet emotion-recognition checkpoint to int8 ONNX / TFLite and measure what it
    costs in AP and buys in size and speed."""
    import warnings

    # torch 2.13's own export internals trip this deprecation on every graph capture; it is not
    # the user's to act on and would bury our progress lines.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)", category=FutureWarning)


if __name__ == "__main__":  # pragma: no cover
    main()
