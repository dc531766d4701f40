"""MobileNetV3-Large and MobileNetV2 feature trunks with torchvision's exact state_dict layout.

torchvision does not import beside the CPU torch wheel we pin, so the trunks are written here.
Module names mirror torchvision 0.29 (``features.<i>.block.<j>.<k>`` for V3,
``features.<i>.conv.<j>`` for V2) so that torchvision / ImageNet / ReLIC weight files load
unchanged; ``tests/test_trunks.py`` proves key, shape and output parity against a fixture.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round channel counts the way torchvision (and the MobileNet papers) do."""
    new_value = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new_value < 0.9 * value:  # never round down by more than 10 %
        new_value += divisor
    return new_value


class ConvNormActivation(nn.Sequential):
    """Conv2d -> BatchNorm2d -> optional activation, indexed 0/1/2 like torchvision's."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        activation: type[nn.Module] | None = nn.ReLU,
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
    ) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride,
                padding=(kernel_size - 1) // 2,
                groups=groups,
                bias=False,
            ),
            nn.BatchNorm2d(out_channels, eps=bn_eps, momentum=bn_momentum),
        ]
        if activation is not None:
            layers.append(activation(inplace=True))
        super().__init__(*layers)


class SqueezeExcitation(nn.Module):
    """torchvision.ops.SqueezeExcitation with ReLU / Hardsigmoid, as MobileNetV3 uses it."""

    def __init__(self, channels: int, squeeze_channels: int) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze_channels, 1)
        self.fc2 = nn.Conv2d(squeeze_channels, channels, 1)
        self.activation = nn.ReLU()
        self.scale_activation = nn.Hardsigmoid()

    def forward(self, x: Tensor) -> Tensor:
        scale = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return scale * x


@dataclass(frozen=True)
class _V3Block:
    in_channels: int
    kernel: int
    expanded: int
    out_channels: int
    use_se: bool
    hardswish: bool
    stride: int


# torchvision's mobilenet_v3_large inverted_residual_setting (dilation 1, reduce_divider 1).
_V3_LARGE = (
    _V3Block(16, 3, 16, 16, False, False, 1),
    _V3Block(16, 3, 64, 24, False, False, 2),
    _V3Block(24, 3, 72, 24, False, False, 1),
    _V3Block(24, 5, 72, 40, True, False, 2),
    _V3Block(40, 5, 120, 40, True, False, 1),
    _V3Block(40, 5, 120, 40, True, False, 1),
    _V3Block(40, 3, 240, 80, False, True, 2),
    _V3Block(80, 3, 200, 80, False, True, 1),
    _V3Block(80, 3, 184, 80, False, True, 1),
    _V3Block(80, 3, 184, 80, False, True, 1),
    _V3Block(80, 3, 480, 112, True, True, 1),
    _V3Block(112, 3, 672, 112, True, True, 1),
    _V3Block(112, 5, 672, 160, True, True, 2),
    _V3Block(160, 5, 960, 160, True, True, 1),
    _V3Block(160, 5, 960, 160, True, True, 1),
)
_V3_BN = {"bn_eps": 1e-3, "bn_momentum": 0.01}


class InvertedResidualV3(nn.Module):
    def __init__(self, cfg: _V3Block) -> None:
        super().__init__()
        act = nn.Hardswish if cfg.hardswish else nn.ReLU
        layers: list[nn.Module] = []
        if cfg.expanded != cfg.in_channels:
            layers.append(ConvNormActivation(cfg.in_channels, cfg.expanded, 1, activation=act, **_V3_BN))
        layers.append(
            ConvNormActivation(
                cfg.expanded,
                cfg.expanded,
                cfg.kernel,
                cfg.stride,
                groups=cfg.expanded,
                activation=act,
                **_V3_BN,
            )
        )
        if cfg.use_se:
            layers.append(SqueezeExcitation(cfg.expanded, make_divisible(cfg.expanded // 4)))
        layers.append(ConvNormActivation(cfg.expanded, cfg.out_channels, 1, activation=None, **_V3_BN))
        self.block = nn.Sequential(*layers)
        self.use_res_connect = cfg.stride == 1 and cfg.in_channels == cfg.out_channels

    def forward(self, x: Tensor) -> Tensor:
        out = self.block(x)
        return out + x if self.use_res_connect else out


MOBILENET_V3_LARGE_CHANNELS = 960
MOBILENET_V2_CHANNELS = 1280


def mobilenet_v3_large_features() -> nn.Sequential:
    """torchvision ``mobilenet_v3_large().features``: N x 3 x H x W -> N x 960 x H/32 x W/32."""
    layers: list[nn.Module] = [ConvNormActivation(3, 16, 3, 2, activation=nn.Hardswish, **_V3_BN)]
    layers += [InvertedResidualV3(cfg) for cfg in _V3_LARGE]
    layers.append(ConvNormActivation(160, MOBILENET_V3_LARGE_CHANNELS, 1, activation=nn.Hardswish, **_V3_BN))
    return nn.Sequential(*layers)


class InvertedResidualV2(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = round(in_channels * expand_ratio)
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvNormActivation(in_channels, hidden, 1, activation=nn.ReLU6))
        layers += [
            ConvNormActivation(hidden, hidden, 3, stride, groups=hidden, activation=nn.ReLU6),
            nn.Conv2d(hidden, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        self.conv = nn.Sequential(*layers)
        self.use_res_connect = stride == 1 and in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv(x)
        return out + x if self.use_res_connect else out


# torchvision's mobilenet_v2 inverted_residual_setting: expansion t, channels c, repeats n, stride s.
_V2_SETTING = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def mobilenet_v2_features() -> nn.Sequential:
    """torchvision ``mobilenet_v2().features``: N x 3 x H x W -> N x 1280 x H/32 x W/32."""
    layers: list[nn.Module] = [ConvNormActivation(3, 32, 3, 2, activation=nn.ReLU6)]
    in_channels = 32
    for expand_ratio, channels, repeats, stride in _V2_SETTING:
        for i in range(repeats):
            layers.append(InvertedResidualV2(in_channels, channels, stride if i == 0 else 1, expand_ratio))
            in_channels = channels
    layers.append(ConvNormActivation(in_channels, MOBILENET_V2_CHANNELS, 1, activation=nn.ReLU6))
    return nn.Sequential(*layers)
