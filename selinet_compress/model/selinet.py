"""SeLiNet (Khargonkar et al.): body branch + aesthetics branch + multitask fusion.

Body: MobileNetV3-Large features (960 ch) -> attention pooling -> Linear 512.
Aesthetics (ReLIC backbone): MobileNetV2 features (1280 ch) -> attention pooling -> Linear 512.
Fusion: concat 1024 -> 512 -> 256 -> two heads 128 -> 26 emotions / 3 sentiments.
The network returns raw scores (no sigmoid): the paper trains them with a weighted L2 loss
against 0/1 targets and its post-processing adds sentiment scores before a sigmoid
(see ``selinet_compress.model.boost``).
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from selinet_compress.configs import dataclass_from_dict, to_plain
from selinet_compress.emotic.categories import CATEGORIES, DEFAULT_SENTIMENT_MAP, SENTIMENTS
from selinet_compress.errors import UserError
from selinet_compress.model.trunks import (
    MOBILENET_V2_CHANNELS,
    MOBILENET_V3_LARGE_CHANNELS,
    mobilenet_v2_features,
    mobilenet_v3_large_features,
)

# Normalisation of the reference code (Tandon-A/emotic), applied after scaling pixels to 0..1.
CONTEXT_MEAN = (0.4690646, 0.4407227, 0.40508908)
CONTEXT_STD = (0.2514227, 0.24312855, 0.24266963)
BODY_MEAN = (0.43832874, 0.3964344, 0.3706214)
BODY_STD = (0.24784276, 0.23621225, 0.2323653)


@dataclass(frozen=True)
class SeLiNetConfig:
    """Everything needed to rebuild a SeLiNet and to feed it: sizes, ablation switches, labels,
    normalisation and post-processing. Stored inside every checkpoint the toolkit writes."""

    body_size: int = 128
    context_size: int = 224
    use_aesthetics: bool = True
    use_attention: bool = True
    use_sentiment: bool = True
    # 0: the attention score of a position is one linear map of its feature vector (a 1x1 conv);
    # >0: a tanh MLP with this many hidden units (more parameters, see README "Model size").
    attention_hidden: int = 0
    branch_dim: int = 512
    fusion_dims: tuple[int, ...] = (512, 256)
    head_dim: int = 128
    dropout: float = 0.0
    categories: tuple[str, ...] = CATEGORIES
    sentiments: tuple[str, ...] = SENTIMENTS
    sentiment_map: dict[str, list[str]] = field(default_factory=lambda: dict(DEFAULT_SENTIMENT_MAP))
    body_mean: tuple[float, ...] = BODY_MEAN
    body_std: tuple[float, ...] = BODY_STD
    context_mean: tuple[float, ...] = CONTEXT_MEAN
    context_std: tuple[float, ...] = CONTEXT_STD
    boost_top_k: int = 5
    # A sentiment counts as predicted when its raw score exceeds this (0.5 for the L2 loss on
    # 0/1 targets; 0.0 suits logits from a BCE-trained model).
    boost_threshold: float = 0.5

    def __post_init__(self) -> None:
        if self.body_size < 32 or self.context_size < 32:
            raise ValueError("body_size and context_size must be at least 32 pixels")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        missing = [c for c in self.categories if c not in self.sentiment_map]
        if self.use_sentiment and missing:
            raise ValueError(f"sentiment_map has no entry for {missing[:3]}")
        for emotion, names in self.sentiment_map.items():
            unknown = [s for s in names if s not in self.sentiments]
            if unknown:
                raise ValueError(f"sentiment_map['{emotion}'] names unknown sentiments {unknown}")

    @property
    def ablation(self) -> str:
        """Name of the paper's Table III row this config corresponds to (or 'custom')."""
        for name, flags in ABLATIONS.items():
            if all(getattr(self, k) == v for k, v in flags.items()):
                return name
        return "custom"

    def to_dict(self) -> dict:
        return to_plain(self)

    @classmethod
    def from_dict(cls, data: dict, where: str = "model config") -> SeLiNetConfig:
        return dataclass_from_dict(cls, data, where)

    def replace(self, **changes: object) -> SeLiNetConfig:
        return dataclasses.replace(self, **changes)


# Table III of the paper: switches and the model size it reports (MB) for each row.
ABLATIONS: dict[str, dict[str, bool]] = {
    "body": {"use_aesthetics": False, "use_attention": False, "use_sentiment": False},
    "body+aesthetics": {"use_aesthetics": True, "use_attention": False, "use_sentiment": False},
    "body+aesthetics+attention": {
        "use_aesthetics": True, "use_attention": True, "use_sentiment": False},
    "full": {"use_aesthetics": True, "use_attention": True, "use_sentiment": True},
}  # fmt: skip
PAPER_SIZE_MB: dict[str, float] = {
    "body": 12.53,
    "body+aesthetics": 27.23,
    "body+aesthetics+attention": 27.91,
    "full": 28.03,
}


class AttentionPool(nn.Module):
    """Self-attention pooling: a score per spatial position, softmax over positions, and the
    score-weighted sum of the feature vectors. Works for any H x W (960x4x4 at 128 px, 960x7x7 at
    224 px), so the paper's 7x7 is not baked in."""

    def __init__(self, channels: int, hidden: int = 0) -> None:
        super().__init__()
        if hidden > 0:
            self.score: nn.Module = nn.Sequential(
                nn.Conv2d(channels, hidden, 1), nn.Tanh(), nn.Conv2d(hidden, 1, 1)
            )
        else:
            self.score = nn.Conv2d(channels, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        weights = torch.softmax(self.score(x).flatten(2), dim=-1)  # N x 1 x HW
        # MatMul (not Mul + ReduceSum) so quantizers see one op they know how to quantize.
        return torch.matmul(x.flatten(2), weights.transpose(1, 2)).flatten(1)  # N x C


class GlobalAveragePool(nn.Module):
    """The no-attention ablation: plain mean over positions."""

    def forward(self, x: Tensor) -> Tensor:
        return x.mean(dim=(2, 3))


class Branch(nn.Module):
    """A trunk (``features``, torchvision layout) -> pooling -> Linear(branch_dim) -> ReLU."""

    def __init__(self, features: nn.Sequential, channels: int, config: SeLiNetConfig) -> None:
        super().__init__()
        self.features = features
        self.pool: nn.Module = (
            AttentionPool(channels, config.attention_hidden) if config.use_attention else GlobalAveragePool()
        )
        self.fc = nn.Sequential(nn.Linear(channels, config.branch_dim), nn.ReLU(inplace=True))

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.pool(self.features(x)))


def _mlp(dims: list[int], dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for d_in, d_out in itertools.pairwise(dims):
        # Dropout is always present (p may be 0) so state_dict keys do not depend on it.
        layers += [nn.Linear(d_in, d_out), nn.ReLU(inplace=True), nn.Dropout(dropout)]
    return nn.Sequential(*layers)


class Head(nn.Module):
    def __init__(self, in_dim: int, hidden: int, out_dim: int, dropout: float) -> None:
        super().__init__()
        self.hidden = _mlp([in_dim, hidden], dropout)
        self.out = nn.Linear(hidden, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.hidden(x))


class SeLiNet(nn.Module):
    """forward(body N x 3 x 128 x 128, context N x 3 x 224 x 224) -> (emotions N x 26,
    sentiments N x 3); without the sentiment head only (emotions,). Inputs are normalised
    float tensors (see ``selinet_compress.emotic`` for the preprocessing)."""

    def __init__(self, config: SeLiNetConfig | None = None) -> None:
        super().__init__()
        self.config = config or SeLiNetConfig()
        cfg = self.config
        self.body = Branch(mobilenet_v3_large_features(), MOBILENET_V3_LARGE_CHANNELS, cfg)
        self.aesthetics = (
            Branch(mobilenet_v2_features(), MOBILENET_V2_CHANNELS, cfg) if cfg.use_aesthetics else None
        )
        fused = cfg.branch_dim * (2 if cfg.use_aesthetics else 1)
        self.fusion = _mlp([fused, *cfg.fusion_dims], cfg.dropout)
        self.emotion_head = Head(cfg.fusion_dims[-1], cfg.head_dim, len(cfg.categories), cfg.dropout)
        self.sentiment_head = (
            Head(cfg.fusion_dims[-1], cfg.head_dim, len(cfg.sentiments), cfg.dropout)
            if cfg.use_sentiment
            else None
        )
        self.reset_parameters()

    @property
    def input_names(self) -> list[str]:
        return ["body", "context"] if self.config.use_aesthetics else ["body"]

    @property
    def output_names(self) -> list[str]:
        return ["emotions", "sentiments"] if self.config.use_sentiment else ["emotions"]

    def example_inputs(self, batch_size: int = 1) -> tuple[Tensor, ...]:
        cfg = self.config
        body = torch.zeros(batch_size, 3, cfg.body_size, cfg.body_size)
        if not cfg.use_aesthetics:
            return (body,)
        return body, torch.zeros(batch_size, 3, cfg.context_size, cfg.context_size)

    def reset_parameters(self) -> None:
        """torchvision's MobileNet initialisation for the trunks, PyTorch's default for the hidden
        dense layers, and near-zero output layers so that the first losses are small (the paper's
        loss is a sum of squares: large initial scores make SGD diverge)."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        for head in (self.emotion_head, self.sentiment_head):
            if head is not None:
                nn.init.normal_(head.out.weight, std=0.01)
                nn.init.zeros_(head.out.bias)

    def forward(self, body: Tensor, context: Tensor | None = None) -> tuple[Tensor, ...]:
        features = self.body(body)
        if self.aesthetics is not None:
            if context is None:
                raise ValueError("this SeLiNet has an aesthetics branch: pass the context image")
            features = torch.cat([features, self.aesthetics(context)], dim=1)
        fused = self.fusion(features)
        emotions = self.emotion_head(fused)
        if self.sentiment_head is None:
            return (emotions,)
        return emotions, self.sentiment_head(fused)


def build_model(config: SeLiNetConfig | None = None, seed: int | None = None) -> SeLiNet:
    """A randomly initialised SeLiNet, deterministic for a given seed."""
    if seed is None:
        return SeLiNet(config).eval()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return SeLiNet(config).eval()


def parameter_parts(model: SeLiNet) -> dict[str, int]:
    """Parameter counts per part, in the order the paper describes the network."""

    def count(*modules: nn.Module | None) -> int:
        return sum(p.numel() for m in modules if m is not None for p in m.parameters())

    parts = {
        "body trunk": count(model.body.features),
        "body attention+dense": count(model.body.pool, model.body.fc),
    }
    if model.aesthetics is not None:
        parts["aesthetics trunk"] = count(model.aesthetics.features)
        parts["aesthetics attention+dense"] = count(model.aesthetics.pool, model.aesthetics.fc)
    parts["fusion"] = count(model.fusion)
    parts["heads"] = count(model.emotion_head, model.sentiment_head)
    return parts


def config_for_ablation(name: str, base: SeLiNetConfig | None = None) -> SeLiNetConfig:
    """The config of one Table III row ('body', 'body+aesthetics', ... , 'full')."""
    if name not in ABLATIONS:
        from selinet_compress.errors import did_you_mean

        raise UserError(f"unknown ablation '{name}'{did_you_mean(name, ABLATIONS)}")
    return (base or SeLiNetConfig()).replace(**ABLATIONS[name])
