"""Matterport's pre- and post-processing, re-stated in plain NumPy on the library calls it makes.

Each function calls ``skimage.transform.resize`` / ``scipy.ndimage.zoom`` with the arguments
Matterport's ``mrcnn/utils.py`` and ``mrcnn/model.py`` pass, so the tests compare ``mrcnn`` with
what those calls return, not with another implementation of ours. Boolean crops are cast to float
before resizing, as current scikit-image requires (order 1 is undefined for bool there).
"""

import random
import warnings

import numpy as np
import scipy.ndimage
import skimage.transform

MEAN_PIXEL = np.array([123.7, 116.8, 103.9])


def resize(image, output_shape, preserve_range=False):
    return skimage.transform.resize(image, output_shape, order=1, mode="constant", cval=0,
                                    clip=True, preserve_range=preserve_range,
                                    anti_aliasing=False, anti_aliasing_sigma=None)


def resize_image(image, min_dim=None, max_dim=None, min_scale=None, mode="square"):
    dtype = image.dtype
    h, w = image.shape[:2]
    window, scale, padding, crop = (0, 0, h, w), 1, [(0, 0), (0, 0), (0, 0)], None
    if mode == "none":
        return image, window, scale, padding, crop
    if min_dim:
        scale = max(1, min_dim / min(h, w))
    if min_scale and scale < min_scale:
        scale = min_scale
    if max_dim and mode == "square" and round(max(h, w) * scale) > max_dim:
        scale = max_dim / max(h, w)
    if scale != 1:
        image = resize(image, (round(h * scale), round(w * scale)), preserve_range=True)
    h, w = image.shape[:2]
    if mode == "square":
        top, left = (max_dim - h) // 2, (max_dim - w) // 2
        padding = [(top, max_dim - h - top), (left, max_dim - w - left), (0, 0)]
        image = np.pad(image, padding, mode="constant", constant_values=0)
        window = (top, left, h + top, w + left)
    elif mode == "pad64":
        assert min_dim % 64 == 0
        pads = []
        for size in (h, w):
            extra = (64 - size % 64) if size % 64 else 0
            pads.append((extra // 2, extra - extra // 2))
        padding = [pads[0], pads[1], (0, 0)]
        image = np.pad(image, padding, mode="constant", constant_values=0)
        window = (pads[0][0], pads[1][0], h + pads[0][0], w + pads[1][0])
    elif mode == "crop":
        y = random.randint(0, h - min_dim)
        x = random.randint(0, w - min_dim)
        crop = (y, x, min_dim, min_dim)
        image = image[y:y + min_dim, x:x + min_dim]
        window = (0, 0, min_dim, min_dim)
    return image.astype(dtype), window, scale, padding, crop


def resize_mask(mask, scale, padding, crop=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mask = scipy.ndimage.zoom(mask, zoom=[scale, scale, 1], order=0)
    if crop is not None:
        y, x, h, w = crop
        return mask[y:y + h, x:x + w]
    return np.pad(mask, padding, mode="constant", constant_values=0)


def minimize_mask(bbox, mask, mini_shape):
    out = np.zeros(tuple(mini_shape) + (mask.shape[-1],), dtype=bool)
    for i in range(mask.shape[-1]):
        y1, x1, y2, x2 = bbox[i][:4]
        m = mask[:, :, i].astype(bool)[y1:y2, x1:x2]
        out[:, :, i] = np.around(resize(m.astype(float), mini_shape)).astype(bool)
    return out


def expand_mask(bbox, mini_mask, image_shape):
    out = np.zeros(tuple(image_shape[:2]) + (mini_mask.shape[-1],), dtype=bool)
    for i in range(mini_mask.shape[-1]):
        y1, x1, y2, x2 = bbox[i][:4]
        m = resize(mini_mask[:, :, i].astype(float), (y2 - y1, x2 - x1))
        out[y1:y2, x1:x2, i] = np.around(m).astype(bool)
    return out


def unmold_mask(mask, bbox, image_shape):
    y1, x1, y2, x2 = bbox
    m = np.where(resize(mask, (y2 - y1, x2 - x1)) >= 0.5, 1, 0).astype(bool)
    full = np.zeros(image_shape[:2], dtype=bool)
    full[y1:y2, x1:x2] = m
    return full


def norm_boxes(boxes, shape):
    h, w = shape
    return np.divide(np.asarray(boxes) - np.array([0, 0, 1, 1]),
                     np.array([h - 1, w - 1, h - 1, w - 1])).astype(np.float32)


def denorm_boxes(boxes, shape):
    h, w = shape
    return np.around(np.multiply(boxes, np.array([h - 1, w - 1, h - 1, w - 1]))
                     + np.array([0, 0, 1, 1])).astype(np.int32)


def compose_image_meta(image_id, original_image_shape, image_shape, window, scale, active):
    return np.array([image_id] + list(original_image_shape) + list(image_shape) + list(window)
                    + [scale] + list(active))


def mold_inputs(images, config):
    """``MaskRCNN.mold_inputs``: molded images (as fed to the graph: float32), metas, windows."""
    molded, metas, windows = [], [], []
    for image in images:
        m, window, scale, _, _ = resize_image(image, min_dim=config.IMAGE_MIN_DIM,
                                              min_scale=config.IMAGE_MIN_SCALE,
                                              max_dim=config.IMAGE_MAX_DIM,
                                              mode=config.IMAGE_RESIZE_MODE)
        m = m.astype(np.float32) - MEAN_PIXEL
        metas.append(compose_image_meta(0, image.shape, m.shape, window, scale,
                                        np.zeros([config.NUM_CLASSES], dtype=np.int32)))
        molded.append(m)
        windows.append(window)
    return (np.stack(molded).astype(np.float32), np.stack(metas).astype(np.float32),
            np.stack(windows))


def unmold_detections(detections, mrcnn_mask, original_image_shape, image_shape, window):
    """``MaskRCNN.unmold_detections``; mrcnn_mask [D, h, w, C]."""
    zero_ix = np.where(detections[:, 4] == 0)[0]
    n = zero_ix[0] if zero_ix.shape[0] > 0 else detections.shape[0]
    boxes = detections[:n, :4]
    class_ids = detections[:n, 4].astype(np.int32)
    scores = detections[:n, 5]
    masks = mrcnn_mask[np.arange(n), :, :, class_ids]
    wy1, wx1, wy2, wx2 = norm_boxes(window, image_shape[:2])
    shift = np.array([wy1, wx1, wy1, wx1])
    scale = np.array([wy2 - wy1, wx2 - wx1, wy2 - wy1, wx2 - wx1])
    boxes = denorm_boxes(np.divide(boxes - shift, scale), original_image_shape[:2])
    keep = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) > 0
    boxes, class_ids, scores, masks = boxes[keep], class_ids[keep], scores[keep], masks[keep]
    full = [unmold_mask(masks[i], boxes[i], original_image_shape) for i in range(len(boxes))]
    full = (np.stack(full, axis=-1) if full
            else np.empty(tuple(original_image_shape[:2]) + (0,)))
    return boxes, class_ids, scores, full


def extract_bboxes(mask):
    boxes = np.zeros([mask.shape[-1], 4], dtype=np.int32)
    for i in range(mask.shape[-1]):
        rows = np.where(np.any(mask[:, :, i], axis=1))[0]
        cols = np.where(np.any(mask[:, :, i], axis=0))[0]
        if len(rows):
            boxes[i] = [rows[0], cols[0], rows[-1] + 1, cols[-1] + 1]
    return boxes


def load_image_gt(image, mask, class_ids, config, image_id=0, active=None):
    """``load_image_gt`` without augmentation, on an image and masks already loaded."""
    original_shape = image.shape
    image, window, scale, padding, crop = resize_image(
        image, min_dim=config.IMAGE_MIN_DIM, min_scale=config.IMAGE_MIN_SCALE,
        max_dim=config.IMAGE_MAX_DIM, mode=config.IMAGE_RESIZE_MODE)
    mask = resize_mask(mask, scale, padding, crop)
    keep = np.sum(mask, axis=(0, 1)) > 0
    mask, class_ids = mask[:, :, keep], class_ids[keep]
    bbox = extract_bboxes(mask)
    if config.USE_MINI_MASK:
        mask = minimize_mask(bbox, mask, config.MINI_MASK_SHAPE)
    meta = compose_image_meta(image_id, original_shape, image.shape, window, scale, active)
    return image, meta, class_ids, bbox, mask


# ---------------------------------------------------------------------------- training inputs
def load_image(path):
    """``Dataset.load_image``: ``skimage.io.imread``, grayscale to RGB, alpha dropped."""
    import skimage.color
    import skimage.io
    image = skimage.io.imread(path)
    if image.ndim != 3:
        image = skimage.color.gray2rgb(image)
    if image.shape[-1] == 4:
        image = image[..., :3]
    return image


def compute_iou(box, boxes, box_area, boxes_area):
    y1 = np.maximum(box[0], boxes[:, 0])
    y2 = np.minimum(box[2], boxes[:, 2])
    x1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[3], boxes[:, 3])
    intersection = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    union = box_area + boxes_area[:] - intersection[:]
    return intersection / union


def compute_overlaps(boxes1, boxes2):
    """``utils.compute_overlaps``: one column at a time, float64 [N1, N2]."""
    area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])
    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])
    overlaps = np.zeros((boxes1.shape[0], boxes2.shape[0]))
    for i in range(overlaps.shape[1]):
        overlaps[:, i] = compute_iou(boxes2[i], boxes1, area2[i], area1)
    return overlaps


def build_rpn_targets(anchors, gt_class_ids, gt_boxes, config):
    """``model.build_rpn_targets`` (sampling with NumPy's global generator, as Matterport)."""
    rpn_match = np.zeros([anchors.shape[0]], dtype=np.int32)
    rpn_bbox = np.zeros((config.RPN_TRAIN_ANCHORS_PER_IMAGE, 4))
    crowd_ix = np.where(gt_class_ids < 0)[0]
    if crowd_ix.shape[0] > 0:
        non_crowd_ix = np.where(gt_class_ids > 0)[0]
        crowd_boxes = gt_boxes[crowd_ix]
        gt_boxes = gt_boxes[non_crowd_ix]
        crowd_overlaps = compute_overlaps(anchors, crowd_boxes)
        no_crowd_bool = np.amax(crowd_overlaps, axis=1) < 0.001
    else:
        no_crowd_bool = np.ones([anchors.shape[0]], dtype=bool)
    overlaps = compute_overlaps(anchors, gt_boxes)
    anchor_iou_argmax = np.argmax(overlaps, axis=1)
    anchor_iou_max = overlaps[np.arange(overlaps.shape[0]), anchor_iou_argmax]
    rpn_match[(anchor_iou_max < 0.3) & no_crowd_bool] = -1
    gt_iou_argmax = np.argwhere(overlaps == np.max(overlaps, axis=0))[:, 0]
    rpn_match[gt_iou_argmax] = 1
    rpn_match[anchor_iou_max >= 0.7] = 1
    ids = np.where(rpn_match == 1)[0]
    extra = len(ids) - (config.RPN_TRAIN_ANCHORS_PER_IMAGE // 2)
    if extra > 0:
        rpn_match[np.random.choice(ids, extra, replace=False)] = 0
    ids = np.where(rpn_match == -1)[0]
    extra = len(ids) - (config.RPN_TRAIN_ANCHORS_PER_IMAGE - np.sum(rpn_match == 1))
    if extra > 0:
        rpn_match[np.random.choice(ids, extra, replace=False)] = 0
    ids = np.where(rpn_match == 1)[0]
    for ix, (i, a) in enumerate(zip(ids, anchors[ids])):
        gt = gt_boxes[anchor_iou_argmax[i]]
        gt_h, gt_w = gt[2] - gt[0], gt[3] - gt[1]
        gt_cy, gt_cx = gt[0] + 0.5 * gt_h, gt[1] + 0.5 * gt_w
        a_h, a_w = a[2] - a[0], a[3] - a[1]
        a_cy, a_cx = a[0] + 0.5 * a_h, a[1] + 0.5 * a_w
        rpn_bbox[ix] = [(gt_cy - a_cy) / a_h, (gt_cx - a_cx) / a_w,
                        np.log(gt_h / a_h), np.log(gt_w / a_w)]
        rpn_bbox[ix] /= config.RPN_BBOX_STD_DEV
    return rpn_match, rpn_bbox


def training_item(dataset, config, image_id, anchors):
    """One image's share of ``data_generator``'s batch, without augmentation: ``load_image``,
    the user's ``load_mask``, ``load_image_gt``, ``build_rpn_targets``, the ``MAX_GT_INSTANCES``
    cut and ``mold_image``. Returns the arrays the batch takes from it."""
    image = load_image(dataset.image_info[image_id]["path"])
    mask, class_ids = dataset.load_mask(image_id)
    active = np.zeros([config.NUM_CLASSES], dtype=np.int32)
    active[dataset.source_class_ids[dataset.image_info[image_id]["source"]]] = 1
    image, meta, class_ids, boxes, mask = load_image_gt(image, mask, np.asarray(class_ids),
                                                        config, image_id, active)
    rpn_match, rpn_bbox = build_rpn_targets(anchors, class_ids, boxes, config)
    if boxes.shape[0] > config.MAX_GT_INSTANCES:
        ids = np.random.choice(np.arange(boxes.shape[0]), config.MAX_GT_INSTANCES, replace=False)
        class_ids, boxes, mask = class_ids[ids], boxes[ids], mask[:, :, ids]
    molded = image.astype(np.float32) - MEAN_PIXEL
    return molded, meta, rpn_match, rpn_bbox, class_ids, boxes, mask
