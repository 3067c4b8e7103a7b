"""One image's training sample: Matterport's ``load_image_gt`` and the anchor labels, without
TensorFlow or Keras (this module runs in input worker processes).

`load_image_gt` molds one data set image and its masks, as Matterport's does; `SamplePreparer`
adds the anchor labels and returns what can be kept across epochs. Boxes are pixel
``(y1, x1, y2, x2)`` in the molded image.
"""

import numpy as np

from mrcnn.image import minimize_mask
from mrcnn.meta import compose_image_meta
from mrcnn.ops.boxes_np import extract_bboxes
from mrcnn.training.prepared import masks_for_training, prepare_image
from mrcnn.training.rpn_targets import match_anchors

__all__ = ["load_image_gt", "ground_truth", "SamplePreparer"]

# imgaug augmenters that move pixels; only these are applied to masks (the others change colours).
_IMGAUG_MASK_AUGMENTERS = ("Sequential", "SomeOf", "OneOf", "Sometimes", "Fliplr", "Flipud",
                           "CropAndPad", "Affine", "PiecewiseAffine")


def _augment(augmentation, image, mask):
    """Apply an albumentations transform (or any callable with its interface) or an imgaug
    augmenter. Geometric transforms move the masks with the image; pixel transforms touch only
    the image. Returns (image, mask) with the original shapes and dtypes."""
    image_shape, mask_shape = image.shape, mask.shape
    if hasattr(augmentation, "to_deterministic"):
        import imgaug  # only reached with an imgaug augmenter, so imgaug imports

        def hook(images, augmenter, parents, default):
            return augmenter.__class__.__name__ in _IMGAUG_MASK_AUGMENTERS

        det = augmentation.to_deterministic()
        image = det.augment_image(image)
        mask = det.augment_image(mask.astype(np.uint8),
                                 hooks=imgaug.HooksImages(activator=hook)).astype(bool)
    elif callable(augmentation):
        out = augmentation(image=image, masks=[mask[..., i].astype(np.uint8)
                                               for i in range(mask.shape[-1])])
        image = out["image"]
        masks = out["masks"]
        mask = (np.stack([np.asarray(m) for m in masks], axis=-1).astype(bool) if len(masks)
                else np.zeros(image.shape[:2] + (0,), bool))
    else:
        raise TypeError("augmentation must be an albumentations transform (callable with "
                        "image= and masks=) or an imgaug augmenter, got %r" % (augmentation,))
    if image.shape != image_shape or mask.shape[:2] != mask_shape[:2]:
        raise ValueError("augmentation changed the image shape from %s to %s; use transforms "
                         "that keep the size (or resize after)" % (image_shape, image.shape))
    return image, mask


def _active_class_ids(dataset, config, image_id):
    active = np.zeros([config.NUM_CLASSES], dtype=np.int32)
    source = dataset.image_info[image_id]["source"]
    active[dataset.source_class_ids[source]] = 1
    return active


def ground_truth(prepared, dataset, config, image_id, augmentation=None, use_mini_mask=None):
    """``load_image_gt``'s arrays from a `PreparedImage` (see `load_image_gt`)."""
    use_mini_mask = config.USE_MINI_MASK if use_mini_mask is None else use_mini_mask
    meta = compose_image_meta(image_id, prepared.original_shape, prepared.shape,
                              prepared.window, prepared.scale,
                              _active_class_ids(dataset, config, image_id))
    if augmentation is None:
        boxes, masks = masks_for_training(prepared, use_mini_mask, config.MINI_MASK_SHAPE)
        return prepared.image(), meta, prepared.class_ids, boxes, masks
    image = prepared.image()
    image, mask = _augment(augmentation, image.copy() if image is prepared.pixels else image,
                           prepared.dense_masks())
    keep = mask.any(axis=(0, 1))
    mask = mask[:, :, keep]
    class_ids = prepared.class_ids[keep]
    bbox = extract_bboxes(mask)
    if use_mini_mask:
        mask = minimize_mask(bbox, mask, config.MINI_MASK_SHAPE)
    return image, meta, class_ids, bbox, mask


def load_image_gt(dataset, config, image_id, augmentation=None, use_mini_mask=None):
    """Load and mold one image with its ground truth.

    Returns image [H, W, 3] uint8 (molded size, not mean-subtracted), image_meta [META] float32,
    class_ids [G] int32, bbox [G, 4] int32 pixels, mask [H, W, G] bool (or
    [mini_h, mini_w, G] with mini masks). Instances that vanish after resizing or augmentation
    are dropped. Equal to Matterport's ``load_image_gt`` (the masks are bool whatever dtype
    ``load_mask`` returns).
    """
    return ground_truth(prepare_image(dataset, config, image_id), dataset, config, image_id,
                        augmentation, use_mini_mask)


class SamplePreparer:
    """The costly part of one image's training inputs, run in a worker (thread or process).

    Called as ``preparer(image_id, prepared=None)``; returns ``(keep, sample)``:

    - an image that is not augmented: ``sample`` is a dict of what does not change between
      epochs (``pixels`` [h, w, 3] uint8 inside ``pixel_window`` of an image of ``shape``,
      ``meta``, ``class_ids`` [G], ``boxes`` [G, 4], ``masks``, ``rpn_match`` [A] int8: the
      anchor labels before sampling, ``rpn_boxes`` [G', 4]: the non-crowd boxes), and ``keep``
      is that same dict, for the cache;
    - an augmented image: ``sample`` is the same dict for this augmentation, and ``keep`` the
      `PreparedImage` it started from (None when it was given as ``prepared``).

    A sample of an image without instances is ``{"empty": True}``. Picklable, for worker
    processes started by spawn.
    """

    def __init__(self, dataset, config, augmentation, no_augmentation_sources, anchor_index):
        self.dataset = dataset
        self.config = config
        self.augmentation = augmentation
        self.no_augmentation_sources = set(no_augmentation_sources or ())
        self.anchor_index = anchor_index

    def reseed(self, seed):
        """Give the augmentation new random generators (each worker process its own):
        albumentations' ``set_random_seed``, imgaug's ``seed_``."""
        for method in ("set_random_seed", "seed_"):
            if callable(getattr(self.augmentation, method, None)):
                getattr(self.augmentation, method)(int(seed))
                return

    def augments(self, image_id):
        source = self.dataset.image_info[image_id]["source"]
        return (self.augmentation is not None
                and source not in self.no_augmentation_sources)

    def __call__(self, image_id, prepared=None):
        augmentation = self.augmentation if self.augments(image_id) else None
        fresh = prepared is None
        if fresh:
            prepared = prepare_image(self.dataset, self.config, image_id)
        image, meta, class_ids, boxes, masks = ground_truth(
            prepared, self.dataset, self.config, image_id, augmentation)
        if not np.any(class_ids > 0):
            sample = {"empty": True}
        else:
            rpn_match, rpn_boxes = match_anchors(self.anchor_index, class_ids, boxes)
            if augmentation is None:
                pixels, window = prepared.pixels, prepared.window
            else:
                pixels, window = image, (0, 0) + tuple(image.shape[:2])
            sample = {"pixels": pixels, "pixel_window": np.asarray(window, np.int64),
                      "shape": np.asarray(image.shape, np.int64), "meta": meta,
                      "class_ids": class_ids, "boxes": boxes, "masks": masks,
                      "rpn_match": rpn_match.astype(np.int8), "rpn_boxes": rpn_boxes}
        if augmentation is None:
            return sample, sample
        return (prepared if fresh else None), sample
