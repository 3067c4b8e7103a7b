"""Convolutions that absorb the frozen batch norm that follows them.

With frozen statistics (TRAIN_BN False, or any inference) a batch norm is a per-channel affine
map ``y = a * x + b``, ``a = gamma / sqrt(var + eps)``, ``b = beta - mean * a``. Applying it as
its own layer costs two extra passes over every activation and blocks the Conv+Bias+ReLU fusion
of the CPU/GPU kernels. ``FoldableConv2D`` instead convolves with ``kernel * a`` and adds
``bias * a + b``, computed from the live variables at each call, so layer names, weight files and
gradients (to gamma and beta too) are unchanged; the paired ``BatchNorm`` then passes its input
through.
"""

import keras
import tensorflow as tf

from mrcnn.layers.norm import BatchNorm


def bn_is_folded(bn, training):
    """True when ``bn`` is linked to a conv and acts as a fixed affine map for this call
    (frozen statistics: TRAIN_BN False, or not a training call)."""
    return bn is not None and bn.folded and (not bn.train_bn or not training)


@keras.saving.register_keras_serializable(package="mrcnn")
class FoldableConv2D(keras.layers.Conv2D):
    """``keras.layers.Conv2D`` that can absorb the ``BatchNorm`` right after it (see module doc).

    Link with ``fold_batch_norm(conv, bn)``; unlinked it is an ordinary Conv2D.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._folded_bn = None

    def call(self, inputs, training=None):
        bn = self._folded_bn
        if not bn_is_folded(bn, training):
            return super().call(inputs)
        a = bn.gamma * tf.math.rsqrt(bn.moving_variance + bn.epsilon)
        b = bn.beta - bn.moving_mean * a
        kernel = tf.cast(self.kernel * a, self.compute_dtype)
        bias = tf.cast((self.bias * a + b) if self.use_bias else b, self.compute_dtype)
        y = tf.nn.conv2d(inputs, kernel, strides=self.strides, padding=self.padding.upper(),
                         dilations=self.dilation_rate)
        y = tf.nn.bias_add(y, bias)
        return self.activation(y) if self.activation is not None else y


def fold_batch_norm(conv, bn):
    """Let ``conv`` apply ``bn`` (a BatchNorm fed only by ``conv``); returns ``bn``."""
    if not isinstance(conv, FoldableConv2D) or not isinstance(bn, BatchNorm):
        raise TypeError("fold_batch_norm needs a FoldableConv2D and a BatchNorm")
    if conv.activation not in (None, keras.activations.linear):
        raise ValueError("cannot fold %s into %s: the conv has an activation"
                         % (bn.name, conv.name))
    # A plain attribute, not a tracked sub-layer: the model already owns ``bn`` and its weights.
    object.__setattr__(conv, "_folded_bn", bn)
    bn.folded = True
    return bn
