"""Batch normalization whose statistics can be frozen independently of ``trainable``."""

import keras


@keras.saving.register_keras_serializable(package="mrcnn")
class BatchNorm(keras.layers.BatchNormalization):
    """BatchNormalization that runs in inference mode unless ``train_bn`` is True.

    Small batches (Mask R-CNN trains with 1-2 images per GPU) give useless batch statistics, so by
    default (Config.TRAIN_BN = False) the moving mean/variance are used in training too, while
    gamma and beta still train when the layer is trainable (Matterport's behaviour).
    """

    def __init__(self, train_bn=False, **kwargs):
        kwargs.setdefault("epsilon", 1e-3)
        super().__init__(**kwargs)
        self.train_bn = bool(train_bn)
        # Set by mrcnn.layers.conv.fold_batch_norm: the conv before applies this layer.
        self.folded = False

    def call(self, inputs, training=None):
        if not self.train_bn:
            training = False
        if self.folded and not training:
            return inputs
        return super().call(inputs, training=training)

    def get_config(self):
        config = super().get_config()
        config["train_bn"] = self.train_bn
        return config
