"""The command line: help everywhere, version, init/inspect, and a light import."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import assert_one_line_error

from selinet_compress import __version__
from selinet_compress.cli import COMMANDS


def test_version(cli):
    result = cli("--version")
    assert result.exit_code == 0 and __version__ in result.output


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help(cli, command):
    result = cli(command, "--help")
    assert result.exit_code == 0 and "Usage:" in result.output


def test_cli_import_is_light():
    """--help must stay fast: loading the CLI and listing commands imports no heavy library."""
    code = (
        "import sys; from click.testing import CliRunner; from selinet_compress.cli import main; "
        "r = CliRunner().invoke(main, ['--help']); assert r.exit_code == 0; "
        "heavy = [m for m in ('torch', 'tensorflow', 'onnx', 'onnxruntime', 'numpy') if m in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_init_and_inspect_json(tmp_path, cli):
    path = tmp_path / "m.pt"
    assert cli("init", path, "--seed", "3").exit_code == 0
    summary = json.loads(cli("inspect", path, "--json").output)
    assert 6.9e6 < summary["parameters"] < 7.2e6
    assert abs(summary["size_mb"] / 28.03 - 1) < 0.03
    assert set(summary["parts"]) == {
        "body trunk",
        "body attention+dense",
        "aesthetics trunk",
        "aesthetics attention+dense",
        "fusion",
        "heads",
    }
    assert sum(p["parameters"] for p in summary["parts"].values()) == summary["parameters"]
    assert summary["paper_size_mb"] == 28.03


@pytest.mark.parametrize(
    "flags,ablation",
    [
        (["--ablation", "body"], "body"),
        (["--no-attention", "--no-sentiment"], "body+aesthetics"),
        (["--no-sentiment"], "body+aesthetics+attention"),
    ],
)
def test_init_ablation_flags(tmp_path, cli, flags, ablation):
    path = tmp_path / "m.pt"
    assert cli("init", path, *flags).exit_code == 0
    assert json.loads(cli("inspect", path, "--json").output)["ablation"] == ablation


def test_init_refuses_to_overwrite(tmp_path, cli):
    path = tmp_path / "m.pt"
    path.write_text("precious")
    assert_one_line_error(cli("init", path), "exists", "--force")
    assert path.read_text() == "precious"


def test_init_with_branch_weights(tmp_path, cli, full_checkpoint):
    """A SeLiNet checkpoint can donate its body trunk; a MobileNetV2 file cannot fill the body."""
    import torch

    from selinet_compress.checkpoint import load_model
    from selinet_compress.model.trunks import mobilenet_v2_features

    assert cli("init", tmp_path / "m.pt", "--seed", "5", "--body-weights", full_checkpoint).exit_code == 0
    donor, new = load_model(full_checkpoint)[0], load_model(tmp_path / "m.pt")[0]
    assert torch.equal(donor.body.features[0][0].weight, new.body.features[0][0].weight)
    assert not torch.equal(donor.aesthetics.features[0][0].weight, new.aesthetics.features[0][0].weight)
    torch.save(
        {f"features.{k}": v for k, v in mobilenet_v2_features().state_dict().items()}, tmp_path / "v2.pth"
    )
    result = cli("init", tmp_path / "x.pt", "--body-weights", tmp_path / "v2.pth")
    assert_one_line_error(result, "does not fit the body trunk")
    assert not (tmp_path / "x.pt").exists()
