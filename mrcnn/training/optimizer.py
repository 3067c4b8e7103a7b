"""SGD with momentum whose per-variable update is one fused TensorFlow kernel.

Keras 3's ``SGD.update_step`` builds the momentum update from about ten separate ops per
variable (casts, two multiplies, a subtract, two assigns and their reads). A Mask R-CNN trained
on all layers has 266 variables, so the optimizer alone adds some 2,500 ops to the traced train
step, which TensorFlow then optimizes and runs as separate passes over every weight. TensorFlow's
``ResourceApplyKerasMomentum`` kernel performs the same update (``m = momentum * m - lr * g``,
``w = w + m``) in one op and one pass; this optimizer uses it and is otherwise Keras's SGD
(learning-rate schedules, ``global_clipnorm``, loss scaling, ``tf.distribute`` all unchanged; the
global norm is taken with one ``l2_loss`` per gradient instead of three ops).
"""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="mrcnn")
class MomentumSGD(keras.optimizers.SGD):
    """``keras.optimizers.SGD`` with the fused momentum update (see module doc).

    Nesterov momentum, zero momentum, sparse (``IndexedSlices``) gradients and backends other
    than TensorFlow take Keras's own update.
    """

    def _clip_gradients(self, grads):
        # Keras's global norm squares and sums each gradient in three ops (one an axis
        # constant); l2_loss (sum(g^2) / 2) is one. The scale is Keras's, NaN for a norm that
        # is not finite. Sparse gradients keep Keras's norm: l2_loss would first add up their
        # repeated rows.
        if not (self.global_clipnorm and self.global_clipnorm > 0 and not self.clipnorm
                and keras.backend.backend() == "tensorflow"
                and not any(isinstance(g, tf.IndexedSlices) for g in grads)):
            return super()._clip_gradients(grads)
        halves = [tf.cast(tf.nn.l2_loss(g), tf.float32) for g in grads if g is not None]
        if not halves:
            return grads
        norm = tf.sqrt(2.0 * tf.add_n(halves))
        clip = float(self.global_clipnorm)
        scale = clip * tf.minimum(1.0 / norm, 1.0 / clip) + (norm - norm)
        return [g * tf.cast(scale, g.dtype) if g is not None else g for g in grads]

    def _all_reduce_sum_gradients(self, grads_and_vars):
        # Without a tf.distribute strategy there is nothing to sum over, but the default
        # strategy's all-reduce still traces an identity per gradient (266 dead ops for
        # ResNet-50), hidden behind one IdentityN.
        if not tf.distribute.has_strategy():
            return list(grads_and_vars)
        return super()._all_reduce_sum_gradients(grads_and_vars)

    def _distributed_tf_update_step(self, distribution, grads_and_vars, learning_rate):
        # One read of the learning rate and one momentum constant per device and dtype for all
        # variables of a step, instead of one of each per variable (532 ops of a 12,400-op
        # ResNet-50 step).
        # Set past Keras's and TensorFlow's attribute tracking: a per-step cache is no state
        # to track or checkpoint.
        object.__setattr__(self, "_step_constants", {})
        try:
            return super()._distributed_tf_update_step(distribution, grads_and_vars,
                                                       learning_rate)
        finally:
            object.__setattr__(self, "_step_constants", None)

    def _constants(self, learning_rate, variable):
        """(learning rate, momentum) as ``variable``'s dtype, made once per step for each
        learning-rate argument, device and dtype."""
        dtype = variable.dtype
        cache = getattr(self, "_step_constants", None)
        key = (id(learning_rate), variable.device, dtype)
        if cache is not None and key in cache:
            return cache[key][1:]
        lr, momentum = tf.cast(learning_rate, dtype), tf.constant(self.momentum, dtype)
        if cache is not None:
            # The argument is kept alive with them, so no other object takes its id this step.
            cache[key] = (learning_rate, lr, momentum)
        return lr, momentum

    def update_step(self, gradient, variable, learning_rate):
        fused = (keras.backend.backend() == "tensorflow" and self.momentum != 0
                 and not self.nesterov and not isinstance(gradient, tf.IndexedSlices))
        if not fused:
            return super().update_step(gradient, variable, learning_rate)
        # ``variable`` is the tf.Variable (a replica's component under tf.distribute); the
        # momentum slot is a Keras variable wrapping one.
        accum = self.momentums[self._get_variable_index(variable)]
        accum = accum.value if isinstance(accum, keras.Variable) else accum
        dtype = variable.dtype
        lr, momentum = self._constants(learning_rate, variable)
        tf.raw_ops.ResourceApplyKerasMomentum(
            var=variable.handle, accum=accum.handle, lr=lr, grad=tf.cast(gradient, dtype),
            momentum=momentum, use_locking=False, use_nesterov=False)
