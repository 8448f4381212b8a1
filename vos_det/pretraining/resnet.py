"""A plain-PyTorch ResNet-18/34 with GroupNorm whose parameters carry Detectron2's names.

Detectron2's ``build_resnet_backbone`` with ``RESNETS.NORM "GN"`` and ``DEPTH`` 18 or 34 builds
this very network: a 7x7 stem convolution (stride 2) and 3x3 max pooling, then four stages
``res2``-``res5`` of basic blocks (two 3x3 convolutions, a 1x1 projection shortcut where the
width changes), every convolution without bias and followed by ``GroupNorm(32, C)``. The module
and parameter names are Detectron2's (``stem.conv1.weight``, ``res3.0.shortcut.norm.bias``, ...),
so a state dict moves between the two unchanged, under the prefix ``backbone.bottom_up.`` inside
a Detectron2 detector (:data:`DETECTRON2_PREFIX`). Nothing here imports Detectron2: the
classifier and the pretraining use it with plain PyTorch.
"""

from typing import Dict, Optional, Sequence

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["DETECTRON2_PREFIX", "RESNET_STAGES", "ResNetGN", "export_to_detectron2"]

#: Where a Detectron2 FPN detector keeps its bottom-up ResNet's parameters.
DETECTRON2_PREFIX = "backbone.bottom_up."
RESNET_STAGES = ("res2", "res3", "res4", "res5")
_BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}
_GROUPS = 32  # Detectron2's "GN": GroupNorm with 32 groups


class _ConvNorm(nn.Conv2d):
    """A bias-free convolution followed by GroupNorm, named as Detectron2's ``Conv2d`` with a
    ``norm`` (``conv.weight``, ``conv.norm.weight``, ``conv.norm.bias``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1):
        super().__init__(
            in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2, bias=False
        )
        self.norm = nn.GroupNorm(_GROUPS, out_channels)
        # Detectron2's c2_msra_fill: He initialisation, fan out.
        nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(super().forward(x))


class _BasicBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.shortcut = (
            _ConvNorm(in_channels, out_channels, 1, stride) if in_channels != out_channels else None
        )
        self.conv1 = _ConvNorm(in_channels, out_channels, 3, stride)
        self.conv2 = _ConvNorm(out_channels, out_channels, 3)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv2(F.relu(self.conv1(x)))
        shortcut = self.shortcut(x) if self.shortcut is not None else x
        return F.relu(out + shortcut)


class _Stem(nn.Module):
    def __init__(self, out_channels: int):
        super().__init__()
        self.conv1 = _ConvNorm(3, out_channels, 7, 2)

    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool2d(F.relu(self.conv1(x)), kernel_size=3, stride=2, padding=1)


class ResNetGN(nn.Module):
    """ResNet-18/34 with GroupNorm, as Detectron2 builds it (see the module's docstring).

    ``forward`` returns the stages' feature maps; :meth:`pooled` the globally averaged output of
    the last stage, the feature a classifier reads.

    Attributes:
        out_channels (dict[str, int]): channels of each stage's output.
    """

    def __init__(self, depth: int = 18, stem_channels: int = 64):
        """
        Args:
            depth (int): 18 or 34.
            stem_channels (int): channels of the stem and of ``res2`` (Detectron2's
                ``RES2_OUT_CHANNELS``, which it fixes at 64 for these depths); each later stage
                doubles them.
        """
        super().__init__()
        if depth not in _BLOCKS:
            raise ValueError(f"depth must be one of {sorted(_BLOCKS)}, got {depth}")
        self.stem = _Stem(stem_channels)
        self.out_channels: Dict[str, int] = {}
        channels = stem_channels
        for index, (name, blocks) in enumerate(zip(RESNET_STAGES, _BLOCKS[depth])):
            out_channels = stem_channels * 2**index
            stage = [
                _BasicBlock(channels if block == 0 else out_channels, out_channels,
                            2 if block == 0 and index > 0 else 1)
                for block in range(blocks)
            ]
            self.add_module(name, nn.Sequential(*stage))
            self.out_channels[name] = out_channels
            channels = out_channels

    def forward(self, x: Tensor, stages: Optional[Sequence[str]] = None) -> Dict[str, Tensor]:
        """
        Args:
            x (Tensor): (N, 3, H, W) normalised images.
            stages (Sequence[str] or None): the stages to return (default: all four).

        Returns:
            dict[str, Tensor]: stage name -> (N, C, H / stride, W / stride) features (strides 4,
            8, 16, 32).
        """
        wanted = RESNET_STAGES if stages is None else tuple(stages)
        outputs = {}
        x = self.stem(x)
        for name in RESNET_STAGES:
            x = getattr(self, name)(x)
            if name in wanted:
                outputs[name] = x
            if len(outputs) == len(wanted):
                break
        return outputs

    def pooled(self, x: Tensor) -> Tensor:
        """Returns: (N, C5) global average of the last stage for (N, 3, H, W) images."""
        return self(x, ("res5",))["res5"].mean(dim=(2, 3))

    def load_detectron2_state(self, state: Dict[str, Tensor]) -> None:
        """Load the bottom-up ResNet of a Detectron2 detector's state dict.

        Args:
            state (dict[str, Tensor]): a detector's state dict (keys under
                :data:`DETECTRON2_PREFIX`) or this module's own.

        Raises:
            KeyError: naming the first missing or unexpected parameter.
            ValueError: naming the first parameter whose shape differs.
        """
        prefix = DETECTRON2_PREFIX if any(k.startswith(DETECTRON2_PREFIX) for k in state) else ""
        own = self.state_dict()
        found = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        for name in own:
            if name not in found:
                raise KeyError(f"The weights lack the backbone parameter {prefix}{name}.")
            if found[name].shape != own[name].shape:
                raise ValueError(
                    f"The backbone parameter {prefix}{name} has shape {tuple(found[name].shape)} "
                    f"in the weights but {tuple(own[name].shape)} in this ResNet."
                )
        unexpected = sorted(set(found) - set(own))
        if unexpected:
            raise KeyError(f"The weights hold an unexpected backbone parameter {prefix}{unexpected[0]}.")
        self.load_state_dict({name: found[name] for name in own})


def export_to_detectron2(resnet: ResNetGN) -> Dict[str, Tensor]:
    """Returns: the ResNet's parameters under Detectron2's names (:data:`DETECTRON2_PREFIX`)."""
    return {DETECTRON2_PREFIX + name: value for name, value in resnet.state_dict().items()}

