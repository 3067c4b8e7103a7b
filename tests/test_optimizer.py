"""MomentumSGD (mrcnn.training.optimizer) against Keras's SGD, whose update it fuses."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from mrcnn.training.optimizer import MomentumSGD


def _model(seed):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5, activation="relu"),
                              keras.layers.Dense(3)])
    return model


def _train(optimizer_cls, steps=4, jit_compile=False, strategy=None, **kwargs):
    """Weights after ``steps`` updates of a small model on fixed data, and the ops of one
    traced step."""
    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():
        model = _model(3)
        optimizer = optimizer_cls(**kwargs)
        optimizer.build(model.trainable_variables)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(8, 6)), tf.float32)
    y = tf.constant(rng.normal(size=(8, 3)) * 4, tf.float32)

    def replica_step(x, y):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(x) - y))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    @tf.function(jit_compile=jit_compile)
    def step(x, y):
        return strategy.run(replica_step, args=(x, y))

    graph = step.get_concrete_function(x, y).graph
    for _ in range(steps):
        step(x, y)
    return [w.numpy() for w in model.trainable_variables], graph


@pytest.mark.parametrize("kwargs", [
    dict(learning_rate=0.05, momentum=0.9),
    dict(learning_rate=0.05, momentum=0.9, global_clipnorm=0.5),  # clipping active
    dict(learning_rate=keras.optimizers.schedules.ExponentialDecay(0.1, 2, 0.5), momentum=0.8),
    dict(learning_rate=0.05, momentum=0.9, nesterov=True),  # Keras's own update
])
def test_updates_equal_keras_sgd(kwargs):
    ours, graph = _train(MomentumSGD, **kwargs)
    theirs, keras_graph = _train(keras.optimizers.SGD, **kwargs)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    fused = [op for op in graph.get_operations() if op.type == "ResourceApplyKerasMomentum"]
    if kwargs.get("nesterov"):
        assert not fused
    else:
        assert len(fused) == 4  # one per variable
        assert len(graph.get_operations()) < len(keras_graph.get_operations())
        # One learning rate and one momentum tensor for all updates of the step.
        assert len({op.inputs[2].name for op in fused}) == 1
        assert len({op.inputs[4].name for op in fused}) == 1
        types = [op.type for op in graph.get_operations()]
        # No strategy, no all-reduce: the default strategy's traces an IdentityN and an
        # identity per gradient (one Identity stays: strategy.run's, of the loss).
        assert "IdentityN" not in types and types.count("Identity") <= 1
        if kwargs.get("global_clipnorm"):
            # The global norm: one l2_loss per gradient, no square-and-sum.
            assert types.count("L2Loss") == 4 and types.count("Square") == 1  # the loss's


def test_updates_equal_keras_sgd_under_xla_and_a_distribution_strategy():
    kwargs = dict(learning_rate=0.05, momentum=0.9, global_clipnorm=0.5)
    theirs, _ = _train(keras.optimizers.SGD, **kwargs)
    xla, _ = _train(MomentumSGD, jit_compile=True, **kwargs)
    mirrored, _ = _train(MomentumSGD, strategy=tf.distribute.MirroredStrategy(["/cpu:0"]),
                         **kwargs)
    for a, b, c in zip(xla, mirrored, theirs):
        np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(b, c, rtol=1e-5, atol=1e-6)



def test_sparse_gradients_are_clipped_by_keras_global_norm():
    """Repeated rows of an IndexedSlices gradient count one by one in Keras's global norm
    (l2_loss would first sum them), so MomentumSGD leaves them to Keras's clipping."""
    variable = tf.Variable(tf.ones([10, 4]))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.gather(variable, [1, 3, 3, 7]) * 2.0)
    grad = tape.gradient(loss, variable)
    assert isinstance(grad, tf.IndexedSlices)
    ours = MomentumSGD(learning_rate=0.1, momentum=0.9, global_clipnorm=1.0)
    theirs = keras.optimizers.SGD(learning_rate=0.1, momentum=0.9, global_clipnorm=1.0)
    (a,), (b,) = ours._clip_gradients([grad]), theirs._clip_gradients([grad])
    np.testing.assert_allclose(tf.convert_to_tensor(a).numpy(), tf.convert_to_tensor(b).numpy(),
                               rtol=1e-6)
