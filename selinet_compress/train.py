"""Training and fine-tuning with the paper's recipe (Sec. V-A): weighted L2 loss, SGD with a step
decay, batch 26, augmentation, best checkpoint by validation mAP.

``train(...)`` is the API the ``train`` command and the QAT recipe share; ``TrainHooks`` lets QAT
swap in a fake-quantized model without a second training loop. Every epoch ends with three atomic
writes — best checkpoint (when it improved), last checkpoint, resume state — so a run killed at
any moment resumes from its last finished epoch and never leaves a half-written checkpoint.
"""

from __future__ import annotations

import math
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from selinet_compress.configs import dataclass_from_dict, to_plain
from selinet_compress.emotic.categories import sentiment_matrix, sentiments_from_emotions
from selinet_compress.errors import UserError
from selinet_compress.io import atomic_path, sha256_file, write_json_atomic
from selinet_compress.model.selinet import SeLiNet, SeLiNetConfig

NEGATIVE_WEIGHT = 1e-4  # the paper's W_i for emotions absent from a batch


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters; the defaults are the paper's (Sec. V-A)."""

    epochs: int = 25
    batch_size: int = 26
    lr: float = 0.001
    lr_decay: float = 0.1
    lr_step: int = 10  # epochs between decays (the paper gives the rate, not the step)
    momentum: float = 0.9
    # The paper's SGD; AdamW reaches a usable model in far fewer steps when training from scratch
    # (no pretrained trunks), e.g. the demo's few minutes on a CPU.
    optimizer: Literal["sgd", "adamw"] = "sgd"
    weight_decay: float = 5e-4
    lam: float = 0.8  # L = lam * L_emotion + (1 - lam) * L_sentiment (paper's lambda)
    loss: Literal["l2", "bce"] = "l2"
    freeze_trunks: bool | None = None  # None: freeze when the initial model has pretrained trunks
    augment: bool = True
    seed: int = 0
    workers: int = 1  # threads preparing the next batches while the model trains
    limit_train: int | None = None
    limit_val: int | None = None
    eval_batch_size: int = 64
    layout: str | None = None
    # Speed on CPU, not the recipe: channels-last convolutions and bfloat16 autocast (on CPUs with
    # native bf16 such as AVX512-BF16 / AMX shorten the step; elsewhere leave it off).
    channels_last: bool = True
    bf16: bool = False
    # BatchNorm momentum while training. torchvision's MobileNetV3 uses 0.01, tuned for long
    # ImageNet runs: in a short run its running statistics lag far behind the weights and the
    # eval-mode model scores near chance (measured: val mAP 12.7 vs 18.9 with the statistics
    # re-estimated). None keeps each layer's own momentum.
    bn_momentum: float | None = 0.1

    def __post_init__(self) -> None:
        checks = {
            "epochs": self.epochs >= 1,
            "batch_size": self.batch_size >= 1,
            "lr": self.lr > 0 and math.isfinite(self.lr),
            "lr_decay": 0 < self.lr_decay <= 1,
            "lr_step": self.lr_step >= 1,
            "lam": 0 <= self.lam <= 1,
            "workers": self.workers >= 0,
            "optimizer": self.optimizer in ("sgd", "adamw"),
            "bn_momentum": self.bn_momentum is None or 0 < self.bn_momentum <= 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid {bad[0]}: {getattr(self, bad[0])!r}")

    def to_dict(self) -> dict:
        return to_plain(self)

    @classmethod
    def from_dict(cls, data: dict, where: str = "training config") -> TrainConfig:
        return dataclass_from_dict(cls, data, where)


# ---------------------------------------------------------------------------------------------
# Loss


def weighted_l2(pred: Tensor, target: Tensor) -> Tensor:
    """The paper's Eq. 2 with per-batch dynamic weights (as in the reference code it follows):
    W_i = 1 / (number of samples in the batch for which emotion i is true) when that number is
    positive, 0.0001 otherwise; loss = sum over samples and classes of W_i * (y - y_hat)^2."""
    counts = target.sum(dim=0)
    weights = torch.where(counts > 0, 1.0 / counts.clamp(min=1.0), torch.full_like(counts, NEGATIVE_WEIGHT))
    return ((pred - target) ** 2 * weights).sum()


def paper_loss(
    emotions: Tensor,
    emotion_targets: Tensor,
    sentiments: Tensor | None,
    sentiment_targets: Tensor,
    lam: float = 0.8,
    kind: str = "l2",
) -> Tensor:
    """L_total = lam * L_emotion + (1 - lam) * L_sentiment (Eq. 3); ``kind='bce'`` swaps the
    weighted L2 for binary cross-entropy on logits (the paper's comparison)."""
    if kind == "bce":

        def term(pred: Tensor, target: Tensor) -> Tensor:
            return nn.functional.binary_cross_entropy_with_logits(pred, target)
    else:
        term = weighted_l2
    loss = term(emotions, emotion_targets)
    if sentiments is None:
        return loss
    return lam * loss + (1.0 - lam) * term(sentiments, sentiment_targets)


# ---------------------------------------------------------------------------------------------
# Trunk freezing


def frozen_layers(model: SeLiNet) -> list[nn.Module]:
    """Trunk layers frozen "till the second last layer" (paper, Sec. IV-B2): every layer of each
    trunk but its last (the 1x1 conv to 960 / 1280 channels) stays fixed."""
    branches = [b for b in (model.body, model.aesthetics) if b is not None]
    return [layer for branch in branches for layer in list(branch.features)[:-1]]


def freeze(model: SeLiNet) -> int:
    """Stop gradients through the frozen layers; returns how many parameters stay trainable."""
    for layer in frozen_layers(model):
        layer.requires_grad_(False)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def has_pretrained_trunks(metadata: dict) -> bool:
    """True when the checkpoint was initialised from torchvision / ReLIC weights or was trained."""
    init = metadata.get("init") or {}
    return bool(init.get("branch_weights")) or "training" in metadata


# ---------------------------------------------------------------------------------------------
# Hooks (QAT plugs in here)


@dataclass
class TrainHooks:
    """Points where a recipe changes training without copying the loop.

    prepare: model -> model to train (QAT: a fake-quantized graph).
    set_mode: puts the model in train / eval mode (QAT graphs need their own switch).
    on_epoch_start: called with (model, epoch) before each epoch (QAT: freeze BN / observers).
    runner: model -> a Runner used for validation.
    save: (model, path, metadata) writes a checkpoint atomically; load_state: (model, state_dict).
    """

    prepare: Callable[[nn.Module], nn.Module] = lambda model: model
    set_mode: Callable[[nn.Module, bool], None] | None = None
    on_epoch_start: Callable[[nn.Module, int], None] = lambda model, epoch: None
    runner: Callable[[nn.Module, SeLiNetConfig], Any] | None = None
    save: Callable[[nn.Module, Path, dict], Path] | None = None
    load_state: Callable[[nn.Module, dict], None] = lambda model, state: model.load_state_dict(state)


# ---------------------------------------------------------------------------------------------
# Data


class BatchLoader:
    """Prepares training batches (read, augment, preprocess) in worker threads, in order, a few
    batches ahead of the model; each batch's augmentation seed depends only on (seed, epoch, index)
    so results do not depend on the number of workers."""

    def __init__(self, split: Any, model_config: SeLiNetConfig, augment: bool, workers: int) -> None:
        from selinet_compress.emotic import preprocess

        self.split = split
        self.config = model_config
        self.augment = augment
        self.workers = workers
        self._preprocess = preprocess
        self._local = threading.local()
        self._membership = sentiment_matrix(
            model_config.sentiment_map, model_config.categories, model_config.sentiments
        )

    def _augmenter(self):
        if not hasattr(self._local, "augmenter"):
            from selinet_compress.augment import PairedAugmenter

            self._local.augmenter = PairedAugmenter()
        return self._local.augmenter

    def load(self, indices: np.ndarray, seed: int) -> dict[str, Tensor]:
        raw = self.split.load_raw(np.sort(indices))
        body, context = raw["body"], raw["context"]
        if self.augment:
            body, context = self._augmenter()(body, context, seed)
        inputs = self._preprocess(body, context, self.config)
        emotions = np.asarray(raw["emotions"], dtype=np.float32)
        return {
            "body": torch.from_numpy(inputs["body"]),
            "context": torch.from_numpy(inputs["context"]),
            "emotions": torch.from_numpy(emotions),
            "sentiments": torch.from_numpy(sentiments_from_emotions(emotions, self._membership)),
        }

    def epoch(self, batches: Sequence[np.ndarray], seeds: Sequence[int]) -> Iterator[dict[str, Tensor]]:
        if self.workers == 0:
            for indices, seed in zip(batches, seeds, strict=True):
                yield self.load(indices, seed)
            return
        with ThreadPoolExecutor(self.workers, thread_name_prefix="batch") as pool:
            ahead = self.workers + 1
            futures = [
                pool.submit(self.load, b, s) for b, s in zip(batches[:ahead], seeds[:ahead], strict=True)
            ]
            for i in range(len(batches)):
                batch = futures[i].result()
                nxt = i + ahead
                if nxt < len(batches):
                    futures.append(pool.submit(self.load, batches[nxt], seeds[nxt]))
                futures[i] = None  # type: ignore[call-overload]  # free the finished batch
                yield batch


# ---------------------------------------------------------------------------------------------
# The loop


@dataclass
class TrainResult:
    best: Path
    last: Path
    best_epoch: int
    best_map: float
    history: list[dict] = field(default_factory=list)
    trainable_parameters: int = 0
    wall_seconds: float = 0.0


def run_paths(out: Path) -> dict[str, Path]:
    """The files a run writes beside ``out`` (the best checkpoint)."""
    return {
        "best": out,
        "last": out.with_name(f"{out.stem}.last{out.suffix}"),
        "state": out.with_name(f"{out.stem}.train-state{out.suffix}"),
    }


def _set_mode(model: nn.Module, train: bool, frozen: list[nn.Module], hooks: TrainHooks) -> None:
    if hooks.set_mode is not None:
        hooks.set_mode(model, train)
        return
    model.train(train)
    for layer in frozen:  # frozen BatchNorm keeps its pretrained statistics
        layer.eval()


def _validate(
    model: nn.Module, model_config: SeLiNetConfig, data_dir: Path, cfg: TrainConfig, hooks: TrainHooks
) -> dict[str, float]:
    from selinet_compress.evaluate import evaluate
    from selinet_compress.runtimes.torch_runner import TorchRunner

    runner = hooks.runner(model, model_config) if hooks.runner else TorchRunner.from_model(model)
    with warnings.catch_warnings():  # rare classes absent from a small val split: the same every epoch
        warnings.simplefilter("ignore")
        result = evaluate(None, data_dir, split="val", batch_size=cfg.eval_batch_size, limit=cfg.limit_val,
                          layout=cfg.layout, progress=False, runner=runner)  # fmt: skip
    metrics = result.to_json()
    return {"val_map": float(metrics["map"]), "val_map_boosted": float(metrics["map_boosted"])}


def _initial_model(init: Path | None, model_config: SeLiNetConfig | None, seed: int) -> tuple[SeLiNet, dict]:
    from selinet_compress.checkpoint import load_model
    from selinet_compress.model.selinet import build_model

    if init is None:
        return build_model(model_config, seed=seed), {}
    model, info = load_model(init)
    if model_config is not None and model_config != model.config:
        raise UserError(
            f"--init {init} holds a '{model.config.ablation}' model whose config differs from the one "
            f"asked for ('{model_config.ablation}'); drop the ablation flags to fine-tune it as it is"
        )
    return model, info.metadata


def train(
    data_dir: str | Path,
    out: str | Path,
    config: TrainConfig | None = None,
    init: str | Path | None = None,
    model_config: SeLiNetConfig | None = None,
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
    hooks: TrainHooks | None = None,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Train (or fine-tune ``init``) on ``data_dir``'s train split, select by val mAP, write ``out``.

    ``resume=True`` continues from ``out``'s resume state after an interruption (same settings;
    ``epochs`` may be raised). Returns the paths, history and best validation mAP.
    """
    from tqdm.auto import tqdm

    from selinet_compress.emotic import open_split

    cfg = config or TrainConfig()
    hooks = hooks or TrainHooks()
    out, data_dir = Path(out), Path(data_dir)
    paths = run_paths(out)
    state: dict | None = None
    if resume:
        if not paths["state"].exists():
            raise UserError(f"nothing to resume: {paths['state']} does not exist")
        state = torch.load(paths["state"], map_location="cpu", weights_only=True)
        if state["train_config"] | {"epochs": cfg.epochs} != cfg.to_dict():
            changed = [
                k for k, v in cfg.to_dict().items() if k != "epochs" and state["train_config"].get(k) != v
            ]
            raise UserError(f"--resume with other settings than the interrupted run ({', '.join(changed)})")
        init = state["init"]
    elif not force and any(p.exists() for p in paths.values()):
        existing = next(p for p in paths.values() if p.exists())
        raise UserError(f"{existing} exists; pass --resume to continue that run or --force to start over")

    torch.manual_seed(cfg.seed)
    train_split = open_split(data_dir, "train", cfg.layout)
    open_split(data_dir, "val", cfg.layout)  # fail now, not after the first epoch
    if state is None:
        model, init_metadata = _initial_model(Path(init) if init else None, model_config, cfg.seed)
    else:  # the weights come from the resume state; only the architecture is needed here
        model, init_metadata = SeLiNet(SeLiNetConfig.from_dict(state["model_config"])), {}
    model_config = model.config
    if cfg.loss == "bce" and model_config.boost_threshold == SeLiNetConfig.boost_threshold:
        # logits: a sentiment is predicted above 0, not above the L2 target midpoint 0.5
        model = _with_config(model, model_config.replace(boost_threshold=0.0))
        model_config = model.config
    if state is not None:
        freeze_trunks = bool(state["freeze_trunks"])
    elif cfg.freeze_trunks is not None:
        freeze_trunks = cfg.freeze_trunks
    else:
        freeze_trunks = has_pretrained_trunks(init_metadata)
    frozen = frozen_layers(model) if freeze_trunks else []
    if freeze_trunks:
        freeze(model)
    if cfg.bn_momentum is not None:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.momentum = cfg.bn_momentum
    model = hooks.prepare(model)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    params = [p for p in model.parameters() if p.requires_grad]
    trainable = sum(p.numel() for p in params)
    if cfg.optimizer == "adamw":
        optimizer: torch.optim.Optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.lr_step, gamma=cfg.lr_decay)
    history: list[dict] = []
    best_map, best_epoch, start_epoch = -1.0, -1, 0
    if state is not None:
        hooks.load_state(model, state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        history, best_map, best_epoch = state["history"], state["best_map"], state["best_epoch"]
        start_epoch = state["epoch"] + 1
        log(f"resuming after epoch {start_epoch} of {cfg.epochs} (best val mAP {best_map * 100:.2f})")

    n_train = len(train_split) if cfg.limit_train is None else min(cfg.limit_train, len(train_split))
    loader = BatchLoader(train_split, model_config, cfg.augment, cfg.workers)
    provenance = {
        "data": str(data_dir),
        "init": str(init) if init else None,
        "init_sha256": sha256_file(init) if init else None,
        "freeze_trunks": freeze_trunks,
        "trainable_parameters": trainable,
        "train_samples": n_train,
    }
    started = time.perf_counter()
    for epoch in range(start_epoch, cfg.epochs):
        epoch_started = time.perf_counter()
        torch.manual_seed(cfg.seed * 1_000_003 + epoch)  # dropout etc.: a function of (seed, epoch) only
        order = np.random.default_rng([cfg.seed, epoch]).permutation(len(train_split))[:n_train]
        batches = [order[i : i + cfg.batch_size] for i in range(0, n_train, cfg.batch_size)]
        seeds = [(cfg.seed * 1_000_003 + epoch * 10_007 + b) % 2**31 for b in range(len(batches))]
        hooks.on_epoch_start(model, epoch)
        _set_mode(model, True, frozen, hooks)
        running, seen = 0.0, 0
        bar = tqdm(
            total=len(batches),
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            disable=not progress,
            leave=False,
            unit="batch",
            dynamic_ncols=True,
        )
        for step, batch in enumerate(loader.epoch(batches, seeds)):
            images = [batch["body"], batch["context"]] if model_config.use_aesthetics else [batch["body"]]
            if cfg.channels_last:
                images = [x.contiguous(memory_format=torch.channels_last) for x in images]
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
                outputs = [out.float() for out in model(*images)]
            loss = paper_loss(
                outputs[0],
                batch["emotions"],
                outputs[1] if len(outputs) > 1 else None,
                batch["sentiments"],
                cfg.lam,
                cfg.loss,
            )
            if not torch.isfinite(loss):
                bar.close()
                kept = [str(p) for p in (paths["best"], paths["last"]) if p.exists()]
                raise UserError(
                    f"the loss became {loss.item()} at epoch {epoch + 1}, step {step + 1} (learning rate "
                    f"{scheduler.get_last_lr()[0]:g} too high?); training stopped; "
                    + (
                        f"last good checkpoints kept: {', '.join(kept)}"
                        if kept
                        else "no checkpoint was written"
                    )
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            running += loss.item() * len(batch["emotions"])
            seen += len(batch["emotions"])
            bar.set_postfix(loss=f"{running / seen:.4f}")
            bar.update()
        bar.close()
        scheduler.step()
        _set_mode(model, False, frozen, hooks)
        metrics = _validate(model, model_config, data_dir, cfg, hooks)
        record = {
            "epoch": epoch + 1,
            "loss": running / max(seen, 1),
            "lr": optimizer.param_groups[0]["lr"],
            **metrics,
            "seconds": round(time.perf_counter() - epoch_started, 2),
        }
        history.append(record)
        improved = metrics["val_map"] > best_map
        if improved:
            best_map, best_epoch = metrics["val_map"], epoch + 1
        metadata = {
            "training": {
                **provenance,
                "train_config": cfg.to_dict(),
                "epoch": epoch + 1,
                "val_map": metrics["val_map"],
                "val_map_boosted": metrics["val_map_boosted"],
                "history": history,
            }
        }
        save = hooks.save or _save_selinet
        if improved:
            save(model, paths["best"], metadata)
        save(model, paths["last"], metadata)
        _save_state(
            paths["state"],
            model,
            optimizer,
            scheduler,
            epoch,
            history,
            best_map,
            best_epoch,
            cfg,
            model_config,
            init,
            freeze_trunks,
        )
        log(
            f"epoch {epoch + 1}/{cfg.epochs}  loss {record['loss']:.4f}"
            f"  val mAP {metrics['val_map'] * 100:.2f}"
            f" (boosted {metrics['val_map_boosted'] * 100:.2f})  {record['seconds']:.0f} s"
            + ("  * best" if improved else "")
        )
    result = TrainResult(
        paths["best"],
        paths["last"],
        best_epoch,
        best_map,
        history,
        trainable,
        round(time.perf_counter() - started, 1),
    )
    write_json_atomic(
        paths["best"].with_name(paths["best"].name + ".json"),
        {
            "kind": "training run",
            **provenance,
            "train_config": cfg.to_dict(),
            "model_config": model_config.to_dict(),
            "best_epoch": best_epoch,
            "best_val_map": best_map,
            "history": history,
            "torch": str(torch.__version__),
        },
    )
    return result


def _with_config(model: SeLiNet, config: SeLiNetConfig) -> SeLiNet:
    """The same weights under a config that differs only in post-processing settings."""
    clone = SeLiNet(config)
    clone.load_state_dict(model.state_dict())
    return clone


def _save_selinet(model: nn.Module, path: Path, metadata: dict) -> Path:
    from selinet_compress.checkpoint import save_checkpoint

    return save_checkpoint(model, path, metadata)  # type: ignore[arg-type]


def _save_state(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    epoch: int,
    history: list[dict],
    best_map: float,
    best_epoch: int,
    cfg: TrainConfig,
    model_config: SeLiNetConfig,
    init: str | Path | None,
    freeze_trunks: bool,
) -> None:
    state = {
        "epoch": epoch,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "history": history,
        "best_map": best_map,
        "best_epoch": best_epoch,
        "train_config": cfg.to_dict(),
        "model_config": model_config.to_dict(),
        "init": str(init) if init else None,
        "freeze_trunks": freeze_trunks,
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
