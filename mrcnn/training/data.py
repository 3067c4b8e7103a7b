"""The training input pipeline's batches for ``keras.Model.fit``.

``MaskRCNNSequence`` (a Keras ``PyDataset``) assembles batches: each image's costly, cacheable
part comes from `mrcnn.training.samples` (run in worker processes or threads,
`mrcnn.training.input_workers`, and kept across epochs, `mrcnn.training.sample_cache`), its random
part (anchor sampling, the ``MAX_GT_INSTANCES`` cut, random ROIs) is drawn here. Boxes are pixel
``(y1, x1, y2, x2)`` in the molded image.
"""

import hashlib
import logging
import threading

import keras
import numpy as np

from mrcnn.anchors import compute_backbone_shapes, generate_pyramid_anchors
from mrcnn.image import mold_image
from mrcnn.training.input_workers import InputWorkers, resolve_mode
from mrcnn.training.rpn_targets import AnchorIndex, sample_rpn_targets
from mrcnn.training.sample_cache import cache_for
from mrcnn.training.samples import SamplePreparer, load_image_gt

__all__ = ["MaskRCNNSequence", "load_image_gt", "generate_random_rois"]

logger = logging.getLogger("mrcnn")


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

    Where the work goes: an image's costly part (decode, ``load_mask``, resizing, instance
    crops, anchor labels; `SamplePreparer`) runs in ``workers`` worker processes or threads
    (``config.INPUT_WORKERS``), and what does not change between epochs is kept in memory within
    ``config.TRAIN_CACHE_MB`` (`mrcnn.training.sample_cache`); the random part (anchor sampling,
    the ``MAX_GT_INSTANCES`` cut, random ROIs) is drawn each time from a generator seeded by
    (seed, image position), so it is the same whichever worker prepares the image. Augmentation
    draws from the augmenter's own generators (reseeded in each worker process), as
    Matterport's does. Call `close` to stop worker processes (train() does).
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
        self.preparer = SamplePreparer(dataset, config, augmentation,
                                       self.no_augmentation_sources, AnchorIndex(self.anchors))
        self.cache = None
        if config.TRAIN_CACHE_MB > 0 and config.IMAGE_RESIZE_MODE != "crop":
            self.cache = cache_for(dataset, _preparation_key(config, self.anchors),
                                   int(config.TRAIN_CACHE_MB * 2 ** 20))
        mode = resolve_mode(config.INPUT_WORKERS)
        self.processes = None
        if mode != "threads" and workers and workers >= 1:
            self.processes = InputWorkers(self.preparer, workers, mode, label=self.label,
                                          objects={"data set": dataset, "config": config,
                                                   "augmentation": augmentation})
        self._local = threading.local()

    def __len__(self):
        return self.steps

    def on_epoch_begin(self):
        # The n-th pass over the data (from 0) reads epoch n's batches, continuing through the
        # shuffled order. Counted here: Keras also calls on_epoch_end once before the first pass.
        self.epoch = self._passes
        self._passes += 1

    def on_epoch_end(self):
        pass

    def close(self):
        """Stop the worker processes, if any, for good: later batches are made in the calling
        thread (so a batch still in the making when training stops starts no new process)."""
        if self.processes is not None:
            self.processes.close()

    def _image_at(self, position):
        ids = self.dataset.image_ids
        n = len(ids)
        if not self.shuffle:
            return ids[position % n]
        order = np.random.default_rng([self.seed, position // n]).permutation(n)
        return ids[order[position % n]]

    # ------------------------------------------------------------------ one image
    def _start(self, image_id):
        """The sample of ``image_id``: a finished one (cache hit, or prepared in this thread) or
        a future of a worker process's answer."""
        augments = self.preparer.augments(image_id)
        key = cached = None
        if self.cache is not None:
            key = (int(image_id), "prepared" if augments else "sample",
                   id(self.dataset.image_info[image_id]))
            cached = self.cache.get(key)
        if cached is not None and not augments:
            return ("done", cached)
        if self._use_processes():
            return ("future", key, self.processes.submit(image_id, cached))
        kept, sample = self.preparer(image_id, cached)
        self._keep(key, kept)
        return ("done", sample)

    def _use_processes(self):
        return self.processes is not None and not self.processes.closed

    def _keep(self, key, kept):
        if key is not None and kept is not None:
            self.cache.put(key, kept)

    def _finish_sample(self, handle):
        if handle[0] == "done":
            return handle[1]
        _, key, future = handle
        kept, sample = self.processes.result(future)
        self._keep(key, kept)
        return sample

    def sample(self, image_id):
        """The costly, cacheable part of ``image_id``'s inputs (see `SamplePreparer`), from a
        worker started for this batch, the cache, or prepared now."""
        pending = getattr(self._local, "pending", None)
        if pending and pending.get(image_id):
            return self._finish_sample(pending[image_id].pop(0))
        return self._finish_sample(self._start(image_id))

    def load_one(self, image_id, rng):
        """Inputs of one image as a dict of arrays, or None when it has no instances."""
        config = self.config
        try:
            sample = self.sample(image_id)
        except (OSError, ValueError) as err:
            raise _with_context(err, "Failed to load image %s of the %s (%s): %s" % (
                _describe_image(self.dataset, image_id), self.label, type(self.dataset).__name__,
                err)) from err
        if sample.get("empty"):
            return None
        class_ids, boxes, masks = sample["class_ids"], sample["boxes"], sample["masks"]
        rpn_match, rpn_bbox = sample_rpn_targets(
            self.preparer.anchor_index.anchors, sample["rpn_match"],
            sample["rpn_boxes"], config.RPN_TRAIN_ANCHORS_PER_IMAGE, config.RPN_BBOX_STD_DEV,
            rng)
        if len(boxes) > config.MAX_GT_INSTANCES:
            keep = rng.choice(len(boxes), config.MAX_GT_INSTANCES, replace=False)
            class_ids, boxes, masks = class_ids[keep], boxes[keep], masks[:, :, keep]
        shape = tuple(int(v) for v in sample["shape"])
        y1, x1, y2, x2 = (int(v) for v in sample["pixel_window"])
        # Molded value by value, so the padding is the molded zero and only the window needs
        # the subtraction.
        image = np.empty(shape, np.float32)
        image[...] = mold_image(np.zeros((1, 1, shape[-1]), np.uint8), config)[0, 0]
        image[y1:y2, x1:x2] = mold_image(sample["pixels"], config)
        g = config.MAX_GT_INSTANCES
        item = {
            "input_image": image,
            "input_image_meta": np.array(sample["meta"], np.float32),
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
                shape, config.POST_NMS_ROIS_TRAINING, boxes, rng).astype(np.float32)
        return item

    # ------------------------------------------------------------------ batches
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
            # The images still missing are prepared together (in parallel with worker
            # processes), then assembled in position order: the batch is the one a sequential
            # loop would build.
            positions = range(position, position + self.batch_size - len(items))
            image_ids = [self._image_at(p) for p in positions]
            self._prefetch(image_ids)
            try:
                for p, image_id in zip(positions, image_ids):
                    # One generator per image position, not per batch: an image's sampled
                    # anchors do not depend on the batch it falls in, so workers that split a
                    # batch between them train on exactly what one process would.
                    rng = np.random.default_rng([self.seed, 1 << 20, p])
                    item = self.load_one(image_id, rng)
                    if item is not None:
                        items.append(item)
            finally:
                self._local.pending = None
            position += len(positions)
            tried += len(positions)
        return {k: np.stack([it[k] for it in items]) for k in items[0]}

    def _prefetch(self, image_ids):
        """With worker processes, start every image of ``image_ids`` at once (`sample` then
        picks the answers up)."""
        if not self._use_processes() or len(image_ids) < 2:
            self._local.pending = None
            return
        pending = {}
        for image_id in image_ids:
            pending.setdefault(image_id, []).append(self._start(image_id))
        self._local.pending = pending

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_local", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._local = threading.local()


def _preparation_key(config, anchors):
    """What a cached sample depends on besides the image: the resize, mask and class settings
    and the anchors (hashed)."""
    return (config.IMAGE_MIN_DIM, config.IMAGE_MAX_DIM, config.IMAGE_MIN_SCALE,
            config.IMAGE_RESIZE_MODE, bool(config.USE_MINI_MASK),
            tuple(int(v) for v in config.MINI_MASK_SHAPE), int(config.NUM_CLASSES),
            hashlib.sha1(np.ascontiguousarray(anchors).tobytes()).hexdigest())
