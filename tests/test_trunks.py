"""Parity with torchvision 0.29.1: same state_dict keys and shapes, same feature outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import TORCHVISION_FIXTURE
from deterministic_weights import input_batch, tensor_for

from selinet_compress.model.trunks import mobilenet_v2_features, mobilenet_v3_large_features

REFERENCE = json.loads((TORCHVISION_FIXTURE / "reference.json").read_text())
TRUNKS = {"mobilenet_v3_large": mobilenet_v3_large_features, "mobilenet_v2": mobilenet_v2_features}


@pytest.mark.parametrize("name", sorted(TRUNKS))
def test_trunk_has_torchvision_keys_and_shapes(name):
    ours = [
        (f"features.{k}", list(v.shape), str(v.dtype).removeprefix("torch."))
        for k, v in TRUNKS[name]().state_dict().items()
    ]
    reference = [
        entry for entry in REFERENCE["models"][name]["state_dict"] if entry[0].startswith("features.")
    ]
    assert ours == [(key, shape, dtype) for key, shape, dtype in reference]
    n_params = sum(p.numel() for p in TRUNKS[name]().parameters())
    assert n_params == REFERENCE["models"][name]["num_params_features"]


@pytest.mark.parametrize("name", sorted(TRUNKS))
def test_trunk_reproduces_torchvision_outputs(name):
    ref = REFERENCE["models"][name]
    trunk = TRUNKS[name]().eval()
    state = {
        k: torch.from_numpy(np.asarray(tensor_for(f"features.{k}", tuple(v.shape))))
        for k, v in trunk.state_dict().items()
    }
    trunk.load_state_dict(state)
    with torch.no_grad():
        out = trunk(torch.from_numpy(input_batch(tuple(ref["features_input_shape"])))).numpy()
    expected = np.load(TORCHVISION_FIXTURE / ref["features_output_file"])
    assert out.shape == tuple(ref["features_output_shape"])
    assert np.abs(out - expected).max() <= 1e-4
