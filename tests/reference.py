"""Slow, obvious NumPy reference implementations that the TensorFlow layers are tested against."""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def decode(boxes, deltas, std):
    deltas = deltas * std
    h = boxes[:, 2] - boxes[:, 0]
    w = boxes[:, 3] - boxes[:, 1]
    cy = boxes[:, 0] + 0.5 * h + deltas[:, 0] * h
    cx = boxes[:, 1] + 0.5 * w + deltas[:, 1] * w
    h = h * np.exp(deltas[:, 2])
    w = w * np.exp(deltas[:, 3])
    return np.stack([cy - 0.5 * h, cx - 0.5 * w, cy + 0.5 * h, cx + 0.5 * w], axis=1)


def iou(a, b):
    y1, x1 = max(a[0], b[0]), max(a[1], b[1])
    y2, x2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(y2 - y1, 0) * max(x2 - x1, 0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def greedy_nms(boxes, scores, max_out, threshold):
    """Indices kept by greedy NMS, highest score first (a loop, on purpose)."""
    order = list(np.argsort(-scores, kind="stable"))
    keep = []
    while order and len(keep) < max_out:
        i = order.pop(0)
        keep.append(i)
        order = [j for j in order if iou(boxes[i], boxes[j]) <= threshold]
    return keep


def proposals(probs, deltas, anchors, count, nms_threshold, pre_nms_limit, std):
    """One image: probs [A, 2], deltas [A, 4], anchors [A, 4] -> [count, 4]."""
    scores = probs[:, 1]
    top = np.argsort(-scores, kind="stable")[:pre_nms_limit]
    boxes = np.clip(decode(anchors[top], deltas[top], std), 0.0, 1.0)
    keep = greedy_nms(boxes, scores[top], count, nms_threshold)
    out = np.zeros((count, 4), np.float32)
    out[:len(keep)] = boxes[keep]
    return out


def _bilinear_samples(h, w, box, size):
    """TensorFlow's crop_and_resize sample points for one box on an h x w image: (i, j, top,
    bottom, left, right, y_lerp, x_lerp) for every crop pixel (i, j) that falls inside."""
    ch, cw = size
    y1, x1, y2, x2 = box
    for i in range(ch):
        y = y1 * (h - 1) + i * (y2 - y1) * (h - 1) / (ch - 1) if ch > 1 else 0.5 * (y1 + y2) * (h - 1)
        if y < 0 or y > h - 1:
            continue
        t, b = int(np.floor(y)), int(np.ceil(y))
        for j in range(cw):
            x = x1 * (w - 1) + j * (x2 - x1) * (w - 1) / (cw - 1) if cw > 1 else 0.5 * (x1 + x2) * (w - 1)
            if x < 0 or x > w - 1:
                continue
            left, right = int(np.floor(x)), int(np.ceil(x))
            yield i, j, t, b, left, right, y - t, x - left


def crop_and_resize(image, box, size):
    """TensorFlow's crop_and_resize (bilinear, extrapolation 0) for one box: image [H, W, C]."""
    h, w, c = image.shape
    out = np.zeros(tuple(size) + (c,), np.float64)
    for i, j, t, b, left, right, ly, lx in _bilinear_samples(h, w, box, size):
        top = image[t, left] + (image[t, right] - image[t, left]) * lx
        bottom = image[b, left] + (image[b, right] - image[b, left]) * lx
        out[i, j] = top + (bottom - top) * ly
    return out


def crop_and_resize_image_grad(image_shape, box, size, dy):
    """Gradient of sum(crop_and_resize(image, box, size) * dy) with respect to image [H, W, C]:
    every sample's upstream value spread over its four neighbours by the bilinear weights."""
    h, w, c = image_shape
    grad = np.zeros((h, w, c), np.float64)
    for i, j, t, b, left, right, ly, lx in _bilinear_samples(h, w, box, size):
        grad[t, left] += (1 - ly) * (1 - lx) * dy[i, j]
        grad[t, right] += (1 - ly) * lx * dy[i, j]
        grad[b, left] += ly * (1 - lx) * dy[i, j]
        grad[b, right] += ly * lx * dy[i, j]
    return grad


def roi_level(box, image_shape):
    h, w = box[2] - box[0], box[3] - box[1]
    level = np.log2(np.sqrt(h * w) / (224.0 / np.sqrt(image_shape[0] * image_shape[1])))
    return int(min(5, max(2, 4 + np.round(level))))


def pyramid_roi_align(boxes, feature_maps, image_shape, size):
    """boxes [N, R, 4], feature_maps list of [N, h, w, C] for P2..P5 -> [N, R, ph, pw, C]."""
    n, r = boxes.shape[:2]
    c = feature_maps[0].shape[-1]
    out = np.zeros((n, r) + tuple(size) + (c,))
    for i in range(n):
        for k in range(r):
            level = roi_level(boxes[i, k], image_shape)
            out[i, k] = crop_and_resize(feature_maps[level - 2][i], boxes[i, k], size)
    return out


def detections(rois, probs, deltas, window, max_instances, min_confidence, nms_threshold, std):
    """One image, Matterport's algorithm with an explicit loop over classes."""
    class_ids = probs.argmax(axis=1)
    scores = probs[np.arange(len(probs)), class_ids]
    boxes = decode(rois, deltas[np.arange(len(probs)), class_ids], std)
    wy1, wx1, wy2, wx2 = window
    boxes = np.stack([np.clip(boxes[:, 0], wy1, wy2), np.clip(boxes[:, 1], wx1, wx2),
                      np.clip(boxes[:, 2], wy1, wy2), np.clip(boxes[:, 3], wx1, wx2)], axis=1)
    keep = np.flatnonzero((class_ids > 0) & (scores >= min_confidence))
    kept = []
    for cls in np.unique(class_ids[keep]):
        ix = keep[class_ids[keep] == cls]
        sel = greedy_nms(boxes[ix], scores[ix], max_instances, nms_threshold)
        kept.extend(ix[sel])
    kept = sorted(kept, key=lambda i: -scores[i])[:max_instances]
    out = np.zeros((max_instances, 6), np.float32)
    for row, i in enumerate(kept):
        out[row] = list(boxes[i]) + [class_ids[i], scores[i]]
    return out


# ---------------------------------------------------------------------------- training targets
def encode(box, gt, std):
    """Deltas (dy, dx, log dh, log dw) / std taking pixel ``box`` onto ``gt`` (one pair)."""
    h, w = box[2] - box[0], box[3] - box[1]
    gh, gw = gt[2] - gt[0], gt[3] - gt[1]
    cy, cx = box[0] + 0.5 * h, box[1] + 0.5 * w
    gcy, gcx = gt[0] + 0.5 * gh, gt[1] + 0.5 * gw
    return np.array([(gcy - cy) / h, (gcx - cx) / w, np.log(gh / h), np.log(gw / w)]) / std


def rpn_match(anchors, gt_class_ids, gt_boxes):
    """Matterport's anchor labels before subsampling, one anchor at a time.

    anchors [A, 4], gt_boxes [G, 4] pixels; gt_class_ids [G] (negative = crowd).
    Returns (match [A] int: 1 / -1 / 0, best_gt [A]: index into gt_boxes of each anchor's
    best non-crowd box, -1 when there is none).
    """
    real = [g for g in range(len(gt_boxes)) if gt_class_ids[g] > 0]
    crowd = [g for g in range(len(gt_boxes)) if gt_class_ids[g] < 0]
    iou_table = [[iou(a, gt_boxes[g]) for g in real] for a in anchors]
    match = np.zeros(len(anchors), int)
    best_gt = np.full(len(anchors), -1)
    for i, a in enumerate(anchors):
        touches_crowd = any(iou(a, gt_boxes[g]) >= 0.001 for g in crowd)
        best = max(iou_table[i]) if real else 0.0
        if real:
            best_gt[i] = real[int(np.argmax(iou_table[i]))]
        if best < 0.3 and not touches_crowd:
            match[i] = -1
    for k, g in enumerate(real):
        column = [iou_table[i][k] for i in range(len(anchors))]
        top = max(column)
        if top > 0:
            for i in range(len(anchors)):
                if column[i] == top:
                    match[i] = 1
    for i in range(len(anchors)):
        if real and max(iou_table[i]) >= 0.7:
            match[i] = 1
    return match, best_gt


# ---------------------------------------------------------------------------- losses
def softmax_cross_entropy(logits, label):
    z = np.asarray(logits, np.float64)
    z = z - z.max()
    return float(np.log(np.exp(z).sum()) - z[label])


def smooth_l1(a, b):
    d = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))
    return np.where(d < 1.0, 0.5 * d * d, d - 0.5)


def mean_or_zero(values):
    flat = np.ravel(np.asarray(values, np.float64))
    return float(flat.mean()) if flat.size else 0.0


def rpn_class_loss(match, logits):
    """match [N, A] (1 / -1 / 0), logits [N, A, 2]: mean cross entropy over non-ignored anchors."""
    terms = [softmax_cross_entropy(logits[i, a], int(match[i, a] == 1))
             for i in range(match.shape[0]) for a in range(match.shape[1]) if match[i, a] != 0]
    return mean_or_zero(terms)


def rpn_bbox_loss(target, match, pred):
    """target [N, K, 4]: image i's positive deltas packed in anchor order; match [N, A];
    pred [N, A, 4]. Mean smooth L1 over the positives' coordinates."""
    terms = []
    for i in range(match.shape[0]):
        positives = [a for a in range(match.shape[1]) if match[i, a] == 1]
        for row, a in enumerate(positives):
            terms.extend(smooth_l1(target[i, row], pred[i, a]))
    return mean_or_zero(terms)


def mrcnn_class_loss(target_ids, logits, active):
    """target_ids [N, T], logits [N, T, C], active [N, C]: cross entropy of ROIs whose predicted
    class is active in their image, averaged over those ROIs."""
    total, count = 0.0, 0.0
    for i in range(target_ids.shape[0]):
        for t in range(target_ids.shape[1]):
            weight = float(active[i, int(np.argmax(logits[i, t]))])
            total += weight * softmax_cross_entropy(logits[i, t], int(target_ids[i, t]))
            count += weight
    return total / count if count else 0.0


def mrcnn_bbox_loss(target, target_ids, pred):
    """target [N, T, 4], target_ids [N, T], pred [N, T, C, 4]: smooth L1 on positive ROIs'
    true-class deltas."""
    terms = []
    for i in range(target_ids.shape[0]):
        for t in range(target_ids.shape[1]):
            c = int(target_ids[i, t])
            if c > 0:
                terms.extend(smooth_l1(target[i, t], pred[i, t, c]))
    return mean_or_zero(terms)


def mrcnn_mask_loss(target, target_ids, pred):
    """target [N, T, h, w] in {0, 1}, target_ids [N, T], pred [N, K, h, w, C] probabilities of
    the first K ROIs: binary cross entropy (probabilities clipped to [1e-7, 1 - 1e-7]) over the
    pixels of positive ROIs, on their true-class channel."""
    terms = []
    for i in range(pred.shape[0]):
        for t in range(pred.shape[1]):
            c = int(target_ids[i, t])
            if c > 0:
                # Clipped in float32 as Keras does: 1 - 1e-7 rounds to 1 - 1.19e-7.
                eps = np.float32(1e-7)
                p = np.clip(pred[i, t, :, :, c].astype(np.float32), eps,
                            np.float32(1) - eps).astype(np.float64)
                y = target[i, t]
                terms.extend(-(y * np.log(p) + (1 - y) * np.log(1 - p)))
    return mean_or_zero(terms)


def weight_decay(named_arrays, decay):
    """Matterport: sum over weights not named gamma/beta of decay * sum(w^2) / size(w).

    named_arrays: [(short name, array)].
    """
    return sum(decay * float(np.sum(np.square(w, dtype=np.float64))) / w.size
               for name, w in named_arrays if name not in ("gamma", "beta"))


def conv2d_same(x, kernel):
    """TensorFlow's conv2d, stride 1, 'same' zero padding (a correlation), in float64:
    x [N, H, W, C], kernel [kh, kw, C, O] (odd sizes) -> [N, H, W, O]."""
    kh, kw = kernel.shape[:2]
    ph, pw = (kh - 1) // 2, (kw - 1) // 2
    padded = np.pad(np.asarray(x, np.float64), [(0, 0), (ph, ph), (pw, pw), (0, 0)])
    windows = sliding_window_view(padded, (kh, kw), axis=(1, 2))  # [N, H, W, C, kh, kw]
    return np.einsum("nhwcij,ijco->nhwo", windows, np.asarray(kernel, np.float64))


# ---------------------------------------------------------------------------- RPN targets, dense
# mrcnn's RPN targets as they were before the anchor index (every anchor against every box in one
# float64 [A, G] array): the exact reference of mrcnn.training.rpn_targets.
from mrcnn.ops.boxes_np import compute_overlaps, encode_boxes_np  # noqa: E402


def dense_rpn_targets(anchors, gt_class_ids, gt_boxes, train_anchors_per_image, std_dev,
                      rng=None):
    """Label anchors and encode the positives' box deltas.

    anchors: [A, 4] pixels. gt_class_ids: [G] int (negative = crowd). gt_boxes: [G, 4] pixels.
    train_anchors_per_image: anchors kept per image (at most half of them positive).
    std_dev: [4] the deltas are divided by (RPN_BBOX_STD_DEV).
    Returns rpn_match [A] int32 (1 positive, -1 negative, 0 ignored) and
    rpn_bbox [train_anchors_per_image, 4] float32: the positives' deltas in anchor order,
    zero-padded.

    Positive: IoU >= 0.7 with a ground-truth box, or the best anchor(s) of a ground-truth box.
    Negative: IoU < 0.3 with every box and not overlapping a crowd box.
    """
    rng = np.random.default_rng() if rng is None else rng
    anchors = np.asarray(anchors, np.float32)
    gt_class_ids = np.asarray(gt_class_ids)
    gt_boxes = np.asarray(gt_boxes, np.float32).reshape(-1, 4)
    rpn_match = np.zeros([anchors.shape[0]], dtype=np.int32)
    rpn_bbox = np.zeros([train_anchors_per_image, 4], dtype=np.float32)

    crowd = gt_class_ids < 0
    if crowd.any():
        crowd_iou = compute_overlaps(anchors, gt_boxes[crowd])
        no_crowd = crowd_iou.max(axis=1) < 0.001
        gt_boxes = gt_boxes[~crowd]
    else:
        no_crowd = np.ones([anchors.shape[0]], dtype=bool)

    if len(gt_boxes):
        overlaps = compute_overlaps(anchors, gt_boxes)  # [A, G]
        best_gt = overlaps.argmax(axis=1)
        best_iou = overlaps[np.arange(len(anchors)), best_gt]
        rpn_match[(best_iou < 0.3) & no_crowd] = -1
        # Every gt box gets its best anchor(s), even below 0.7; a box that overlaps no anchor at
        # all gets none (otherwise every zero-IoU anchor would tie for best).
        gt_best = overlaps.max(axis=0)
        ties = np.argwhere((overlaps == gt_best[None]) & (gt_best[None] > 0))[:, 0]
        rpn_match[ties] = 1
        rpn_match[best_iou >= 0.7] = 1
    else:
        best_gt = np.zeros([anchors.shape[0]], dtype=np.int64)
        rpn_match[no_crowd] = -1

    # Balance: at most half positives, negatives fill the rest.
    positive = np.flatnonzero(rpn_match == 1)
    extra = len(positive) - train_anchors_per_image // 2
    if extra > 0:
        rpn_match[rng.choice(positive, extra, replace=False)] = 0
    negative = np.flatnonzero(rpn_match == -1)
    extra = len(negative) - (train_anchors_per_image - np.count_nonzero(rpn_match == 1))
    if extra > 0:
        rpn_match[rng.choice(negative, extra, replace=False)] = 0

    positive = np.flatnonzero(rpn_match == 1)
    if len(positive):
        rpn_bbox[:len(positive)] = encode_boxes_np(anchors[positive], gt_boxes[best_gt[positive]],
                                                   std_dev)
    return rpn_match, rpn_bbox
