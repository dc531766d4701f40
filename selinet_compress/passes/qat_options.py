"""The ``qat:`` section of a recipe: the knobs of quantization-aware fine-tuning (int8_qat).

Kept free of heavy imports (it is registered whenever a recipe is loaded); the work itself is in
:mod:`selinet_compress.passes.qat`. Epoch numbers are 1-based, as the training log prints them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from selinet_compress.recipes import SECTIONS


@SECTIONS.register("qat")
@dataclass(frozen=True)
class QatOptions:
    """Quantization-aware fine-tuning: how long, how fast, and when to stop adapting statistics.

    The quantizer follows the recipe's top-level fields: ``per_channel`` (symmetric int8 weights,
    per output channel or per tensor) and ``keep_float_modules``; activations are always int8
    per-tensor affine in the PyTorch graph (what TFLite's integer kernels take); the ONNX file
    re-expresses them exactly as uint8 when the recipe's ``activation_type`` is uint8.
    """

    epochs: int = 3
    lr: float = 1e-4  # a tenth of the paper's training lr: QAT nudges a trained model
    lr_step: int = 2  # epochs between lr decays (x lr_decay)
    lr_decay: float = 0.1
    momentum: float = 0.9
    optimizer: Literal["sgd", "adamw"] = "sgd"  # the training API's optimizers
    weight_decay: float = 5e-4
    batch_size: int = 26
    # Samples per epoch from the train split / validation samples per epoch (None: all).
    limit_train: int | None = None
    limit_val: int | None = None
    augment: bool = True
    seed: int = 0
    # From this epoch on, BatchNorm uses (and stops updating) its running statistics, so the
    # folded conv weights stop moving under the weight quantizers. Default 1 (from the start): a
    # trained checkpoint's statistics already fit the data, training then sees the activations the
    # deployed model will see, and the observers learn those ranges. With batch statistics, ranges
    # learned in training can miss the running-statistics activations of the deployed model
    # (measured: outputs collapsed on a checkpoint whose statistics did not fit the data).
    freeze_bn_epoch: int | None = 1
    # From this epoch on, observers stop updating the quantization ranges (scales are final).
    freeze_observers_epoch: int | None = 3
    # Moving-average constant of the range observers (activations and weights).
    averaging_constant: float = 0.01
    # Train (and ship) hard-swish as x * relu6(x + 3) / 6 with its own quantized steps: LiteRT's
    # XNNPACK then runs every op in int8 (its int8 HARD_SWISH is not delegated): measured 8.1 vs
    # 9.1 ms (the int8_static file 7.1 ms); onnxruntime unchanged (14.8 vs 14.4 ms) but with 60 /
    # 102 Q / DQ left unfused instead of 40 / 41, and 80 more fake-quantizers to train.
    pseudo_hardswish: bool = False
    # How the .tflite is made: "litert_torch" converts the QAT int8 graph itself (learned weights
    # and ranges); "onnx2tf_calibrated" sends the QAT-tuned float weights through the TFLite
    # target's calibrated full-integer path (ranges re-measured on calibration samples).
    tflite_route: Literal["litert_torch", "onnx2tf_calibrated"] = "litert_torch"

    def __post_init__(self) -> None:
        checks = {
            "epochs": self.epochs >= 1,
            "lr": self.lr > 0 and math.isfinite(self.lr),
            "lr_step": self.lr_step >= 1,
            "lr_decay": 0 < self.lr_decay <= 1,
            "batch_size": self.batch_size >= 2,  # BatchNorm needs 2+ samples in training mode
            "averaging_constant": 0 < self.averaging_constant <= 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid {bad[0]}: {getattr(self, bad[0])!r}")
        if self.freeze_bn_epoch is not None and self.freeze_bn_epoch < 1:
            raise ValueError(f"freeze_bn_epoch is a 1-based epoch number, got {self.freeze_bn_epoch}")
        # Observers frozen from epoch 1 would never see data: every range would stay undefined.
        if self.freeze_observers_epoch is not None and self.freeze_observers_epoch < 2:
            raise ValueError(
                f"freeze_observers_epoch must be 2 or later (the observers learn the ranges in epoch 1), "
                f"got {self.freeze_observers_epoch}"
            )

    def freeze_bn(self, epoch: int) -> bool:
        """Whether BatchNorm statistics are frozen during 0-based ``epoch``."""
        return self.freeze_bn_epoch is not None and epoch + 1 >= self.freeze_bn_epoch

    def freeze_observers(self, epoch: int) -> bool:
        """Whether the range observers are frozen during 0-based ``epoch``."""
        return self.freeze_observers_epoch is not None and epoch + 1 >= self.freeze_observers_epoch
