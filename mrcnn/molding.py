"""``detect()``'s pre- and post-processing, apart from the network: Matterport's molding of a
list of images and unmolding of one image's detections.

``MaskRCNN.detect`` and the TFLite runner (`mrcnn.export.tflite`) share them, so a converted
model gets exactly the molded input and the unmolded output of ``detect()``.
"""

import numpy as np

from mrcnn.image import mold_image, paste_masks, resize_image, to_rgb_uint8
from mrcnn.meta import compose_image_meta
from mrcnn.ops.boxes_np import denorm_boxes, norm_boxes

__all__ = ["mold_inputs", "unmold_detections"]


def mold_inputs(images, config):
    """Resize and normalize a list of images as the network expects them.

    images: list of [H, W, C] arrays (grayscale, RGBA and 16-bit are converted to RGB uint8).
    config: reads IMAGE_CHANNEL_COUNT, IMAGE_MIN_DIM, IMAGE_MIN_SCALE, IMAGE_MAX_DIM,
    IMAGE_RESIZE_MODE, MEAN_PIXEL and NUM_CLASSES.
    Returns molded_images [N, h, w, 3] float32, image_metas [N, META] float32,
    windows [N, 4] int32 (y1, x1, y2, x2) of the image inside the padding, in molded pixels.
    """
    molded, metas, windows = [], [], []
    c = config
    for image in images:
        image = to_rgb_uint8(image) if c.IMAGE_CHANNEL_COUNT == 3 else image
        m, window, scale, _, _ = resize_image(image, min_dim=c.IMAGE_MIN_DIM,
                                              min_scale=c.IMAGE_MIN_SCALE,
                                              max_dim=c.IMAGE_MAX_DIM,
                                              mode=c.IMAGE_RESIZE_MODE)
        molded.append(mold_image(m, c))
        metas.append(compose_image_meta(0, image.shape, m.shape, window, scale,
                                        np.zeros([c.NUM_CLASSES], dtype=np.int32)))
        windows.append(window)
    return np.stack(molded), np.stack(metas), np.array(windows, dtype=np.int32)


def unmold_detections(detections, mrcnn_mask, original_image_shape, image_shape, window):
    """Detections of one image in original-image pixels.

    detections: [D, 6] (y1, x1, y2, x2 normalized to the molded image, class_id, score);
    mrcnn_mask: [D, mh, mw, C] float (Matterport's layout), or [D, mh, mw] already holding
    each detection's own class; window: (y1, x1, y2, x2) molded pixels.
    Returns boxes [n, 4] int32, class_ids [n] int32, scores [n] float32,
    masks [H, W, n] bool at the original size.
    """
    # The first zero class id ends the list (the detection layer pads with zeros), as in
    # Matterport.
    zero = np.flatnonzero(detections[:, 4] == 0)
    n = int(zero[0]) if len(zero) else len(detections)
    boxes = detections[:n, :4]
    class_ids = detections[:n, 4].astype(np.int32)
    scores = detections[:n, 5].astype(np.float32)
    masks = (mrcnn_mask[:n] if mrcnn_mask.ndim == 3
             else mrcnn_mask[np.arange(n), :, :, class_ids])
    # Boxes are normalized to the padded image: re-express them relative to the window.
    wy1, wx1, wy2, wx2 = norm_boxes(np.asarray(window, np.float32)[None], image_shape[:2])[0]
    shift = np.array([wy1, wx1, wy1, wx1], np.float32)
    scale = np.array([wy2 - wy1, wx2 - wx1, wy2 - wy1, wx2 - wx1], np.float32)
    boxes = denorm_boxes((boxes - shift) / scale, original_image_shape[:2])
    keep = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) > 0
    boxes, class_ids, scores, masks = boxes[keep], class_ids[keep], scores[keep], masks[keep]
    full = paste_masks(masks, boxes, original_image_shape)
    return boxes.astype(np.int32), class_ids, scores, full
