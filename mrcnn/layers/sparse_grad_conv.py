"""Convolutions whose backward pass works only where their output gradient is not zero.

In training, the RPN's losses read 256 sampled anchors per image (RPN_TRAIN_ANCHORS_PER_IMAGE) out
of every anchor of every level, so the gradient reaching ``rpn_conv_shared``'s output is zero
everywhere but at those anchors' positions: at 1024 px, at most 256 of the 87,296 positions per
image. Autodiff still computes the convolution's two backward products (to its input and to its
kernel) over the whole map, twice the forward's arithmetic, about 200 G multiply-adds per image.
The gradient reaching the FPN's 3x3 convolutions is sparse too, less so: it covers those anchors'
3x3 neighbourhoods and the pooled ROIs' footprints (2-7% of the positions at 1024 px, most of
them at 128 px).

``conv2d_sparse_grad`` computes the same convolution forward and, backward, the same gradients
from the rows of positions whose output gradient has a non-zero value (NaN and Inf count as
non-zero): with ``K`` such positions, found at run time, the kernel's gradient is
``patches[K, kh*kw*Cin]^T @ dy[K, Cout]`` and the input's gradient is ``dy @ kernel^T`` scattered
back onto the input's positions. For finite inputs and kernels it is exact: a position left out
contributes zero to both sums. (Autodiff multiplies those zeros by the input too, so an Inf in the
input where no gradient arrives makes its kernel gradient NaN, and this one's not.) Where more than
``SPARSE_FRACTION`` of the positions carry gradient it runs TensorFlow's own backward kernels.

Only stride 1, dilation 1 and ``"same"`` padding with odd kernel sizes take this path, and only in
training calls traced outside ``mrcnn.ops.portable.xla_static()``: XLA sizes ``tf.where``'s output
for every position, which would make the sparse rows cost as much as the dense kernels. Anything
else is an ordinary ``keras.layers.Conv2D``, except in detect()'s graph, where float32 3x3 ones run
by Winograd when ``mrcnn.ops.winograd.applies`` says so (Config.WINOGRAD).
"""

import keras
import tensorflow as tf

from mrcnn.ops import portable, winograd

# The sparse rows stay faster than the dense kernels up to 80-90% of the positions on a CPU
# (bench/sparse_grad_conv.py: 0.40 of the dense time at 35%, 0.56 at 50%), but their gathered
# patches take K * kh*kw*Cin values twice over, which the dense kernels do not need: at 35% and
# the FPN's P2 at 1024 px (batch 2) that is 0.85 GB in float32. This bound keeps that moderate.
SPARSE_FRACTION = 0.35


def _dense_grads(x, kernel, dy):
    # The kernels autodiff would run for tf.nn.conv2d.
    dx = tf.raw_ops.Conv2DBackpropInput(input_sizes=tf.shape(x), filter=kernel, out_backprop=dy,
                                        strides=[1, 1, 1, 1], padding="SAME")
    dk = tf.raw_ops.Conv2DBackpropFilter(input=x, filter_sizes=tf.shape(kernel), out_backprop=dy,
                                         strides=[1, 1, 1, 1], padding="SAME")
    return dx, dk


def _sparse_grads(x, kernel, dy, rows):
    """Gradients from the output positions ``rows`` [K, 3] (image, y, x) alone."""
    kh, kw, cin, cout = kernel.shape
    ph, pw = (kh - 1) // 2, (kw - 1) // 2
    padded = tf.pad(x, [[0, 0], [ph, ph], [pw, pw], [0, 0]])
    # Output (y, x) reads padded input (y + i, x + j) through tap (i, j), taps in kernel order.
    taps = tf.constant([[0, i, j] for i in range(kh) for j in range(kw)], tf.int64)
    where = rows[:, None, :] + taps[None]                      # [K, kh*kw, 3]
    dy_rows = tf.gather_nd(dy, rows)                           # [K, Cout]
    patches = tf.reshape(tf.gather_nd(padded, where), [-1, kh * kw * cin])
    flat_kernel = tf.reshape(kernel, [kh * kw * cin, cout])
    dk = tf.reshape(tf.matmul(patches, dy_rows, transpose_a=True), tf.shape(kernel))
    d_patches = tf.matmul(dy_rows, flat_kernel, transpose_b=True)
    # Up to kh*kw rows add into one input value: sum them in float32, as the dense kernels do,
    # and round once to a half-precision input's dtype.
    d_padded = tf.scatter_nd(tf.reshape(where, [-1, 3]),
                             tf.cast(tf.reshape(d_patches, [-1, cin]), tf.float32),
                             tf.shape(padded, out_type=tf.int64))
    shape = tf.shape(x)
    dx = tf.cast(d_padded[:, ph:ph + shape[1], pw:pw + shape[2], :], x.dtype)
    return dx, dk


def conv2d_sparse_grad(x, kernel, sparse_fraction=SPARSE_FRACTION):
    """``tf.nn.conv2d(x, kernel, 1, "SAME")`` whose gradients skip zero output-gradient rows.

    x: [N, H, W, Cin]; kernel: [kh, kw, Cin, Cout] with odd kh, kw; same dtype (any float).
    Returns [N, H, W, Cout]. For finite x and kernel, the gradients equal TensorFlow's up to
    summation order.
    """
    kh, kw = kernel.shape[0], kernel.shape[1]
    if kh is None or kw is None or kh % 2 == 0 or kw % 2 == 0:
        raise ValueError(
            f"conv2d_sparse_grad needs a kernel of odd static size, got {kernel.shape}")

    @tf.custom_gradient
    def conv(x, kernel):
        def grad(dy):
            rows = tf.where(tf.reduce_any(tf.not_equal(dy, 0), axis=-1))
            positions = tf.cast(tf.reduce_prod(tf.shape(dy)[:3]), tf.float32)
            sparse = tf.cast(tf.shape(rows)[0], tf.float32) <= sparse_fraction * positions
            return tf.cond(sparse, lambda: _sparse_grads(x, kernel, dy, rows),
                           lambda: _dense_grads(x, kernel, dy))
        return tf.nn.conv2d(x, kernel, strides=1, padding="SAME"), grad

    return conv(x, kernel)


@keras.saving.register_keras_serializable(package="mrcnn")
class SparseGradConv2D(keras.layers.Conv2D):
    """``keras.layers.Conv2D`` whose training calls use ``conv2d_sparse_grad`` (module doc).

    Same variables, names and outputs as Conv2D; only the backward pass differs, and only for
    stride 1, dilation 1, ``padding="same"``, odd kernels, channels-last, one group.
    """

    def _sparse_grad_applies(self):
        return (all(s == 1 for s in self.strides) and all(d == 1 for d in self.dilation_rate)
                and self.padding == "same" and self.groups == 1
                and self.data_format == "channels_last"
                and all(k % 2 == 1 for k in self.kernel_size) and not portable.static())

    def winograd_applies(self, inputs, training=None):
        """Whether this call runs by Winograd: in detect()'s graph (``mrcnn.ops.winograd``), not
        a training call, where ``winograd.applies`` says so."""
        return (not training and self.data_format == "channels_last" and self.groups == 1
                and winograd.applies(inputs, self.kernel, self.strides, self.padding,
                                     self.dilation_rate))

    def call(self, inputs, training=None):
        if self.winograd_applies(inputs, training):
            outputs = winograd.conv2d(inputs, tf.convert_to_tensor(self.kernel))
        elif not training or not self._sparse_grad_applies():
            return super().call(inputs)
        else:
            outputs = conv2d_sparse_grad(inputs, tf.convert_to_tensor(self.kernel))
        if self.use_bias:
            outputs = tf.nn.bias_add(outputs, tf.convert_to_tensor(self.bias))
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs
