"""Training: the paper's loss, paired augmentation, a tiny end-to-end run, resume after SIGKILL,
and bad input. Models run at reduced input sizes here so the suite stays fast."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import assert_one_line_error

from selinet_compress.checkpoint import load_model, save_checkpoint
from selinet_compress.model.selinet import SeLiNetConfig, build_model, config_for_ablation
from selinet_compress.train import TrainConfig, TrainHooks, paper_loss, run_paths, train, weighted_l2

SMALL = SeLiNetConfig(body_size=64, context_size=64)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    from click.testing import CliRunner

    from selinet_compress.cli import main

    out = tmp_path_factory.mktemp("data") / "synth"
    result = CliRunner().invoke(
        main,
        [
            "synth",
            str(out),
            "--layout",
            "arrays",
            "--train",
            "48",
            "--val",
            "24",
            "--test",
            "8",
            "--seed",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    return out


def test_weighted_l2_matches_the_paper_formula():
    pred = torch.tensor([[0.9, 0.2, 0.0], [0.1, 0.7, 0.3]])
    target = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    # class 0 true twice -> 1/2, class 1 once -> 1, class 2 never -> 1e-4
    expected = ((0.1**2 + 0.9**2) / 2) + (0.2**2 + 0.3**2) + 1e-4 * (0.0 + 0.3**2)
    assert weighted_l2(pred, target).item() == pytest.approx(expected, rel=1e-6)


def test_total_loss_is_lambda_weighted_and_bce_is_selectable():
    e, s = torch.randn(4, 26), torch.randn(4, 3)
    te, ts = (torch.rand(4, 26) < 0.2).float(), (torch.rand(4, 3) < 0.5).float()
    expected = 0.8 * weighted_l2(e, te) + 0.2 * weighted_l2(s, ts)
    assert paper_loss(e, te, s, ts, 0.8).item() == pytest.approx(expected.item())
    assert paper_loss(e, te, None, ts, 0.8).item() == pytest.approx(weighted_l2(e, te).item())
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    assert paper_loss(e, te, s, ts, 0.5, "bce").item() == pytest.approx(
        (0.5 * bce(e, te) + 0.5 * bce(s, ts)).item()
    )


def test_augmentation_flips_body_and_context_together_and_is_seeded():
    from selinet_compress.augment import PairedAugmenter

    rng = np.random.default_rng(0)
    body = np.zeros((32, 16, 16, 3), np.uint8)
    body[:, :, :8] = 255  # left half white: a flip moves it to the right
    context = np.zeros((32, 24, 24, 3), np.uint8)
    context[:, :, :12] = 255
    augment = PairedAugmenter(strength=0.0)  # flip only
    out_body, out_context = augment(body, context, seed=3)
    body_flipped = out_body[:, 8, 12, 0] > 127
    context_flipped = out_context[:, 12, 18, 0] > 127
    assert np.array_equal(body_flipped, context_flipped)
    assert 0 < body_flipped.sum() < 32  # some flipped, some not
    again = augment(body, context, seed=3)[0]
    assert np.array_equal(again, out_body)
    colour = PairedAugmenter()(
        rng.integers(0, 255, (8, 16, 16, 3), dtype=np.uint8),
        rng.integers(0, 255, (8, 24, 24, 3), dtype=np.uint8),
        seed=1,
    )
    assert colour[0].dtype == np.uint8 and colour[1].shape == (8, 24, 24, 3)


def test_tiny_training_run_writes_best_last_state_and_history(tiny_data, tmp_path):
    out = tmp_path / "m.pt"
    cfg = TrainConfig(epochs=2, batch_size=16, lr=0.01, workers=1, eval_batch_size=32)
    result = train(tiny_data, out, cfg, model_config=SMALL, progress=False, log=lambda _: None)
    paths = run_paths(out)
    assert all(p.exists() for p in paths.values())
    assert [h["epoch"] for h in result.history] == [1, 2]
    assert all(np.isfinite(h["loss"]) and 0 <= h["val_map"] <= 1 for h in result.history)
    best, _ = load_model(out)
    assert best.config == SMALL
    assert result.best_map == max(h["val_map"] for h in result.history)
    meta = torch.load(out, weights_only=True)["metadata"]["training"]
    assert meta["epoch"] == result.best_epoch and meta["freeze_trunks"] is False
    sidecar = json.loads(out.with_name("m.pt.json").read_text())
    assert sidecar["best_val_map"] == result.best_map and len(sidecar["history"]) == 2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left
    with pytest.raises(Exception, match="--resume"):  # never silently overwrites a run
        train(tiny_data, out, cfg, model_config=SMALL, progress=False, log=lambda _: None)


@pytest.mark.parametrize("ablation", ["body", "body+aesthetics", "body+aesthetics+attention"])
def test_ablation_configs_train(tiny_data, tmp_path, ablation):
    config = config_for_ablation(ablation, SMALL)
    result = train(
        tiny_data,
        tmp_path / "a.pt",
        TrainConfig(epochs=1, batch_size=16, limit_train=32),
        model_config=config,
        progress=False,
        log=lambda _: None,
    )
    assert load_model(result.best)[0].config.ablation == ablation


def test_pretrained_trunks_are_frozen_up_to_their_last_layer(tiny_data, tmp_path):
    init = tmp_path / "init.pt"
    model = build_model(SMALL, seed=0)
    save_checkpoint(model, init, {"init": {"branch_weights": {"body": "imagenet.pth"}}})
    result = train(
        tiny_data,
        tmp_path / "ft.pt",
        TrainConfig(epochs=1, batch_size=16, limit_train=32),
        init=init,
        progress=False,
        log=lambda _: None,
    )
    tuned = load_model(result.last)[0]
    assert torch.equal(tuned.body.features[3].block[0][0].weight, model.body.features[3].block[0][0].weight)
    assert torch.equal(tuned.body.features[0][1].running_mean, model.body.features[0][1].running_mean)
    assert not torch.equal(tuned.body.features[-1][0].weight, model.body.features[-1][0].weight)
    assert not torch.equal(tuned.fusion[0].weight, model.fusion[0].weight)


def test_nan_loss_stops_with_a_message_and_keeps_the_last_good_checkpoint(tiny_data, tmp_path):
    def blow_up(model, epoch):  # epoch 2 starts with weights that overflow the loss
        if epoch == 1:
            with torch.no_grad():
                model.emotion_head.out.weight.mul_(1e30)
                model.emotion_head.out.bias.fill_(1e30)

    out = tmp_path / "m.pt"
    with pytest.raises(Exception, match=r"loss became (nan|inf) at epoch 2.*kept: .*m\.pt"):
        train(
            tiny_data,
            out,
            TrainConfig(epochs=3, batch_size=16, limit_train=32),
            model_config=SMALL,
            progress=False,
            hooks=TrainHooks(on_epoch_start=blow_up),
            log=lambda _: None,
        )
    model, _ = load_model(out)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def _train_cli(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "selinet_compress.cli",
        "train",
        "--data",
        str(data),
        "--out",
        str(out),
        "--epochs",
        "3",
        "--batch-size",
        "8",
        "--limit-train",
        "40",
        "--lr",
        "0.01",
        "--seed",
        "5",
        "--workers",
        "1",
        *extra,
    ]


def _small_checkpoint(path: Path) -> Path:
    return save_checkpoint(build_model(SMALL, seed=2), path)


def test_sigkill_mid_epoch_then_resume_equals_an_uninterrupted_run(tiny_data, tmp_path):
    init = _small_checkpoint(tmp_path / "init.pt")
    reference = tmp_path / "ref" / "m.pt"
    reference.parent.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # identical arithmetic in both runs
    subprocess.run(
        _train_cli(tiny_data, reference, "--init", str(init)), check=True, env=env, capture_output=True
    )

    out = tmp_path / "run" / "m.pt"
    out.parent.mkdir()
    state = run_paths(out)["state"]
    proc = subprocess.Popen(
        _train_cli(tiny_data, out, "--init", str(init)),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while not state.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.5)  # into the second epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert state.exists(), "the first epoch never finished"
    interrupted_epoch = torch.load(state, weights_only=True)["epoch"]
    assert interrupted_epoch < 2, "the run finished before it was killed"
    for path in run_paths(out).values():  # whatever exists is complete and loadable
        if path.exists():
            torch.load(path, weights_only=True)
    subprocess.run(
        _train_cli(tiny_data, out, "--init", str(init), "--resume"), check=True, env=env, capture_output=True
    )
    resumed, expected = load_model(run_paths(out)["last"])[0], load_model(run_paths(reference)["last"])[0]
    for (name, a), b in zip(resumed.state_dict().items(), expected.state_dict().values(), strict=True):
        assert torch.allclose(a.float(), b.float(), atol=1e-5), name
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]


def test_init_of_another_config_is_refused(tiny_data, tmp_path, cli):
    init = _small_checkpoint(tmp_path / "init.pt")
    result = cli(
        "train", "--data", tiny_data, "--out", tmp_path / "m.pt", "--init", init, "--ablation", "body"
    )
    assert_one_line_error(result, "config differs")


def test_empty_training_split_is_refused(tiny_data, tmp_path, cli):
    empty = tmp_path / "empty"
    empty.mkdir()
    for path in tiny_data.glob("*.npy"):
        array = np.load(path)
        np.save(empty / path.name, array[:0] if path.name.startswith("train_") else array)
    assert_one_line_error(cli("train", "--data", empty, "--out", tmp_path / "m.pt"), "train")


def test_resume_without_a_run_and_bad_lr_are_clear_errors(tiny_data, tmp_path, cli):
    assert_one_line_error(
        cli("train", "--data", tiny_data, "--out", tmp_path / "m.pt", "--resume"), "nothing to resume"
    )
    assert_one_line_error(cli("train", "--data", tiny_data, "--out", tmp_path / "m.pt", "--lr", "-1"), "lr")
