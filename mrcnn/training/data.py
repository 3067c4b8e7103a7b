"""The training input pipeline: one image's ground truth, and batches for ``keras.Model.fit``.

``load_image_gt`` molds one data set image and its masks; ``MaskRCNNSequence`` (a Keras
``PyDataset``) assembles batches in worker threads. Boxes are pixel ``(y1, x1, y2, x2)`` in the
molded image.
"""

import logging

import keras
import numpy as np

from mrcnn.anchors import compute_backbone_shapes, generate_pyramid_anchors
from mrcnn.image import minimize_mask, mold_image, resize_image, resize_mask
from mrcnn.meta import compose_image_meta
from mrcnn.ops.boxes_np import extract_bboxes
from mrcnn.training.rpn_targets import build_rpn_targets

logger = logging.getLogger("mrcnn")

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


def load_image_gt(dataset, config, image_id, augmentation=None, use_mini_mask=None):
    """Load and mold one image with its ground truth.

    Returns image [H, W, 3] uint8 (molded size, not mean-subtracted), image_meta [META] float32,
    class_ids [G] int32, bbox [G, 4] int32 pixels, mask [H, W, G] bool (or
    [mini_h, mini_w, G] with mini masks). Instances that vanish after resizing or augmentation
    are dropped.
    """
    use_mini_mask = config.USE_MINI_MASK if use_mini_mask is None else use_mini_mask
    image = dataset.load_image(image_id)
    mask, class_ids = dataset.load_mask(image_id)
    original_shape = image.shape
    image, window, scale, padding, crop = resize_image(
        image, min_dim=config.IMAGE_MIN_DIM, min_scale=config.IMAGE_MIN_SCALE,
        max_dim=config.IMAGE_MAX_DIM, mode=config.IMAGE_RESIZE_MODE)
    mask = resize_mask(mask, scale, padding, crop)
    if augmentation is not None:
        image, mask = _augment(augmentation, image, mask)
    keep = mask.sum(axis=(0, 1)) > 0
    mask = mask[:, :, keep]
    class_ids = np.asarray(class_ids, np.int32)[keep]
    bbox = extract_bboxes(mask)
    active_class_ids = np.zeros([config.NUM_CLASSES], dtype=np.int32)
    source = dataset.image_info[image_id]["source"]
    active_class_ids[dataset.source_class_ids[source]] = 1
    if use_mini_mask:
        mask = minimize_mask(bbox, mask, config.MINI_MASK_SHAPE)
    meta = compose_image_meta(image_id, original_shape, image.shape, window, scale,
                              active_class_ids)
    return image, meta, class_ids, bbox, mask


def _describe_image(dataset, image_id):
    """``id N`` plus the image's reference (file path, URL...) when the data set has one."""
    text = "id %s" % (image_id,)
    try:
        ref = dataset.image_reference(image_id) or dataset.image_info[image_id].get("path")
    except Exception:  # noqa: BLE001 - the description must never hide the original error
        ref = None
    return "%s (%s)" % (text, ref) if ref else text


def _with_context(err, message):
    """An exception of ``err``'s type carrying ``message``; for types whose constructor needs
    more than a message (UnicodeDecodeError, json.JSONDecodeError...), the nearest of OSError /
    ValueError, so ``except`` clauses written for the original still catch it."""
    for cls in (type(err), OSError if isinstance(err, OSError) else ValueError):
        try:
            return cls(message)
        except Exception:  # noqa: BLE001 - constructor signature differs; try the next
            continue
    return RuntimeError(message)


def generate_random_rois(image_shape, count, gt_boxes, rng):
    """ROIs for USE_RPN_ROIS = False: 90% around the ground-truth boxes, the rest anywhere.

    Returns [count, 4] int32 pixel boxes with nonzero area.
    """
    h, w = image_shape[:2]
    rois = []
    if len(gt_boxes):
        per_box = int(0.9 * count / len(gt_boxes))
        for y1, x1, y2, x2 in gt_boxes:
            bh, bw = max(y2 - y1, 1), max(x2 - x1, 1)
            ys = rng.integers(max(y1 - bh, 0), min(y2 + bh, h), size=(per_box, 2))
            xs = rng.integers(max(x1 - bw, 0), min(x2 + bw, w), size=(per_box, 2))
            rois.append(_sorted_boxes(ys, xs))
    n = count - sum(len(r) for r in rois)
    while n > 0:
        ys = rng.integers(0, h, size=(n, 2))
        xs = rng.integers(0, w, size=(n, 2))
        boxes = _sorted_boxes(ys, xs)
        rois.append(boxes)
        n -= len(boxes)
    return np.concatenate(rois)[:count].astype(np.int32)


def _sorted_boxes(ys, xs):
    ys = np.sort(ys, axis=1)
    xs = np.sort(xs, axis=1)
    ok = (ys[:, 1] > ys[:, 0]) & (xs[:, 1] > xs[:, 0])
    return np.stack([ys[ok, 0], xs[ok, 0], ys[ok, 1], xs[ok, 1]], axis=1)


class MaskRCNNSequence(keras.utils.PyDataset):
    """Batches of training inputs for ``MaskRCNNTrainer``.

    Each item is a dict keyed by the training model's input names: input_image [B, H, W, 3]
    float32 (mean-subtracted), input_image_meta [B, META] float32, input_rpn_match [B, A, 1]
    int32, input_rpn_bbox [B, RPN_TRAIN_ANCHORS_PER_IMAGE, 4] float32, input_gt_class_ids
    [B, MAX_GT] int32, input_gt_boxes [B, MAX_GT, 4] float32 pixels, input_gt_masks
    [B, h, w, MAX_GT] uint8 in {0, 1} (h, w: MINI_MASK_SHAPE or IMAGE_SHAPE), and with
    USE_RPN_ROIS False input_roi [B, POST_NMS_ROIS_TRAINING, 4] float32 pixels.
    Images without instances are skipped (as Matterport does).

    The masks travel as uint8 in {0, 1}; the model reads them as booleans.
    ``name`` ("training", "validation") only labels error messages.

    Batch ``idx`` is a pure function of (seed, idx), so worker threads need no shared state and
    every pass over the data uses a new shuffle. The first pass is ``first_pass`` (train() gives
    the epoch it resumes from, so a resumed run with the same seed goes on to new passes instead
    of repeating the first ones).
    """

    def __init__(self, dataset, config, shuffle=True, augmentation=None,
                 no_augmentation_sources=None, steps=None, seed=None, workers=1, name=None,
                 first_pass=0, **kwargs):
        super().__init__(workers=workers, use_multiprocessing=False, **kwargs)
        self.label = ("%s data set" % name) if name else "data set"
        if len(dataset.image_ids) == 0:
            raise ValueError("The %s (%s) has no images: did you add images and call "
                             "prepare()?" % (self.label, type(dataset).__name__))
        self.dataset = dataset
        self.config = config
        self.shuffle = shuffle
        self.augmentation = augmentation
        self.no_augmentation_sources = set(no_augmentation_sources or ())
        self.batch_size = config.BATCH_SIZE
        self.steps = steps or int(np.ceil(len(dataset.image_ids) / self.batch_size))
        self.seed = np.random.SeedSequence().entropy % (2 ** 32) if seed is None else seed
        self.first_pass = int(first_pass)
        self.epoch = self.first_pass
        self._passes = self.first_pass
        shapes = compute_backbone_shapes(config, config.IMAGE_SHAPE)
        self.anchors = generate_pyramid_anchors(config.RPN_ANCHOR_SCALES,
                                                config.RPN_ANCHOR_RATIOS, shapes,
                                                config.BACKBONE_STRIDES,
                                                config.RPN_ANCHOR_STRIDE)

    def __len__(self):
        return self.steps

    def on_epoch_begin(self):
        # The n-th pass over the data (from 0) reads epoch n's batches, continuing through the
        # shuffled order. Counted here: Keras also calls on_epoch_end once before the first pass.
        self.epoch = self._passes
        self._passes += 1

    def on_epoch_end(self):
        pass

    def _image_at(self, position):
        ids = self.dataset.image_ids
        n = len(ids)
        if not self.shuffle:
            return ids[position % n]
        order = np.random.default_rng([self.seed, position // n]).permutation(n)
        return ids[order[position % n]]

    def load_one(self, image_id, rng):
        """Inputs of one image as a dict of arrays, or None when it has no instances."""
        config = self.config
        source = self.dataset.image_info[image_id]["source"]
        augmentation = (None if source in self.no_augmentation_sources else self.augmentation)
        try:
            image, meta, class_ids, boxes, masks = load_image_gt(
                self.dataset, config, image_id, augmentation=augmentation)
        except (OSError, ValueError) as err:
            raise _with_context(err, "Failed to load image %s of the %s (%s): %s" % (
                _describe_image(self.dataset, image_id), self.label, type(self.dataset).__name__,
                err)) from err
        if not np.any(class_ids > 0):
            return None
        rpn_match, rpn_bbox = build_rpn_targets(self.anchors, class_ids, boxes,
                                                config.RPN_TRAIN_ANCHORS_PER_IMAGE,
                                                config.RPN_BBOX_STD_DEV, rng=rng)
        if len(boxes) > config.MAX_GT_INSTANCES:
            keep = rng.choice(len(boxes), config.MAX_GT_INSTANCES, replace=False)
            class_ids, boxes, masks = class_ids[keep], boxes[keep], masks[:, :, keep]
        g = config.MAX_GT_INSTANCES
        item = {
            "input_image": mold_image(image.astype(np.float32), config),
            "input_image_meta": meta.astype(np.float32),
            "input_rpn_match": rpn_match[:, None],
            "input_rpn_bbox": rpn_bbox,
            "input_gt_class_ids": np.zeros([g], np.int32),
            "input_gt_boxes": np.zeros([g, 4], np.float32),
            "input_gt_masks": np.zeros(masks.shape[:2] + (g,), np.uint8),
        }
        k = len(class_ids)
        item["input_gt_class_ids"][:k] = class_ids
        item["input_gt_boxes"][:k] = boxes
        item["input_gt_masks"][:, :, :k] = masks
        if not config.USE_RPN_ROIS:
            item["input_roi"] = generate_random_rois(
                image.shape, config.POST_NMS_ROIS_TRAINING, boxes, rng).astype(np.float32)
        return item

    def __getitem__(self, idx):
        return self.batch_at(self.epoch, idx)

    def batch_at(self, epoch, idx):
        """Batch ``idx`` of pass ``epoch`` (from 0) over the data, whatever ``self.epoch`` is."""
        step = epoch * self.steps + idx
        n = len(self.dataset.image_ids)
        items = []
        position = step * self.batch_size
        tried = 0
        while len(items) < self.batch_size:
            if tried > n + self.batch_size and not items:
                raise ValueError("No image of the %s (%s) has instances to train on"
                                 % (self.label, type(self.dataset).__name__))
            # One generator per image position, not per batch: an image's sampled anchors do
            # not depend on the batch it falls in, so workers that split a batch between them
            # train on exactly what one process would.
            rng = np.random.default_rng([self.seed, 1 << 20, position])
            item = self.load_one(self._image_at(position), rng)
            position += 1
            tried += 1
            if item is not None:
                items.append(item)
        return {k: np.stack([it[k] for it in items]) for k in items[0]}
