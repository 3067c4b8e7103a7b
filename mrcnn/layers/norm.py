"""Batch normalization whose statistics can be frozen independently of ``trainable``."""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="mrcnn")
class BatchNorm(keras.layers.BatchNormalization):
    """BatchNormalization that runs in inference mode unless ``train_bn`` is True.

    Small batches (Mask R-CNN trains with 1-2 images per GPU) give useless batch statistics, so by
    default (Config.TRAIN_BN = False) the moving mean/variance are used in training too, while
    gamma and beta still train when the layer is trainable (Matterport's behaviour).
    With ``train_bn`` the moving statistics follow the batches with Keras' ``momentum`` (the graph
    passes Config.BATCH_NORM_MOMENTUM).
    """

    def __init__(self, train_bn=False, **kwargs):
        kwargs.setdefault("epsilon", 1e-3)
        super().__init__(**kwargs)
        self.train_bn = bool(train_bn)
        # Set by mrcnn.layers.conv.fold_batch_norm: the conv before applies this layer.
        self.folded = False

    def call(self, inputs, training=None):
        if self.folded and (not self.train_bn or not training):
            return inputs  # the conv before this layer applied it (mrcnn.layers.conv)
        if training and self.train_bn and self.trainable:
            return super().call(inputs, training=True)
        # Frozen statistics: one fused pass (Keras lowers it to separate multiply and add).
        y, _, _ = tf.compat.v1.nn.fused_batch_norm(
            inputs, tf.cast(self.gamma, tf.float32), tf.cast(self.beta, tf.float32),
            tf.cast(self.moving_mean, tf.float32), tf.cast(self.moving_variance, tf.float32),
            epsilon=self.epsilon, is_training=False)
        return y

    def get_config(self):
        config = super().get_config()
        config["train_bn"] = self.train_bn
        return config
