"""SeLiNet structure: shapes per ablation, any spatial size, sizes against the paper."""

from __future__ import annotations

import pytest
import torch

from selinet_compress.model.selinet import (
    ABLATIONS,
    PAPER_SIZE_MB,
    AttentionPool,
    SeLiNet,
    SeLiNetConfig,
    build_model,
    config_for_ablation,
    parameter_parts,
)


@pytest.mark.parametrize("ablation", sorted(ABLATIONS))
def test_each_ablation_runs_and_names_its_outputs(ablation):
    model = SeLiNet(config_for_ablation(ablation)).eval()
    with torch.no_grad():
        outputs = model(*model.example_inputs(batch_size=2))
    assert [tuple(o.shape) for o in outputs] == [(2, 26), (2, 3)][: len(model.output_names)]
    assert model.config.ablation == ablation


def test_full_model_matches_paper_size_within_three_percent():
    model = SeLiNet()
    total = sum(parameter_parts(model).values())
    assert total == sum(p.numel() for p in model.parameters())
    assert 6.9e6 < total < 7.2e6
    assert abs(total * 4 / 1e6 / PAPER_SIZE_MB["full"] - 1) < 0.03


@pytest.mark.parametrize("hw", [(4, 4), (7, 7), (3, 5)])
def test_attention_pool_works_for_any_spatial_size(hw):
    pool = AttentionPool(16)
    x = torch.randn(2, 16, *hw)
    out = pool(x)
    assert out.shape == (2, 16)
    # a convex combination of positions: each channel lies between its min and max over positions
    flat = x.flatten(2)
    assert torch.all(out <= flat.max(-1).values + 1e-6) and torch.all(out >= flat.min(-1).values - 1e-6)


def test_attention_with_hidden_layer_and_other_input_sizes():
    config = SeLiNetConfig(body_size=224, context_size=160, attention_hidden=32)
    model = SeLiNet(config).eval()
    with torch.no_grad():
        emotions, sentiments = model(*model.example_inputs(1))
    assert emotions.shape == (1, 26) and sentiments.shape == (1, 3)


def test_build_model_is_deterministic_per_seed_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a, b, c = build_model(seed=1), build_model(seed=1), build_model(seed=2)
    after = torch.rand(1)
    assert torch.equal(before, after)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_dropout_does_not_change_state_dict_keys():
    assert list(SeLiNet(SeLiNetConfig(dropout=0.3)).state_dict()) == list(SeLiNet().state_dict())


def test_config_round_trip_and_validation():
    config = SeLiNetConfig(dropout=0.1, use_attention=False)
    assert SeLiNetConfig.from_dict(config.to_dict()) == config
    from selinet_compress.errors import UserError

    with pytest.raises(UserError, match="did you mean 'dropout'"):
        SeLiNetConfig.from_dict({"droput": 0.1})
    with pytest.raises(UserError, match="dropout"):
        SeLiNetConfig.from_dict({"dropout": 1.5})
    with pytest.raises(UserError, match="true or false"):
        SeLiNetConfig.from_dict({"use_attention": "yes"})
