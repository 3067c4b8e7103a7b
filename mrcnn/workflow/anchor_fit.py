"""Anchor sizes and ratios that fit a data set's boxes (k-means in `mrcnn.anchors`), measured
in the network input of a configuration, and the report ``mrcnn anchors`` prints."""

import numpy as np

from mrcnn.workflow.errors import WorkflowError


def molded_boxes(dataset, config):
    """Ground-truth boxes in network-input pixels, grouped by network-input shape.

    Each image's boxes (``extract_bboxes`` of its masks, ``[y1, x1, y2, x2]`` pixels) are scaled
    and shifted as ``resize_image`` with the config's IMAGE_RESIZE_MODE, IMAGE_MIN_DIM,
    IMAGE_MAX_DIM and IMAGE_MIN_SCALE moves the image (in ``crop`` mode the random crop is
    ignored: the boxes stay in the resized, uncropped image).

    Returns:
        ``{(H, W): float64 [N, 4] boxes}``.
    """
    from mrcnn.image import resize_image
    from mrcnn.ops.boxes_np import extract_bboxes

    groups = {}
    for image_id in dataset.image_ids:
        info = dataset.image_info[image_id]
        masks, _ = dataset.load_mask(image_id)
        if masks.shape[-1] == 0:
            continue
        boxes = extract_bboxes(masks).astype(np.float64)
        # Only the geometry of the resize matters; a 1-channel blank image of the same size
        # gives it without decoding the photo.
        blank = np.zeros((info["height"], info["width"], 1), np.uint8)
        mode = "square" if config.IMAGE_RESIZE_MODE == "crop" else config.IMAGE_RESIZE_MODE
        molded, window, scale, _, _ = resize_image(
            blank, min_dim=config.IMAGE_MIN_DIM, max_dim=config.IMAGE_MAX_DIM,
            min_scale=config.IMAGE_MIN_SCALE, mode=mode)
        boxes = boxes * scale + np.array([window[0], window[1], window[0], window[1]])
        groups.setdefault(tuple(molded.shape[:2]), []).append(boxes)
    return {shape: np.concatenate(b) for shape, b in groups.items()}


def fit_anchors(dataset, config, num_ratios=3):
    """k-means anchors for a data set and how well they and the config's anchors fit its boxes.

    Returns a dict: ``scales`` (int, one per level, ascending), ``ratios`` (rounded to 0.01),
    ``num_boxes``, ``num_images``, ``shapes`` (network-input shapes), ``sizes`` / ``aspects``
    (min, median, max of sqrt(h*w) and w/h in molded pixels), and for ``suggested`` and
    ``default`` (the config's anchors): ``mean_iou`` (mean over boxes of the best IoU with any
    anchor of the pyramid) and ``recall_0.7`` (fraction of boxes whose best anchor reaches the
    RPN's positive IoU 0.7).
    """
    from mrcnn.anchors import best_anchor_iou, suggest_anchors

    groups = molded_boxes(dataset, config)
    if not groups:
        raise WorkflowError("no ground-truth box in the data set; nothing to fit anchors to")
    boxes = np.concatenate(list(groups.values()))
    scales, ratios = suggest_anchors(boxes, num_scales=len(config.BACKBONE_STRIDES),
                                     num_ratios=num_ratios)
    # Report the rounded values, which are what a user copies into the config.
    scales = [max(1, int(round(s))) for s in scales]
    ratios = [round(float(r), 2) for r in ratios]

    def fit(s, r):
        iou = np.concatenate([best_anchor_iou(b, shape, s, r, config.BACKBONE_STRIDES,
                                              config.RPN_ANCHOR_STRIDE)
                              for shape, b in groups.items()])
        return {"mean_iou": float(iou.mean()), "recall_0.7": float(np.mean(iou >= 0.7))}

    h = boxes[:, 2] - boxes[:, 0]
    w = boxes[:, 3] - boxes[:, 1]
    ok = (h > 0) & (w > 0)
    size, aspect = np.sqrt(h[ok] * w[ok]), w[ok] / h[ok]
    return {
        "scales": scales, "ratios": ratios, "num_boxes": int(len(boxes)),
        "num_images": int(len(dataset.image_ids)),
        "shapes": sorted(groups),
        "sizes": [float(size.min()), float(np.median(size)), float(size.max())],
        "aspects": [float(aspect.min()), float(np.median(aspect)), float(aspect.max())],
        "suggested": fit(scales, ratios),
        "default": fit(list(config.RPN_ANCHOR_SCALES), list(config.RPN_ANCHOR_RATIOS)),
        "default_scales": [float(s) for s in config.RPN_ANCHOR_SCALES],
        "default_ratios": [float(r) for r in config.RPN_ANCHOR_RATIOS],
    }


def format_anchor_report(fit, config, where, assumed):
    """The text ``mrcnn anchors`` prints for a `fit_anchors` result.

    ``where`` names the boxes measured (``DIR/train``), ``assumed`` where the configuration came
    from (``the run ...`` or ``preset 'standard' (default)``)."""
    shapes = ", ".join(f"{h}x{w}" for h, w in fit["shapes"])
    s, a = fit["sizes"], fit["aspects"]
    sug, dft = fit["suggested"], fit["default"]
    return "\n".join([
        f"Image size assumed: {shapes} network input (IMAGE_RESIZE_MODE "
        f"{config.IMAGE_RESIZE_MODE!r}, IMAGE_MIN_DIM {config.IMAGE_MIN_DIM}, IMAGE_MAX_DIM "
        f"{config.IMAGE_MAX_DIM}), from {assumed}; --preset / --image-size / --weights / --logs "
        f"change it",
        f"{fit['num_boxes']} boxes in {fit['num_images']} images of {where}, measured in that "
        f"input",
        f"  size sqrt(h*w): min {s[0]:.0f}, median {s[1]:.0f}, max {s[2]:.0f} px; "
        f"aspect w/h: min {a[0]:.2f}, median {a[1]:.2f}, max {a[2]:.2f}",
        "Suggested (k-means in log space):",
        f"  RPN_ANCHOR_SCALES = ({', '.join(str(v) for v in fit['scales'])})",
        f"  RPN_ANCHOR_RATIOS = [{', '.join(f'{v:g}' for v in fit['ratios'])}]",
        f"Mean best IoU of a box with an anchor: suggested {sug['mean_iou']:.3f}, current "
        f"{dft['mean_iou']:.3f} (RPN_ANCHOR_SCALES {tuple(fit['default_scales'])}, "
        f"RPN_ANCHOR_RATIOS {fit['default_ratios']})",
        f"Boxes with an anchor at IoU >= 0.7 (an RPN positive): suggested "
        f"{100 * sug['recall_0.7']:.0f}%, current {100 * dft['recall_0.7']:.0f}%",
        f"Use them with: --anchor-scales {','.join(str(v) for v in fit['scales'])} "
        f"--anchor-ratios {','.join(f'{v:g}' for v in fit['ratios'])}",
    ])
