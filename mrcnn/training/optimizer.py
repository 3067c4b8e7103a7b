"""SGD with momentum whose per-variable update is one fused TensorFlow kernel.

Keras 3's ``SGD.update_step`` builds the momentum update from about ten separate ops per
variable (casts, two multiplies, a subtract, two assigns and their reads). A Mask R-CNN trained
on all layers has 266 variables, so the optimizer alone adds some 2,500 ops to the traced train
step, which TensorFlow then optimizes and runs as separate passes over every weight. TensorFlow's
``ResourceApplyKerasMomentum`` kernel performs the same update (``m = momentum * m - lr * g``,
``w = w + m``) in one op and one pass; this optimizer uses it and is otherwise Keras's SGD
(learning-rate schedules, ``global_clipnorm``, loss scaling, ``tf.distribute`` all unchanged).
"""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="mrcnn")
class MomentumSGD(keras.optimizers.SGD):
    """``keras.optimizers.SGD`` with the fused momentum update (see module doc).

    Nesterov momentum, zero momentum, sparse (``IndexedSlices``) gradients and backends other
    than TensorFlow take Keras's own update.
    """

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
        tf.raw_ops.ResourceApplyKerasMomentum(
            var=variable.handle, accum=accum.handle, lr=tf.cast(learning_rate, dtype),
            grad=tf.cast(gradient, dtype), momentum=tf.constant(self.momentum, dtype),
            use_locking=False, use_nesterov=False)
