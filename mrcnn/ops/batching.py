"""Apply a per-image function over the batch axis."""

import tensorflow as tf


def map_images(fn, elems, fn_output_signature):
    """``tf.map_fn(fn, elems, fn_output_signature=...)``, without the loop when the batch is one.

    elems: a tuple of tensors [N, ...]; fn takes the tuple of one image's slices.
    A statically known batch of one (detect() of one image, the TFLite export) calls ``fn``
    once on the slices: the same arithmetic without a while loop and its tensor lists, which
    TFLite's converter lowers badly and which cost a little on every call.
    """
    if all(t.shape.rank and t.shape[0] == 1 for t in elems):
        return tf.nest.map_structure(lambda t: t[None], fn(tuple(t[0] for t in elems)))
    return tf.map_fn(fn, elems, fn_output_signature=fn_output_signature)
