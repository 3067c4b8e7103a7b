"""The model learns: a small model overfits one generated shapes scene (at four image sizes) until
detect() finds every object of every image with the right class (by mask on the 128 px image,
by box on the larger ones), and the training loss falls by at least half."""

import numpy as np

from conftest import OverfitInference
from mrcnn import model as modellib
from mrcnn.ops.boxes_np import compute_overlaps, compute_overlaps_masks
from mrcnn.utils import extract_bboxes


def test_small_model_overfits_one_image(overfit_run, tmp_path):
    dataset = overfit_run.dataset
    losses = overfit_run.history.history["loss"]
    assert losses[-1] <= 0.5 * losses[0], losses

    detector = modellib.MaskRCNN("inference", OverfitInference(), str(tmp_path))
    detector.load_weights(overfit_run.weights, by_name=True)
    for image_id in dataset.image_ids:
        gt_masks, gt_ids = dataset.load_mask(image_id)
        assert len(gt_ids) >= 2
        r = detector.detect([dataset.load_image(image_id)])[0]
        # On the canvases the objects shrink to 50-80% once resized to 128 px, where 250 steps
        # of mask head training give some runs empty or rough masks: boxes there.
        overlaps = (compute_overlaps_masks(r["masks"], gt_masks) if image_id == 0  # [pred, gt]
                    else compute_overlaps(r["rois"].astype(np.float32),
                                          extract_bboxes(gt_masks).astype(np.float32)))
        for g in range(len(gt_ids)):
            found = [p for p in range(len(r["class_ids"]))
                     if overlaps[p, g] >= 0.5 and r["class_ids"][p] == gt_ids[g]]
            assert found, "image %d: object %d (class %d) not found: %s" % (
                image_id, g, gt_ids[g], r)

    # The same weights in bfloat16 (Config.PRECISION) find the same objects.
    class Bfloat16(OverfitInference):
        PRECISION = "mixed_bfloat16"

    bf16 = modellib.MaskRCNN("inference", Bfloat16(), str(tmp_path))
    bf16.load_weights(overfit_run.weights, by_name=True)
    r = detector.detect([dataset.load_image(dataset.image_ids[0])])[0]
    b = bf16.detect([dataset.load_image(dataset.image_ids[0])])[0]
    mask_ious = compute_overlaps_masks(r["masks"], b["masks"])
    best_ious = []
    for p in range(len(r["class_ids"])):
        close = (np.abs(b["rois"] - r["rois"][p]).max(axis=1) <= 2 if len(b["rois"])
                 else np.zeros(0, bool))
        same = [q for q in np.flatnonzero(close) if b["class_ids"][q] == r["class_ids"][p]]
        # A score within bfloat16's reach of the confidence cut may fall on either side of it.
        if not same and r["scores"][p] < OverfitInference.DETECTION_MIN_CONFIDENCE + 0.05:
            continue
        assert same, "fp32 detection %d %s (score %.3f) not in bf16's %s %s" % (
            p, r["rois"][p], r["scores"][p], b["rois"], b["scores"])
        best_ious.append(max(mask_ious[p, q] for q in same))
    # Objects here are a few tens of pixels across, so a few boundary pixels move a mask's IoU
    # by several points (seen: 0.94, 1.00, 1.00): every mask close, and on average within 10%.
    assert best_ious, (r, b)
    assert min(best_ious) >= 0.75 and np.mean(best_ious) >= 0.9, best_ious

