"""Region proposal network, shared across pyramid levels as the nested model ``rpn_model``.

Axes: N images, A anchors (all levels concatenated, ordered as ``mrcnn.anchors``).
"""

import keras
from keras import layers

from mrcnn.layers.sparse_grad_conv import SparseGradConv2D


def build_rpn_model(anchor_stride, anchors_per_location, depth):
    """The RPN as a Keras model named ``rpn_model`` (Matterport's nested-model layout).

    Input: one feature map [N, h, w, depth].
    Outputs: rpn_class_logits [N, h*w*anchors_per_location, 2] (background, foreground),
    rpn_probs (softmax of the logits), rpn_bbox [N, h*w*anchors_per_location, 4] deltas
    (dy, dx, log(dh), log(dw)) divided by RPN_BBOX_STD_DEV.
    """
    feature_map = keras.Input(shape=(None, None, depth), name="input_rpn_feature_map")
    shared = SparseGradConv2D(512, 3, padding="same", activation="relu", strides=anchor_stride,
                              name="rpn_conv_shared")(feature_map)
    x = layers.Conv2D(2 * anchors_per_location, 1, name="rpn_class_raw")(shared)
    rpn_class_logits = layers.Reshape((-1, 2))(x)
    rpn_probs = layers.Activation("softmax", name="rpn_probs", dtype="float32")(rpn_class_logits)
    x = layers.Conv2D(anchors_per_location * 4, 1, name="rpn_bbox_pred")(shared)
    rpn_bbox = layers.Reshape((-1, 4))(x)
    return keras.Model(feature_map, [rpn_class_logits, rpn_probs, rpn_bbox], name="rpn_model")


def apply_rpn(rpn_model, feature_maps):
    """Run ``rpn_model`` on every level and concatenate.

    Returns Keras tensors named as Matterport's: rpn_class_logits [N, A, 2], rpn_class [N, A, 2],
    rpn_bbox [N, A, 4].
    """
    outputs = [rpn_model(p) for p in feature_maps]
    names = ["rpn_class_logits", "rpn_class", "rpn_bbox"]
    return [layers.Concatenate(axis=1, name=n)([o[i] for o in outputs])
            for i, n in enumerate(names)]
