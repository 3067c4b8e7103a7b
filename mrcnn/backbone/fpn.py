"""Feature pyramid (P2..P6) on top of the backbone stages, with Matterport's layer names."""

from keras import layers

from mrcnn.layers.misc import Upsample2x
from mrcnn.layers.sparse_grad_conv import SparseGradConv2D


def build_fpn(c2, c3, c4, c5, pyramid_size):
    """Top-down pathway with lateral 1x1 connections, then 3x3 smoothing.

    c2..c5: backbone Keras tensors with strides 4, 8, 16, 32.
    pyramid_size: channels of every pyramid level (Config.TOP_DOWN_PYRAMID_SIZE).
    Returns: [P2, P3, P4, P5, P6], strides 4..64; P6 (max-pooled P5) feeds only the RPN.
    """
    p5 = layers.Conv2D(pyramid_size, 1, name="fpn_c5p5")(c5)
    p4 = layers.Add(name="fpn_p4add")([
        Upsample2x(name="fpn_p5upsampled")(p5),
        layers.Conv2D(pyramid_size, 1, name="fpn_c4p4")(c4)])
    p3 = layers.Add(name="fpn_p3add")([
        Upsample2x(name="fpn_p4upsampled")(p4),
        layers.Conv2D(pyramid_size, 1, name="fpn_c3p3")(c3)])
    p2 = layers.Add(name="fpn_p2add")([
        Upsample2x(name="fpn_p3upsampled")(p3),
        layers.Conv2D(pyramid_size, 1, name="fpn_c2p2")(c2)])
    p2 = SparseGradConv2D(pyramid_size, 3, padding="same", name="fpn_p2")(p2)
    p3 = SparseGradConv2D(pyramid_size, 3, padding="same", name="fpn_p3")(p3)
    p4 = SparseGradConv2D(pyramid_size, 3, padding="same", name="fpn_p4")(p4)
    p5 = SparseGradConv2D(pyramid_size, 3, padding="same", name="fpn_p5")(p5)
    p6 = layers.MaxPooling2D(pool_size=1, strides=2, name="fpn_p6")(p5)
    return [p2, p3, p4, p5, p6]
