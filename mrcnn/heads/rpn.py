"""Region proposal network, shared across pyramid levels as the nested model ``rpn_model``.

Axes: N images, A anchors (all levels concatenated, ordered as ``mrcnn.anchors``).
"""

import keras
import tensorflow as tf
from keras import layers

from mrcnn.layers.sparse_grad_conv import SparseGradConv2D
from mrcnn.ops import winograd


@keras.saving.register_keras_serializable(package="mrcnn")
class RPNModel(keras.Model):
    """The functional ``rpn_model`` (``build_rpn_model``), whose calls in detect()'s graph run
    the shared 3x3 conv and both 1x1 heads band by band when the conv runs by Winograd.

    The shared conv's output is the largest tensor of detect(): 512 channels over P2, 128 MB
    per image at 1024 px, of which the heads keep 18 channels. Applied to each band of the
    Winograd convolution as it comes (``winograd.conv2d``'s epilogue: bias, ReLU, the two 1x1
    convolutions as one), only the heads' outputs are held whole. Same layers, weights and
    outputs as the plain functional call, which every other call runs (training, exports,
    other precisions, WINOGRAD False).
    """

    def call(self, inputs, training=None, mask=None):
        shared = self.get_layer("rpn_conv_shared")
        if not shared.winograd_applies(inputs, training):
            return super().call(inputs, training=training, mask=mask)
        heads = [self.get_layer("rpn_class_raw"), self.get_layer("rpn_bbox_pred")]
        kernel = tf.concat([tf.convert_to_tensor(h.kernel) for h in heads], axis=-1)
        bias = tf.concat([tf.convert_to_tensor(h.bias) for h in heads], axis=-1)
        shared_bias = tf.convert_to_tensor(shared.bias)

        def heads_of(band):  # [n, h', w', 512] -> [n, h', w', 2 A + 4 A]: logits, deltas
            band = shared.activation(tf.nn.bias_add(band, shared_bias))
            return tf.nn.bias_add(tf.nn.conv2d(band, kernel, 1, "VALID"), bias)

        maps = winograd.conv2d(inputs, tf.convert_to_tensor(shared.kernel), epilogue=heads_of)
        split = heads[0].filters  # 2 A logits, then 4 A deltas
        batch = tf.shape(inputs)[0]
        logits = tf.reshape(maps[..., :split], [batch, -1, 2])
        deltas = tf.reshape(maps[..., split:], [batch, -1, 4])
        return [logits, tf.nn.softmax(logits), deltas]


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
    return RPNModel(feature_map, [rpn_class_logits, rpn_probs, rpn_bbox], name="rpn_model")


def apply_rpn(rpn_model, feature_maps):
    """Run ``rpn_model`` on every level and concatenate.

    Returns Keras tensors named as Matterport's: rpn_class_logits [N, A, 2], rpn_class [N, A, 2],
    rpn_bbox [N, A, 4].
    """
    outputs = [rpn_model(p) for p in feature_maps]
    names = ["rpn_class_logits", "rpn_class", "rpn_bbox"]
    return [layers.Concatenate(axis=1, name=n)([o[i] for o in outputs])
            for i, n in enumerate(names)]
