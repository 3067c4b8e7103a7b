"""Backbones (ResNet-18/50/101 with Matterport layer names) and the feature pyramid."""

from mrcnn.backbone.fpn import build_fpn
from mrcnn.backbone.resnet import RESNET_BLOCKS, resnet_graph

__all__ = ["RESNET_BLOCKS", "build_fpn", "resnet_graph"]
