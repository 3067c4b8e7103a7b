"""How far an exported model's detections agree with ``MaskRCNN.detect()``'s."""

import numpy as np

from mrcnn.ops.boxes_np import compute_overlaps_masks

__all__ = ["detection_agreement"]


def detection_agreement(expected, got, box_px=2, mask_iou=0.9):
    """Match two lists of ``detect()`` results (one dict per image, same images, same order).

    A detection of ``expected`` is matched by one of ``got`` of the same class whose box
    (``rois``, y1, x1, y2, x2 in pixels) has every edge within ``box_px`` and whose mask has IoU
    >= ``mask_iou`` with it; each detection of ``got`` matches one of ``expected`` at most.
    Returns ``(matched, total, extra)``: matched detections of ``expected``, all of them, and
    detections of ``got`` that matched none.
    """
    matched = total = extra = 0
    for a, b in zip(expected, got, strict=True):
        ious = compute_overlaps_masks(a["masks"], b["masks"])
        taken = set()
        for i in range(len(a["rois"])):
            candidates = [j for j in range(len(b["rois"])) if j not in taken
                          and b["class_ids"][j] == a["class_ids"][i]
                          and np.abs(np.asarray(b["rois"][j]) - a["rois"][i]).max() <= box_px
                          and ious[i, j] >= mask_iou]
            if candidates:
                taken.add(max(candidates, key=lambda j: ious[i, j]))
                matched += 1
        total += len(a["rois"])
        extra += len(b["rois"]) - len(taken)
    return matched, total, extra
