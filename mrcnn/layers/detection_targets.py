"""DetectionTargetLayer: sample ROIs from the proposals and build second-stage targets.

Axes: N images, P proposals, G ground-truth instances, T = TRAIN_ROIS_PER_IMAGE.
Boxes are normalized ``(y1, x1, y2, x2)``. Crowd instances have negative class ids: ROIs that
overlap them are used neither as positives nor as negatives.
"""

import keras
import numpy as np
import tensorflow as tf

from mrcnn.layers.roi_align import gather_crop_and_resize
from mrcnn.ops import portable
from mrcnn.ops.boxes import box_iou, encode_boxes, trim_zero_rows


def detection_targets(proposals, gt_class_ids, gt_boxes, gt_masks, train_rois_per_image,
                      roi_positive_ratio, mask_shape, use_mini_mask, std_dev):
    """Targets of one image.

    proposals: [P, 4] normalized, zero-padded. gt_class_ids: [G] int32, zero-padded.
    gt_boxes: [G, 4] normalized, zero-padded. gt_masks: [h, w, G] (full image or mini masks).
    Returns (rois [T, 4], class_ids [T] int32, deltas [T, 4] divided by ``std_dev``,
    masks [T, mask_h, mask_w] float32 in {0, 1}); positives first, then negatives, then zero rows.
    """
    proposals, _ = trim_zero_rows(proposals, name="trim_proposals")
    gt_boxes, non_zeros = trim_zero_rows(gt_boxes, name="trim_gt_boxes")
    gt_class_ids = tf.boolean_mask(tf.cast(gt_class_ids, tf.int32), non_zeros)
    gt_masks = tf.gather(gt_masks, tf.where(non_zeros)[:, 0], axis=2)

    crowd = gt_class_ids < 0
    crowd_boxes = tf.boolean_mask(gt_boxes, crowd)
    gt_boxes = tf.boolean_mask(gt_boxes, ~crowd)
    gt_class_ids = tf.boolean_mask(gt_class_ids, ~crowd)
    gt_masks = tf.gather(gt_masks, tf.where(~crowd)[:, 0], axis=2)

    overlaps = box_iou(proposals, gt_boxes)
    # reduce_max over an empty axis is -inf: with no (crowd) boxes nothing is positive / crowd.
    no_crowd = tf.reduce_max(box_iou(proposals, crowd_boxes), axis=1) < 0.001
    roi_iou_max = tf.reduce_max(overlaps, axis=1)
    positive = tf.where(roi_iou_max >= 0.5)[:, 0]
    negative = tf.where((roi_iou_max < 0.5) & no_crowd)[:, 0]

    positive_count = int(train_rois_per_image * roi_positive_ratio)
    positive = tf.random.shuffle(positive)[:positive_count]
    positive_count = tf.shape(positive)[0]
    negative_count = tf.cast(tf.cast(positive_count, tf.float32) / roi_positive_ratio,
                             tf.int32) - positive_count
    negative = tf.random.shuffle(negative)[:negative_count]
    positive_rois = tf.gather(proposals, positive)
    negative_rois = tf.gather(proposals, negative)

    positive_overlaps = tf.gather(overlaps, positive)
    assignment = tf.cond(tf.shape(positive_overlaps)[1] > 0,
                         lambda: tf.argmax(positive_overlaps, axis=1),
                         lambda: tf.zeros([0], tf.int64))
    roi_gt_boxes = tf.gather(gt_boxes, assignment)
    roi_class_ids = tf.gather(gt_class_ids, assignment)
    deltas = encode_boxes(positive_rois, roi_gt_boxes, std_dev)

    # Masks to float before the transpose, by a select: oneDNN's Transpose rejects bool tensors
    # and TensorFlow logs "E0000 ... oneDNN supports DT_BOOL only on platforms with AVX-512" (on
    # every CPU); a plain Cast does not help, since grappler moves a widening Cast after the
    # Transpose.
    gt_masks = (tf.where(gt_masks, 1.0, 0.0) if gt_masks.dtype == tf.bool
                else tf.cast(gt_masks, tf.float32))
    roi_masks = tf.gather(tf.transpose(gt_masks, [2, 0, 1])[..., None], assignment)
    crop_boxes = positive_rois
    if use_mini_mask:
        # Mini masks cover only their gt box: express the ROI in that box's frame.
        y1, x1, y2, x2 = tf.split(positive_rois, 4, axis=1)
        gy1, gx1, gy2, gx2 = tf.split(roi_gt_boxes, 4, axis=1)
        gh, gw = gy2 - gy1, gx2 - gx1
        crop_boxes = tf.concat([(y1 - gy1) / gh, (x1 - gx1) / gw,
                                (y2 - gy1) / gh, (x2 - gx1) / gw], axis=1)
    masks = tf.image.crop_and_resize(roi_masks, crop_boxes,
                                     tf.range(tf.shape(roi_masks)[0]), mask_shape)
    masks = tf.round(tf.squeeze(masks, axis=3))

    rois = tf.concat([positive_rois, negative_rois], axis=0)
    n_neg = tf.shape(negative_rois)[0]
    pad = tf.maximum(train_rois_per_image - tf.shape(rois)[0], 0)
    rois = tf.pad(rois, [[0, pad], [0, 0]])
    roi_class_ids = tf.pad(roi_class_ids, [[0, n_neg + pad]])
    deltas = tf.pad(deltas, [[0, n_neg + pad], [0, 0]])
    masks = tf.pad(masks, [[0, n_neg + pad], [0, 0], [0, 0]])
    return rois, roi_class_ids, deltas, masks


def _pick(indices, j):
    """indices[j] for row numbers j (clipped into range), a static gather."""
    return tf.gather(indices, tf.clip_by_value(j, 0, tf.shape(indices)[0] - 1))


def detection_targets_static(proposals, gt_class_ids, gt_boxes, gt_masks, train_rois_per_image,
                             roi_positive_ratio, mask_shape, use_mini_mask, std_dev):
    """``detection_targets`` with every shape static (XLA compiles it).

    Arguments and results as ``detection_targets``, and the same rules (positives IoU >= 0.5,
    negatives < 0.5 and away from crowds, at most T * ratio positives, negatives to fill the
    ratio). Padding and crowd rows are masked instead of removed, and the random subsets are
    the top-k of random keys instead of shuffled index lists: other random draws, the same
    distribution.
    """
    t = train_rois_per_image
    proposals = tf.cast(proposals, tf.float32)
    gt_boxes = tf.cast(gt_boxes, tf.float32)
    gt_class_ids = tf.cast(gt_class_ids, tf.int32)
    p = proposals.shape[0]
    if p is None:
        raise ValueError("detection_targets_static needs a static number of proposals")
    valid = tf.reduce_any(tf.not_equal(proposals, 0.0), axis=1)
    gt_valid = tf.reduce_any(tf.not_equal(gt_boxes, 0.0), axis=1)
    crowd = gt_valid & (gt_class_ids < 0)
    real = gt_valid & ~crowd

    iou = box_iou(proposals, gt_boxes)                                    # [P, G]
    # IoU is >= 0, so -1 in the columns of other boxes leaves each maximum as over the subset.
    overlaps = tf.where(real[None, :], iou, -1.0)
    no_crowd = tf.reduce_max(tf.where(crowd[None, :], iou, -1.0), axis=1) < 0.001
    roi_iou_max = tf.reduce_max(overlaps, axis=1)
    positive = valid & (roi_iou_max >= 0.5)
    negative = valid & (roi_iou_max < 0.5) & no_crowd

    def random_subset(mask, k):
        keys = tf.where(mask, tf.random.uniform(tf.shape(mask)), -1.0)
        return tf.math.top_k(keys, k=k).indices

    positive_cap = int(t * roi_positive_ratio)
    positives = random_subset(positive, min(positive_cap, p))
    negatives = random_subset(negative, min(t, p))
    positive_count = tf.minimum(tf.reduce_sum(tf.cast(positive, tf.int32)), positive_cap)
    negative_count = tf.cast(tf.cast(positive_count, tf.float32) / roi_positive_ratio,
                             tf.int32) - positive_count
    negative_count = tf.minimum(negative_count, tf.reduce_sum(tf.cast(negative, tf.int32)))
    negative_count = tf.minimum(negative_count, t - positive_count)

    row = tf.range(t)
    is_pos = row < positive_count
    is_neg = ~is_pos & (row < positive_count + negative_count)
    index = tf.where(is_pos, _pick(positives, row), _pick(negatives, row - positive_count))
    rois = tf.where((is_pos | is_neg)[:, None], tf.gather(proposals, index), 0.0)

    assignment = tf.argmax(tf.gather(overlaps, index), axis=1, output_type=tf.int32)
    roi_gt_boxes = tf.gather(gt_boxes, assignment)
    class_ids = tf.where(is_pos, tf.gather(gt_class_ids, assignment), 0)
    unit = tf.constant([[0.0, 0.0, 1.0, 1.0]])
    # Non-positive rows are encoded from a unit box (never used), so no NaN is computed.
    deltas = encode_boxes(tf.where(is_pos[:, None], rois, unit),
                          tf.where(is_pos[:, None], roi_gt_boxes, unit), std_dev)
    deltas = tf.where(is_pos[:, None], deltas, 0.0)

    # Only the first positive_cap rows can be positive: crop masks for those alone.
    m = min(positive_cap, t)
    mask_pos, mask_rois, mask_gt = is_pos[:m], rois[:m], roi_gt_boxes[:m]
    gt_masks = (tf.where(gt_masks, 1.0, 0.0) if gt_masks.dtype == tf.bool
                else tf.cast(gt_masks, tf.float32))
    gt_masks = tf.transpose(gt_masks, [2, 0, 1])[..., None]              # [G, h, w, 1]
    crop_boxes = mask_rois
    if use_mini_mask:
        y1, x1, y2, x2 = tf.split(mask_rois, 4, axis=1)
        gy1, gx1, gy2, gx2 = tf.split(tf.where(mask_pos[:, None], mask_gt, unit), 4, axis=1)
        gh, gw = gy2 - gy1, gx2 - gx1
        crop_boxes = tf.concat([(y1 - gy1) / gh, (x1 - gx1) / gw,
                                (y2 - gy1) / gh, (x2 - gx1) / gw], axis=1)
    crop_boxes = tf.where(mask_pos[:, None], crop_boxes, unit)
    masks = gather_crop_and_resize(gt_masks, crop_boxes, assignment[:m], mask_shape)
    masks = tf.where(mask_pos[:, None, None], tf.round(masks[..., 0]), 0.0)
    masks = tf.pad(masks, [[0, t - m], [0, 0], [0, 0]])
    return rois, class_ids, deltas, masks


@keras.saving.register_keras_serializable(package="mrcnn")
class DetectionTargetLayer(keras.layers.Layer):
    """Keras layer over ``detection_targets``, batched.

    Inputs: [proposals [N, P, 4], gt_class_ids [N, G], gt_boxes [N, G, 4] normalized,
    gt_masks [N, h, w, G]].
    Outputs: rois [N, T, 4], target_class_ids [N, T] int32, target_bbox [N, T, 4],
    target_mask [N, T, mask_h, mask_w].
    """

    def __init__(self, train_rois_per_image=200, roi_positive_ratio=0.33, mask_shape=(28, 28),
                 use_mini_mask=True, bbox_std_dev=(0.1, 0.1, 0.2, 0.2), **kwargs):
        super().__init__(**kwargs)
        self.train_rois_per_image = int(train_rois_per_image)
        self.roi_positive_ratio = float(roi_positive_ratio)
        self.mask_shape = tuple(int(v) for v in mask_shape)
        self.use_mini_mask = bool(use_mini_mask)
        self.bbox_std_dev = [float(v) for v in np.asarray(bbox_std_dev).reshape(-1)]

    def call(self, inputs):
        proposals, gt_class_ids, gt_boxes, gt_masks = inputs
        t, (mh, mw) = self.train_rois_per_image, self.mask_shape

        targets = detection_targets_static if portable.static() else detection_targets

        def one_image(args):
            return targets(*args, t, self.roi_positive_ratio, self.mask_shape,
                           self.use_mini_mask, self.bbox_std_dev)

        return tf.map_fn(
            one_image,
            (tf.cast(proposals, tf.float32), tf.cast(gt_class_ids, tf.int32),
             tf.cast(gt_boxes, tf.float32), gt_masks),
            fn_output_signature=(tf.TensorSpec([t, 4], tf.float32), tf.TensorSpec([t], tf.int32),
                                 tf.TensorSpec([t, 4], tf.float32),
                                 tf.TensorSpec([t, mh, mw], tf.float32)))

    def compute_output_spec(self, inputs):
        n = inputs[0].shape[0]
        t, (mh, mw) = self.train_rois_per_image, self.mask_shape
        return (keras.KerasTensor((n, t, 4), "float32"), keras.KerasTensor((n, t), "int32"),
                keras.KerasTensor((n, t, 4), "float32"),
                keras.KerasTensor((n, t, mh, mw), "float32"))

    def get_config(self):
        config = super().get_config()
        config.update(train_rois_per_image=self.train_rois_per_image,
                      roi_positive_ratio=self.roi_positive_ratio, mask_shape=self.mask_shape,
                      use_mini_mask=self.use_mini_mask, bbox_std_dev=self.bbox_std_dev)
        return config
