"""ResNet backbones with Matterport's (Caffe-style) layer names.

``resnet50`` and ``resnet101`` use bottleneck blocks with the stride on the first 1x1
convolution and biases on every convolution, exactly as the layers of ``mask_rcnn_coco.h5`` and
the Keras 2 ImageNet ResNet-50 file, so those weights load by name. ``resnet18`` is a light
backbone of basic blocks for CPU training and small data sets; it has no pretrained weights here.

Layer names: ``conv1``/``bn_conv1``, then for stage s and block b (a, b, c, ...)
``res{s}{b}_branch2a`` .. ``branch2c`` with ``bn{s}{b}_branch2a`` .., the projection shortcut
``res{s}a_branch1``/``bn{s}a_branch1`` and the block output ``res{s}{b}_out``.
"""

import string

from keras import layers

from mrcnn.layers.conv import FoldableConv2D, fold_batch_norm
from mrcnn.layers.norm import BatchNorm

# Blocks per stage (stages 2..5) and whether blocks are bottlenecks.
RESNET_BLOCKS = {
    "resnet18": ((2, 2, 2, 2), False),
    "resnet50": ((3, 4, 6, 3), True),
    "resnet101": ((3, 4, 23, 3), True),
}

_STAGE_FILTERS = {2: 64, 3: 128, 4: 256, 5: 512}


def conv_bn(x, filters, kernel, strides, conv_name, bn_name, train_bn, relu, padding=None,
            bn_momentum=0.99):
    """Conv (with bias) + BatchNorm (+ ReLU), the BN folded into the conv while frozen.

    bn_momentum: momentum of the BN's moving statistics (Config.BATCH_NORM_MOMENTUM); they only
    move when ``train_bn`` is True.
    """
    if padding is None:
        padding = "same" if kernel > 1 else "valid"
    conv = FoldableConv2D(filters, kernel, strides=strides, padding=padding, use_bias=True,
                          name=conv_name)
    bn = BatchNorm(train_bn=train_bn, momentum=bn_momentum, name=bn_name)
    x = bn(conv(x))
    fold_batch_norm(conv, bn)
    return layers.Activation("relu")(x) if relu else x


def _block(x, stage, block, width, bottleneck, strides, project, train_bn,
           bn_momentum=0.99):
    """One residual block; ``project`` adds the 1x1 projection shortcut (the 'a' blocks)."""
    conv = "res%d%s_branch" % (stage, block)
    bn = "bn%d%s_branch" % (stage, block)
    if bottleneck:
        out_filters = width * 4
        y = conv_bn(x, width, 1, strides, conv + "2a", bn + "2a", train_bn, True,
                    bn_momentum=bn_momentum)
        y = conv_bn(y, width, 3, 1, conv + "2b", bn + "2b", train_bn, True,
                    bn_momentum=bn_momentum)
        y = conv_bn(y, out_filters, 1, 1, conv + "2c", bn + "2c", train_bn, False,
                    bn_momentum=bn_momentum)
    else:
        out_filters = width
        y = conv_bn(x, width, 3, strides, conv + "2a", bn + "2a", train_bn, True,
                    bn_momentum=bn_momentum)
        y = conv_bn(y, width, 3, 1, conv + "2b", bn + "2b", train_bn, False,
                    bn_momentum=bn_momentum)
    if project:
        shortcut = conv_bn(x, out_filters, 1, strides, conv + "1", bn + "1", train_bn, False,
                           bn_momentum=bn_momentum)
    else:
        shortcut = x
    y = layers.Add()([y, shortcut])
    return layers.Activation("relu", name="res%d%s_out" % (stage, block))(y)


def _block_letter(i):
    # Matterport names blocks a..z; ResNet-101 stage 4 has 23 blocks (a..w).
    return string.ascii_lowercase[i]


def resnet_graph(input_image, architecture, stage5=True, train_bn=False, bn_momentum=0.99):
    """Build the ResNet stages on a Keras tensor.

    input_image: Keras tensor [N, H, W, C] float32 (mean-subtracted pixels).
    architecture: "resnet18", "resnet50" or "resnet101".
    train_bn, bn_momentum: Config.TRAIN_BN and Config.BATCH_NORM_MOMENTUM of every BatchNorm.
    Returns: [C1, C2, C3, C4, C5] Keras tensors with strides 2, 4, 8, 16, 32 (C5 None if not stage5).
    """
    if architecture not in RESNET_BLOCKS:
        raise ValueError("Unknown backbone %r: expected one of %s"
                         % (architecture, ", ".join(sorted(RESNET_BLOCKS))))
    blocks, bottleneck = RESNET_BLOCKS[architecture]
    x = layers.ZeroPadding2D((3, 3))(input_image)
    c1 = x = conv_bn(x, 64, 7, 2, "conv1", "bn_conv1", train_bn, True, padding="valid",
                     bn_momentum=bn_momentum)
    x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
    outputs = [c1]
    for stage, count in zip((2, 3, 4, 5), blocks):
        if stage == 5 and not stage5:
            outputs.append(None)
            break
        strides = 1 if stage == 2 else 2
        for i in range(count):
            # A basic-block stage 2 keeps 64 channels, so its first block needs no projection.
            project = i == 0 and (bottleneck or stage > 2)
            x = _block(x, stage, _block_letter(i), _STAGE_FILTERS[stage], bottleneck,
                       strides if i == 0 else 1, project, train_bn, bn_momentum)
        outputs.append(x)
    return outputs


def backbone_layer_regex(architecture):
    """Regular expression matching every backbone layer name (used by ``train(layers=...)``)."""
    return r"(conv1)|(bn_conv1)|(res\d.*)|(bn\d.*)"


__all__ = ["RESNET_BLOCKS", "resnet_graph", "backbone_layer_regex"]

