"""Convolutions that absorb the frozen batch norm that follows them.

With frozen statistics (TRAIN_BN False, or any inference) a batch norm is a per-channel affine
map ``y = a * x + b``, ``a = gamma / sqrt(var + eps)``, ``b = beta - mean * a``. Applying it as
its own layer costs two extra passes over every activation and blocks the Conv+Bias+ReLU fusion
of the CPU/GPU kernels. ``FoldableConv2D`` instead convolves with ``kernel * a`` and adds
``bias * a + b``, computed from the live variables at each call, so layer names, weight files and
gradients (to gamma and beta too) are unchanged; the paired ``BatchNorm`` then passes its input
through.

detect() does not need gradients, so it reads a folded kernel and bias computed ahead instead
(``FoldCache``, used by graphs traced inside ``cached_folds()``): its graph then holds two
variable reads per convolution instead of six and none of the fold's arithmetic, which makes the
first call of a new model about a second shorter at 1024 px. A cache recomputes itself before
the next call once any of its six source variables has been written (``assign``, which
``set_weights``, ``load_weights`` and Keras's loaders all use). Training does the same for the
convolutions it leaves frozen (``layers="heads"`` freezes the whole backbone): their variables get
no gradient, and the step skips the fold's arithmetic over their kernels.
"""

import contextlib
import threading

import keras
import tensorflow as tf

from mrcnn.layers.norm import BatchNorm
from mrcnn.ops import winograd

_tracing = threading.local()


def bn_is_folded(bn, training):
    """True when ``bn`` is linked to a conv and acts as a fixed affine map for this call
    (frozen statistics: TRAIN_BN False, or not a training call)."""
    return bn is not None and bn.folded and (not bn.train_bn or not training)


@contextlib.contextmanager
def cached_folds(frozen_only=False):
    """Within this block, traced calls of FoldableConv2D layers that have a ``FoldCache`` read
    the cache's variables instead of folding in the graph. Only for graphs that are not exported
    (the cache variables are not tracked by the model, so a SavedModel could not hold them).

    frozen_only: only layers whose conv and batch norm are both frozen (``trainable`` False)
    read the cache, in training and evaluation calls alike: the train step, whose optimizer
    writes the other layers' variables inside the graph, where a cache cannot see the writes.
    Otherwise (detect()) every layer does, in calls that are not training calls.
    """
    previous = getattr(_tracing, "mode", None)
    _tracing.mode = "frozen" if frozen_only else "all"
    try:
        yield
    finally:
        _tracing.mode = previous


def _reads_cache(conv, bn, training):
    mode = getattr(_tracing, "mode", None)
    if conv._fold_cache is None or mode is None:
        return False
    if mode == "frozen":
        return not conv.trainable and not bn.trainable
    return not training


@keras.saving.register_keras_serializable(package="mrcnn")
class FoldableConv2D(keras.layers.Conv2D):
    """``keras.layers.Conv2D`` that can absorb the ``BatchNorm`` right after it (see module doc).

    Link with ``fold_batch_norm(conv, bn)``; unlinked it is an ordinary Conv2D.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._folded_bn = None
        self._fold_cache = None

    def folded_kernel_and_bias(self):
        """(kernel [kh, kw, in, out], bias [out]) with the linked BatchNorm applied, in the
        layer's compute dtype, from the current variable values (the fold is done in float32)."""
        bn = self._folded_bn
        a = bn.gamma * tf.math.rsqrt(bn.moving_variance + bn.epsilon)
        b = bn.beta - bn.moving_mean * a
        kernel = tf.cast(self.kernel * a, self.compute_dtype)
        bias = tf.cast((self.bias * a + b) if self.use_bias else b, self.compute_dtype)
        return kernel, bias

    def call(self, inputs, training=None):
        bn = self._folded_bn
        if not bn_is_folded(bn, training):
            return super().call(inputs)
        if _reads_cache(self, bn, training):
            kernel, bias = self._fold_cache.kernel, self._fold_cache.bias
        else:
            kernel, bias = self.folded_kernel_and_bias()
        # detect() runs the 3x3 ones by Winograd (mrcnn.ops.winograd), when enabled there;
        # training calls keep TensorFlow's kernel (and its gradient) in any case.
        conv2d = tf.nn.conv2d if training else winograd.conv2d
        y = conv2d(inputs, kernel, strides=self.strides, padding=self.padding.upper(),
                   dilations=self.dilation_rate)
        y = tf.nn.bias_add(y, bias)
        return self.activation(y) if self.activation is not None else y


class FoldCache:
    """The folded kernel and bias of one FoldableConv2D in two variables of their own.

    Stale from creation and after any eager write to the conv's kernel or bias or the
    BatchNorm's gamma, beta, moving mean or variance (writes made inside a compiled function,
    such as an optimizer's, are not seen: see ``cached_folds(frozen_only=True)``);
    ``refresh()`` recomputes it eagerly when stale, ``refresh(force=True)`` in any case.
    The variables keep their identity, so a compiled function that read them sees new values.
    """

    def __init__(self, conv):
        self.conv = conv
        self.stale = True
        self.kernel = self.bias = None
        bn = conv._folded_bn
        for variable in [conv.kernel, conv.bias if conv.use_bias else None, bn.gamma, bn.beta,
                         bn.moving_mean, bn.moving_variance]:
            if variable is not None:
                _on_write(variable, self._invalidate)

    def _invalidate(self):
        self.stale = True

    def refresh(self, force=False):
        if not (self.stale or force):
            return
        # Cleared first: a write that lands while the values are computed marks it again.
        self.stale = False
        kernel, bias = self.conv.folded_kernel_and_bias()
        if self.kernel is None:
            name = self.conv.name
            self.kernel = tf.Variable(kernel, trainable=False, name=name + "_folded_kernel")
            self.bias = tf.Variable(bias, trainable=False, name=name + "_folded_bias")
        else:
            self.kernel.assign(kernel)
            self.bias.assign(bias)


def _on_write(variable, callback):
    """Call ``callback()`` after each assign, assign_add or assign_sub of a Keras variable."""
    for method in ("assign", "assign_add", "assign_sub"):
        original = getattr(variable, method)

        def write(*args, _original=original, **kwargs):
            result = _original(*args, **kwargs)
            callback()
            return result

        # An instance attribute shadows the class's method for this variable only.
        setattr(variable, method, write)


def fold_caches(model, frozen_only=False):
    """A FoldCache for each FoldableConv2D of ``model`` (a built Keras model) with a linked,
    frozen BatchNorm (TRAIN_BN False), made once and kept on the layer; returns the list.

    frozen_only: only for convolutions whose conv and batch norm are both frozen (what
    ``cached_folds(frozen_only=True)`` reads): a cache holds a second copy of its kernel, which
    training on all layers would never read.
    """
    caches = []
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if not isinstance(layer, FoldableConv2D) or not bn_is_folded(layer._folded_bn, False):
            continue
        if frozen_only and (layer.trainable or layer._folded_bn.trainable):
            continue
        if layer._fold_cache is None:
            # Untracked: the cache is derived state, never saved with the model.
            object.__setattr__(layer, "_fold_cache", FoldCache(layer))
        caches.append(layer._fold_cache)
    return caches


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
