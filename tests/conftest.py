"""Shared fixtures: tiny, fast, made in tmp dirs; nothing downloaded, nothing committed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
TORCHVISION_FIXTURE = FIXTURES / "torchvision_mobilenet"
sys.path.insert(0, str(TORCHVISION_FIXTURE))  # deterministic_weights.py


@pytest.fixture(scope="session")
def full_checkpoint(tmp_path_factory) -> Path:
    """A random-init full SeLiNet saved in the project's format (seed 0)."""
    from selinet_compress.checkpoint import init_checkpoint

    return init_checkpoint(tmp_path_factory.mktemp("ckpt") / "full.pt", seed=0)


@pytest.fixture
def cli():
    """Invoke the CLI in-process; returns click's Result."""
    from click.testing import CliRunner

    from selinet_compress.cli import main

    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(main, [str(a) for a in args], catch_exceptions=False)

    return invoke


def assert_one_line_error(result, *fragments: str) -> None:
    """A user mistake: non-zero exit, a single 'error:' line naming the problem, no traceback."""
    assert result.exit_code != 0, result.output
    output = result.output  # click >= 8.2: stdout and stderr interleaved, as a user sees them
    assert "Traceback" not in output
    error_lines = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1, output
    for fragment in fragments:
        assert fragment in error_lines[0], error_lines[0]


def pytest_addoption(parser):
    parser.addoption(
        "--slow", action="store_true", help="also run @pytest.mark.slow end-to-end tests (CI does)"
    )


def pytest_collection_modifyitems(config, items):
    if config.getoption("--slow"):
        return
    skip = pytest.mark.skip(reason="slow end-to-end test: run with --slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
