"""Evaluate a model over a data set: Matterport-style mask mAP and COCO AP (pycocotools).

Both evaluations run ``model.detect([image])`` on the *original* image from
``dataset.load_image`` and compare with ``dataset.load_mask`` in the same pixel coordinates, so
no resizing or padding enters the score. ``detect`` must return, per image, a dict with
``rois`` int [D, 4] pixel boxes ``(y1, x1, y2, x2)`` (one past the last pixel), ``class_ids``
int [D] (internal ids of the data set), ``scores`` float [D] and ``masks`` bool [H, W, D].

Crowd ground truth (negative class ids, Matterport's convention) is left out of the mAP of
:func:`evaluate_map` and passed to COCOeval as ``iscrowd=1`` regions (matches to them are
ignored) by :func:`evaluate_coco`.
"""

import contextlib
import copy
import io

import numpy as np

from mrcnn.metrics import compute_ap
from mrcnn.ops.boxes_np import extract_bboxes

__all__ = [
    "COCO_IOU_THRESHOLDS",
    "evaluate_map",
    "format_map_table",
    "to_coco_ground_truth",
    "detections_to_coco",
    "evaluate_coco",
]

#: IoU thresholds 0.50, 0.55, ..., 0.95 of the COCO metric.
COCO_IOU_THRESHOLDS = tuple(np.round(np.linspace(0.5, 0.95, 10), 2).tolist())


def _select_ids(dataset, image_ids, limit):
    ids = list(dataset.image_ids if image_ids is None else image_ids)
    if limit is not None:
        if int(limit) < 0:
            raise ValueError(f"limit must be >= 0 or None, got {limit}")
        ids = ids[: int(limit)]
    return [int(i) for i in ids]


def _progress(iterable, verbose, desc):
    if not verbose:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, unit="image")


def _thresholds(iou_thresholds):
    if isinstance(iou_thresholds, str):
        if iou_thresholds.lower() != "coco":
            raise ValueError(f"iou_thresholds must be 'coco' or a sequence of floats, "
                             f"got {iou_thresholds!r}")
        return COCO_IOU_THRESHOLDS
    # Rounded so that np.arange(0.5, 1.0, 0.05) gives readable keys (0.55, not 0.55000000001).
    values = tuple(round(float(t), 6)
                   for t in np.atleast_1d(np.asarray(iou_thresholds, np.float64)))
    if not values or any(not 0.0 < t <= 1.0 for t in values):
        raise ValueError(f"iou_thresholds must be in (0, 1], got {iou_thresholds!r}")
    return values


def _detect(model, image, image_id):
    results = model.detect([image], verbose=0) if _accepts_verbose(model) else \
        model.detect([image])
    if not isinstance(results, (list, tuple)) or len(results) != 1:
        raise ValueError(f"model.detect([image]) must return a list with one dict, got "
                         f"{type(results).__name__} (image {image_id})")
    r = results[0]
    missing = [k for k in ("rois", "class_ids", "scores", "masks") if k not in r]
    if missing:
        raise ValueError(f"model.detect result for image {image_id} lacks {missing}")
    rois = np.asarray(r["rois"]).reshape(-1, 4)
    class_ids = np.asarray(r["class_ids"]).reshape(-1).astype(np.int32)
    scores = np.asarray(r["scores"], np.float64).reshape(-1)
    masks = np.asarray(r["masks"])
    h, w = image.shape[:2]
    if masks.size == 0:
        masks = np.zeros((h, w, 0), dtype=bool)
    if masks.ndim != 3 or masks.shape[:2] != (h, w):
        raise ValueError(f"model.detect masks for image {image_id} have shape {masks.shape}, "
                         f"expected [{h}, {w}, D] (original image size)")
    if not len(rois) == len(class_ids) == len(scores) == masks.shape[-1]:
        raise ValueError(f"model.detect result for image {image_id}: rois {len(rois)}, "
                         f"class_ids {len(class_ids)}, scores {len(scores)} and masks "
                         f"{masks.shape[-1]} disagree in length")
    return {"rois": rois, "class_ids": class_ids, "scores": scores, "masks": masks.astype(bool)}


def _accepts_verbose(model):
    import inspect

    try:
        params = inspect.signature(model.detect).parameters
    except (TypeError, ValueError):
        return False
    return "verbose" in params or any(p.kind == p.VAR_KEYWORD for p in params.values())


def _ground_truth(dataset, image_id, image_shape=None):
    """``(masks bool [H, W, G], class_ids int32 [G])``; Matterport's empty ``[0, 0, 0]`` mask
    becomes ``[H, W, 0]``."""
    masks, class_ids = dataset.load_mask(image_id)
    masks = np.asarray(masks)
    class_ids = np.asarray(class_ids).reshape(-1).astype(np.int32)
    if masks.ndim != 3 or masks.shape[-1] != len(class_ids):
        raise ValueError(f"dataset.load_mask({image_id}) returned masks {masks.shape} and "
                         f"{len(class_ids)} class ids")
    if masks.shape[-1] == 0:
        if image_shape is None:
            info = dataset.image_info[image_id]
            if "height" in info and "width" in info:
                image_shape = (info["height"], info["width"])
            else:
                image_shape = dataset.load_image(image_id).shape
        masks = np.zeros((int(image_shape[0]), int(image_shape[1]), 0), dtype=bool)
    return masks.astype(bool), class_ids


def _reference(dataset, image_id):
    try:
        return dataset.image_reference(image_id)
    except Exception:  # a reference is cosmetic; never fail an evaluation on it
        return ""


def evaluate_map(model, dataset, image_ids=None, iou_thresholds=(0.5,), limit=None, verbose=1):
    """Matterport-style mean average precision over images (mask IoU, ``compute_ap``).

    For each image the AP is ``compute_ap`` averaged over ``iou_thresholds``; the mAP is the mean
    over images. An image whose ground truth has no (non-crowd) instance has no defined AP: its
    row says so and it is left out of the means. An image with ground truth but no prediction
    has AP 0.

    Args:
        model: object with ``detect(images) -> [dict]`` (see the module docstring).
        dataset: a prepared ``Dataset``.
        image_ids: internal image ids (default: all of ``dataset.image_ids``).
        iou_thresholds: sequence of mask-IoU thresholds, or ``"coco"`` for 0.50:0.05:0.95.
        limit: evaluate only the first ``limit`` ids.
        verbose: 0 silent; 1 progress bar and a summary line.

    Returns:
        dict with
          ``"mAP"``: mean over evaluated images of the per-image AP (mean over thresholds);
          ``"mAP@0.5"``: when 0.5 is among the thresholds;
          ``"mAP@0.5:0.95"``: when the thresholds are the COCO ones;
          ``"mAP_per_iou"``: {threshold: mAP};
          ``"iou_thresholds"``: the thresholds used;
          ``"rows"``: one dict per image: ``image_id``, ``reference``, ``num_gt``, ``num_pred``,
          ``AP`` (float or ``None``), ``AP_per_iou`` ({threshold: AP} or ``None``), ``note``;
          ``"num_images"``, ``"num_evaluated"``, ``"num_skipped"``.
        Means are ``nan`` when no image could be evaluated.
    """
    thresholds = _thresholds(iou_thresholds)
    ids = _select_ids(dataset, image_ids, limit)
    rows = []
    for image_id in _progress(ids, verbose, "mAP"):
        image = dataset.load_image(image_id)
        gt_masks, gt_class_ids = _ground_truth(dataset, image_id, image.shape)
        crowd = gt_class_ids < 0
        gt_masks, gt_class_ids = gt_masks[..., ~crowd], gt_class_ids[~crowd]
        r = _detect(model, image, image_id)
        row = {"image_id": image_id, "reference": _reference(dataset, image_id),
               "num_gt": int(len(gt_class_ids)), "num_pred": int(len(r["class_ids"])),
               "AP": None, "AP_per_iou": None, "note": ""}
        if len(gt_class_ids) == 0:
            row["note"] = "no ground-truth instances: AP undefined, not in the mean"
        elif len(r["class_ids"]) == 0:
            row["AP_per_iou"] = {t: 0.0 for t in thresholds}
            row["note"] = "no predictions"
        else:
            gt_boxes = extract_bboxes(gt_masks)
            row["AP_per_iou"] = {
                t: float(compute_ap(gt_boxes, gt_class_ids, gt_masks, r["rois"], r["class_ids"],
                                    r["scores"], r["masks"], iou_threshold=t)[0])
                for t in thresholds}
        if row["AP_per_iou"] is not None:
            row["AP"] = float(np.mean(list(row["AP_per_iou"].values())))
        rows.append(row)

    evaluated = [row for row in rows if row["AP"] is not None]
    per_iou = {t: (float(np.mean([row["AP_per_iou"][t] for row in evaluated]))
                   if evaluated else float("nan")) for t in thresholds}
    result = {
        "mAP": float(np.mean([row["AP"] for row in evaluated])) if evaluated else float("nan"),
        "mAP_per_iou": per_iou,
        "iou_thresholds": list(thresholds),
        "rows": rows,
        "num_images": len(rows),
        "num_evaluated": len(evaluated),
        "num_skipped": len(rows) - len(evaluated),
    }
    for t in thresholds:
        if abs(t - 0.5) < 1e-9:
            result["mAP@0.5"] = per_iou[t]
    if len(thresholds) == 10 and np.allclose(sorted(thresholds), COCO_IOU_THRESHOLDS):
        result["mAP@0.5:0.95"] = result["mAP"]
    if verbose:
        names = ", ".join(f"{k}={result[k]:.4f}" for k in ("mAP@0.5", "mAP@0.5:0.95")
                          if k in result)
        print(f"mAP over {len(evaluated)} of {len(rows)} images: "
              f"{names or 'mAP=' + format(result['mAP'], '.4f')}"
              + (f" ({result['num_skipped']} without ground truth skipped)"
                 if result["num_skipped"] else ""))
    return result


def format_map_table(result, max_rows=None):
    """Plain-text table of the per-image rows of :func:`evaluate_map` (one line per image)."""
    rows = result["rows"] if max_rows is None else result["rows"][:max_rows]
    lines = [f"{'image_id':>8}  {'gt':>4}  {'pred':>4}  {'AP':>6}  reference"]
    for row in rows:
        ap = "   n/a" if row["AP"] is None else f"{row['AP']:6.3f}"
        note = f"  ({row['note']})" if row["note"] else ""
        lines.append(f"{row['image_id']:>8}  {row['num_gt']:>4}  {row['num_pred']:>4}  {ap}  "
                     f"{row['reference']}{note}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# COCO


def _encode(mask):
    """RLE of a bool [H, W] mask with ``counts`` as str (JSON-ready)."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def _xywh(box):
    """Pixel ``(y1, x1, y2, x2)`` (one past the last pixel) -> COCO ``[x, y, w, h]``."""
    y1, x1, y2, x2 = (float(v) for v in box)
    return [x1, y1, x2 - x1, y2 - y1]


def _categories(dataset):
    return [{"id": int(i), "name": str(dataset.class_names[i])}
            for i in range(1, dataset.num_classes)]


def _gt_annotations(masks, class_ids, image_id, first_id):
    anns = []
    boxes = extract_bboxes(masks) if masks.shape[-1] else np.zeros((0, 4), np.int32)
    for k in range(masks.shape[-1]):
        area = int(masks[..., k].sum())
        if area == 0:
            continue
        anns.append({"id": first_id + len(anns), "image_id": int(image_id),
                     "category_id": int(abs(class_ids[k])), "segmentation": _encode(masks[..., k]),
                     "area": area, "bbox": _xywh(boxes[k]), "iscrowd": int(class_ids[k] < 0)})
    return anns


def _coco_from_dict(data):
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def to_coco_ground_truth(dataset, image_ids=None):
    """In-memory ``pycocotools.coco.COCO`` of a data set's ground truth.

    Image ids are the data set's internal ids, category ids its internal class ids (1..C-1).
    Segmentations are RLE of the masks from ``load_mask``, ``bbox`` is ``[x, y, w, h]`` of the
    tight mask box, ``area`` the pixel count; negative class ids become ``iscrowd=1``. Annotation
    ids start at 1 (COCOeval treats id 0 as "unmatched").
    """
    ids = _select_ids(dataset, image_ids, None)
    images, annotations = [], []
    for image_id in ids:
        masks, class_ids = _ground_truth(dataset, image_id)
        images.append({"id": image_id, "height": int(masks.shape[0]),
                       "width": int(masks.shape[1]),
                       "file_name": str(_reference(dataset, image_id))})
        annotations += _gt_annotations(masks, class_ids, image_id, len(annotations) + 1)
    return _coco_from_dict({"images": images, "annotations": annotations,
                            "categories": _categories(dataset)})


def detections_to_coco(results, image_ids, dataset=None):
    """COCO results list from ``detect`` outputs.

    Args:
        results: list of ``detect`` dicts, ``results[k]`` for ``image_ids[k]``.
        image_ids: internal image ids (used as COCO image ids, as in
            :func:`to_coco_ground_truth`).
        dataset: optional; when given, class ids outside ``1..num_classes-1`` raise.

    Returns:
        list of ``{"image_id", "category_id", "bbox": [x, y, w, h], "score",
        "segmentation": RLE with str counts}`` (JSON-serialisable). Empty masks are skipped.
    """
    if len(results) != len(image_ids):
        raise ValueError(f"detections_to_coco: {len(results)} results for "
                         f"{len(image_ids)} image ids")
    out = []
    for image_id, r in zip(image_ids, results):
        rois = np.asarray(r["rois"]).reshape(-1, 4)
        class_ids = np.asarray(r["class_ids"]).reshape(-1)
        scores = np.asarray(r["scores"]).reshape(-1)
        masks = np.asarray(r["masks"])
        for k in range(len(class_ids)):
            class_id = int(class_ids[k])
            if dataset is not None and not 0 < class_id < dataset.num_classes:
                raise ValueError(f"detections_to_coco: image {image_id} has class id "
                                 f"{class_id}, outside 1..{dataset.num_classes - 1}")
            mask = masks[..., k].astype(bool)
            if not mask.any():
                continue
            out.append({"image_id": int(image_id), "category_id": class_id,
                        "bbox": _xywh(rois[k]), "score": float(scores[k]),
                        "segmentation": _encode(mask)})
    return out


def _run_cocoeval(coco_gt, detections, iou_type, verbose):
    from pycocotools.cocoeval import COCOeval

    anns = copy.deepcopy(detections)  # loadRes adds keys to the dicts it is given
    if iou_type == "segm":
        # Without "bbox", loadRes derives area and box from the mask itself.
        for ann in anns:
            ann.pop("bbox", None)
    else:
        for ann in anns:
            ann.pop("segmentation", None)
    # pycocotools prints progress chatter; only its summary table is worth showing.
    with contextlib.redirect_stdout(io.StringIO()):
        if anns:
            coco_dt = coco_gt.loadRes(anns)
        else:
            # loadRes cannot take an empty list; an empty result set scores 0.
            coco_dt = _coco_from_dict({"images": list(coco_gt.dataset["images"]),
                                       "annotations": [],
                                       "categories": list(coco_gt.dataset["categories"])})
        evaluator = COCOeval(coco_gt, coco_dt, iou_type)
        evaluator.params.imgIds = sorted(coco_gt.getImgIds())
        evaluator.evaluate()
        evaluator.accumulate()
    if verbose:
        print(f"COCO {iou_type}:")
        evaluator.summarize()
    else:
        with contextlib.redirect_stdout(io.StringIO()):
            evaluator.summarize()
    return [float(v) for v in evaluator.stats]


def evaluate_coco(model, dataset, image_ids=None, iou_type=("bbox", "segm"), limit=None,
                  verbose=1):
    """COCO AP with pycocotools' COCOeval on original image coordinates.

    Args:
        model: object with ``detect(images) -> [dict]`` (see the module docstring).
        dataset: a prepared ``Dataset``.
        image_ids: internal ids (default all), ``limit``: only the first ``limit`` of them.
        iou_type: ``"bbox"``, ``"segm"`` or a sequence of them.
        verbose: 0 silent; 1 progress bar and COCOeval's summary.

    Returns:
        dict with, per iou type ``t``: ``t``: AP@[.5:.95] (``stats[0]``), ``f"{t}_AP50"``,
        ``f"{t}_AP75"``, ``f"{t}_stats"``: the 12 COCOeval stats (-1 where undefined); plus
        ``"num_images"`` and ``"num_detections"``, and ``"detections"``: the COCO results list.
    """
    types = (iou_type,) if isinstance(iou_type, str) else tuple(iou_type)
    for t in types:
        if t not in ("bbox", "segm"):
            raise ValueError(f"evaluate_coco: iou_type must be 'bbox' or 'segm', got {t!r}")
    if not types:
        raise ValueError("evaluate_coco: iou_type is empty")
    ids = _select_ids(dataset, image_ids, limit)
    images, annotations, detections = [], [], []
    for image_id in _progress(ids, verbose, "COCO"):
        image = dataset.load_image(image_id)
        masks, class_ids = _ground_truth(dataset, image_id, image.shape)
        images.append({"id": image_id, "height": int(image.shape[0]),
                       "width": int(image.shape[1]),
                       "file_name": str(_reference(dataset, image_id))})
        annotations += _gt_annotations(masks, class_ids, image_id, len(annotations) + 1)
        r = _detect(model, image, image_id)
        detections += detections_to_coco([r], [image_id], dataset)
    coco_gt = _coco_from_dict({"images": images, "annotations": annotations,
                               "categories": _categories(dataset)})
    result = {"num_images": len(ids), "num_detections": len(detections),
              "detections": detections}
    for t in types:
        stats = _run_cocoeval(coco_gt, detections, t, verbose)
        result[t] = stats[0]
        result[f"{t}_AP50"] = stats[1]
        result[f"{t}_AP75"] = stats[2]
        result[f"{t}_stats"] = stats
    return result
