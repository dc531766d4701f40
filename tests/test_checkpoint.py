"""Checkpoint loading in every usual wrapping, torchvision branch weights, and bad files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from conftest import assert_one_line_error

from selinet_compress.checkpoint import load_branch_weights, load_model, save_checkpoint
from selinet_compress.errors import UserError
from selinet_compress.model.selinet import SeLiNet, build_model, config_for_ablation
from selinet_compress.model.trunks import mobilenet_v2_features, mobilenet_v3_large_features


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture(scope="module")
def reference() -> SeLiNet:
    return build_model(seed=7)


WRAPPINGS = {
    "bare": lambda sd: sd,
    "state_dict": lambda sd: {"state_dict": sd, "epoch": 3},
    "model_state_dict": lambda sd: {"model_state_dict": sd, "optimizer_state_dict": {}},
    "model": lambda sd: {"model": sd},
    "module.": lambda sd: {f"module.{k}": v for k, v in sd.items()},
    "_orig_mod.": lambda sd: {f"_orig_mod.{k}": v for k, v in sd.items()},
    "nested+both prefixes": lambda sd: {"state_dict": {f"module._orig_mod.{k}": v for k, v in sd.items()}},
}


@pytest.mark.parametrize("wrapping", sorted(WRAPPINGS))
def test_loads_every_usual_wrapping(tmp_path, reference, wrapping):
    path = tmp_path / "ckpt.pth"
    torch.save(WRAPPINGS[wrapping](reference.state_dict()), path)
    model, info = load_model(path)
    assert _same_weights(model, reference)
    assert info.config_source == "inferred from keys"


@pytest.mark.parametrize("ablation", ["body", "body+aesthetics", "body+aesthetics+attention"])
def test_ablation_config_is_inferred_from_a_bare_state_dict(tmp_path, ablation):
    model = SeLiNet(config_for_ablation(ablation))
    torch.save(model.state_dict(), tmp_path / "a.pt")
    loaded, _ = load_model(tmp_path / "a.pt")
    assert loaded.config.ablation == ablation and _same_weights(loaded, model)


def test_own_format_round_trip_keeps_config_and_metadata(tmp_path):
    model = SeLiNet(config_for_ablation("body+aesthetics").replace(dropout=0.2))
    save_checkpoint(model, tmp_path / "own.pt", {"note": "x"})
    raw = torch.load(tmp_path / "own.pt", weights_only=True)  # loadable without unpickling code
    assert raw["format"] == "selinet-compress/checkpoint"
    loaded, info = load_model(tmp_path / "own.pt")
    assert loaded.config == model.config and info.metadata["note"] == "x"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left


@pytest.mark.parametrize("with_classifier", [True, False])
@pytest.mark.parametrize(
    "branch,trunk", [("body", mobilenet_v3_large_features), ("aesthetics", mobilenet_v2_features)]
)
def test_torchvision_state_dict_loads_into_its_branch(tmp_path, branch, trunk, with_classifier):
    features = trunk()
    torch.nn.init.normal_(features[0][0].weight)
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    if with_classifier:
        state["classifier.0.weight"] = torch.zeros(1280, 960)
        state["classifier.3.bias"] = torch.zeros(1000)
    torch.save(state, tmp_path / "tv.pth")
    model = build_model(seed=0)
    load_branch_weights(model, branch, tmp_path / "tv.pth")
    assert _same_weights(getattr(model, branch).features, features)


def test_torchvision_weights_of_the_wrong_trunk_are_refused(tmp_path):
    torch.save(
        {f"features.{k}": v for k, v in mobilenet_v2_features().state_dict().items()}, tmp_path / "v2.pth"
    )
    with pytest.raises(UserError, match="does not fit the body trunk"):
        load_branch_weights(build_model(), "body", tmp_path / "v2.pth")


def test_a_torchvision_file_given_as_a_checkpoint_names_the_likely_cause(tmp_path):
    torch.save(
        {f"features.{k}": v for k, v in mobilenet_v3_large_features().state_dict().items()},
        tmp_path / "tv.pth",
    )
    with pytest.raises(UserError, match="torchvision MobileNet state_dict"):
        load_model(tmp_path / "tv.pth")


class _Payload:
    """Unpickling this runs code (creates a marker file): the reason pickles need a flag."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


def test_pickle_is_never_executed_without_the_flag(tmp_path, cli):
    marker = tmp_path / "pwned"
    torch.save({"state_dict": _Payload(str(marker))}, tmp_path / "evil.pt")
    assert_one_line_error(cli("inspect", tmp_path / "evil.pt"), "--trust-pickled-code", "pickled")
    assert not marker.exists()
    with pytest.raises(UserError):  # with the flag the code does run (then no state_dict is found)
        load_model(tmp_path / "evil.pt", trust_pickled_code=True)
    assert marker.exists()


def test_whole_pickled_module_loads_only_with_the_flag(tmp_path, reference, cli):
    torch.save(reference, tmp_path / "whole.pt")
    assert_one_line_error(cli("inspect", tmp_path / "whole.pt"), "SeLiNet", "--trust-pickled-code")
    result = cli("inspect", tmp_path / "whole.pt", "--trust-pickled-code", "--json")
    assert result.exit_code == 0 and json.loads(result.output)["format"] == "pickled-module"


def _bad_files(tmp_path: Path, reference: SeLiNet) -> dict[str, tuple[Path, str]]:
    good = tmp_path / "good.pt"
    save_checkpoint(reference, good)
    data = good.read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 3])
    (tmp_path / "notes.txt").write_text("epoch 3: loss 0.2\n")
    wrong_keys = {k.replace("fusion.", "fuse."): v for k, v in reference.state_dict().items()}
    torch.save(wrong_keys, tmp_path / "keys.pt")
    wrong_shape = dict(reference.state_dict())
    wrong_shape["fusion.3.weight"] = torch.zeros(128, 512)
    torch.save(wrong_shape, tmp_path / "shape.pt")
    return {
        "missing file": (tmp_path / "nope.pt", "no such file"),
        "truncated": (tmp_path / "trunc.pt", "truncated"),
        "text file": (tmp_path / "notes.txt", "not a PyTorch checkpoint"),
        "wrong keys": (tmp_path / "keys.pt", "missing (first: fusion.0.weight"),
        "wrong shapes": (tmp_path / "shape.pt", "fusion.3.weight (128, 512) vs (256, 512)"),
    }


@pytest.mark.parametrize("case", ["missing file", "truncated", "text file", "wrong keys", "wrong shapes"])
def test_bad_checkpoint_gives_one_line_error(tmp_path, reference, cli, case):
    path, fragment = _bad_files(tmp_path, reference)[case]
    assert_one_line_error(cli("inspect", path), fragment)
