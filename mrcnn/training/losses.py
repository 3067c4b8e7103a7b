"""The five Mask R-CNN losses (Matterport's names and definitions) and the weight decay term.

Axes: N images, A anchors, T sampled ROIs per image, C classes. Every loss is a float32 scalar and
is 0 (not NaN) when it has nothing to average over.
"""

import tensorflow as tf


def smooth_l1(y_true, y_pred):
    """Elementwise smooth L1 (Huber with delta 1)."""
    diff = tf.abs(tf.cast(y_true, tf.float32) - tf.cast(y_pred, tf.float32))
    return tf.where(diff < 1.0, 0.5 * diff * diff, diff - 0.5)


def _masked_mean(values, weights):
    """Mean of ``values`` over the entries where ``weights`` is 1 (0 when there are none).

    The losses are masked means over static shapes rather than means over gathered subsets:
    the same values, and XLA can compile them (Config.XLA).
    """
    weights = tf.cast(weights, tf.float32)
    return tf.math.divide_no_nan(tf.reduce_sum(values * weights), tf.reduce_sum(weights))


def rpn_class_loss(rpn_match, rpn_class_logits):
    """Anchor classifier loss.

    rpn_match: [N, A, 1] or [N, A] int (1 positive, -1 negative, 0 ignored).
    rpn_class_logits: [N, A, 2]. Returns the mean cross entropy over non-ignored anchors.
    """
    match = tf.reshape(tf.cast(rpn_match, tf.int32), tf.shape(rpn_class_logits)[:2])
    labels = tf.cast(tf.equal(match, 1), tf.int32)
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=labels, logits=tf.cast(rpn_class_logits, tf.float32))
    return _masked_mean(ce, tf.not_equal(match, 0))


def rpn_bbox_loss(target_bbox, rpn_match, rpn_bbox):
    """Anchor box regression loss over positive anchors.

    target_bbox: [N, K, 4]: the deltas of each image's positive anchors, packed at the front in
    anchor order and zero-padded. rpn_match: [N, A, 1] or [N, A]. rpn_bbox: [N, A, 4].
    """
    match = tf.reshape(tf.cast(rpn_match, tf.int32), tf.shape(rpn_bbox)[:2])
    positive = tf.equal(match, 1)
    # The j-th positive anchor of an image (in anchor order) pairs with that image's row j.
    rank = tf.cumsum(tf.cast(positive, tf.int32), axis=1, exclusive=True)
    k = tf.shape(target_bbox)[1]
    target = tf.gather(tf.cast(target_bbox, tf.float32), tf.minimum(rank, k - 1), batch_dims=1)
    loss = smooth_l1(target, rpn_bbox)                                  # [N, A, 4]
    weights = tf.cast(positive & (rank < k), tf.float32)[..., None]
    return _masked_mean(loss, tf.broadcast_to(weights, tf.shape(loss)))


def mrcnn_class_loss(target_class_ids, pred_class_logits, active_class_ids):
    """ROI classifier loss, counting only predictions of classes active in the image's data set.

    target_class_ids: [N, T] int; pred_class_logits: [N, T, C]; active_class_ids: [N, C] (1 for
    the classes of the image's source). Padded ROIs are background targets, as in Matterport.
    """
    logits = tf.cast(pred_class_logits, tf.float32)
    target = tf.cast(target_class_ids, tf.int32)
    pred_ids = tf.argmax(logits, axis=2, output_type=tf.int32)
    pred_active = tf.gather(tf.cast(active_class_ids, tf.float32), pred_ids, batch_dims=1)
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=target, logits=logits)
    return tf.math.divide_no_nan(tf.reduce_sum(ce * pred_active), tf.reduce_sum(pred_active))


def _own_class(pred, ids):
    """pred [M, C, ...] -> [M, ...]: each row's entry for its class ids [M] (clipped to >= 0)."""
    return tf.gather(pred, tf.maximum(ids, 0), axis=1, batch_dims=1)


def mrcnn_bbox_loss(target_bbox, target_class_ids, pred_bbox):
    """Box refinement loss over positive ROIs, for each ROI's true class.

    target_bbox: [N, T, 4]; target_class_ids: [N, T]; pred_bbox: [N, T, C, 4].
    """
    ids = tf.reshape(tf.cast(target_class_ids, tf.int32), [-1])
    target = tf.reshape(tf.cast(target_bbox, tf.float32), [-1, 4])
    pred = tf.reshape(tf.cast(pred_bbox, tf.float32), [-1, tf.shape(pred_bbox)[2], 4])
    loss = smooth_l1(target, _own_class(pred, ids))                      # [M, 4]
    return _masked_mean(loss, tf.broadcast_to(tf.cast(ids > 0, tf.float32)[:, None],
                                              tf.shape(loss)))


def mrcnn_mask_loss(target_masks, target_class_ids, pred_masks):
    """Mask binary cross entropy over positive ROIs, on each ROI's true class channel.

    target_masks: [N, T, h, w] in {0, 1}; target_class_ids: [N, T]; pred_masks:
    [N, K, h, w, C] probabilities for the first K <= T ROIs (the training graph predicts masks
    only for the rows that can hold positives; see ``mrcnn.model.graph``).
    """
    ps = tf.shape(pred_masks)
    target_class_ids = target_class_ids[:, :ps[1]]
    target_masks = target_masks[:, :ps[1]]
    ids = tf.reshape(tf.cast(target_class_ids, tf.int32), [-1])
    y_true = tf.reshape(tf.cast(target_masks, tf.float32), [-1, ps[2], ps[3]])
    pred = tf.transpose(tf.reshape(tf.cast(pred_masks, tf.float32), [-1, ps[2], ps[3], ps[4]]),
                        [0, 3, 1, 2])
    y_pred = tf.clip_by_value(_own_class(pred, ids), 1e-7, 1.0 - 1e-7)  # [M, h, w]
    bce = -(y_true * tf.math.log(y_pred) + (1.0 - y_true) * tf.math.log(1.0 - y_pred))
    return _masked_mean(bce, tf.broadcast_to(tf.cast(ids > 0, tf.float32)[:, None, None],
                                             tf.shape(bce)))


def weight_decay_loss(variables, weight_decay):
    """Matterport's L2 term: sum over weights (not BN gamma/beta) of decay * sum(w^2) / size(w)."""
    # l2_loss is sum(w^2) / 2 in one fused kernel. A variable's size is static, so each term is
    # it times one constant: dividing by tf.size(v) in the graph made autodiff also
    # differentiate the division with respect to that size, ten dead ops per weight in the
    # train step's gradient (1,500 of a 12,400-op step for ResNet-50). The constant goes
    # second: autodiff skips the gradient to a scalar second factor only.
    terms = [tf.nn.l2_loss(tf.cast(v, tf.float32)) * _per_element(v, 2.0 * weight_decay)
             for v in variables if not _is_bn_scale_or_shift(v)]
    return tf.add_n(terms) if terms else tf.constant(0.0)


def _per_element(variable, value):
    """value / size(variable): a Python float where the shape is static, else a tensor."""
    size = variable.shape.num_elements()
    if size is not None:
        return value / max(size, 1)
    return value / tf.cast(tf.size(variable), tf.float32)


def _is_bn_scale_or_shift(variable):
    name = getattr(variable, "path", None) or variable.name
    short = name.split("/")[-1].split(":")[0]
    return short in ("gamma", "beta")


LOSS_NAMES = ("rpn_class_loss", "rpn_bbox_loss", "mrcnn_class_loss", "mrcnn_bbox_loss",
              "mrcnn_mask_loss")


def compute_losses(inputs, outputs, active_class_ids):
    """All five losses from the training model's inputs and outputs dicts."""
    return {
        "rpn_class_loss": rpn_class_loss(inputs["input_rpn_match"], outputs["rpn_class_logits"]),
        "rpn_bbox_loss": rpn_bbox_loss(inputs["input_rpn_bbox"], inputs["input_rpn_match"],
                                       outputs["rpn_bbox"]),
        "mrcnn_class_loss": mrcnn_class_loss(outputs["target_class_ids"],
                                             outputs["mrcnn_class_logits"], active_class_ids),
        "mrcnn_bbox_loss": mrcnn_bbox_loss(outputs["target_bbox"], outputs["target_class_ids"],
                                           outputs["mrcnn_bbox"]),
        "mrcnn_mask_loss": mrcnn_mask_loss(outputs["target_mask"], outputs["target_class_ids"],
                                           outputs["mrcnn_mask"]),
    }
