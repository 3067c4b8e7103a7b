"""Evaluation of a trained model on a data set: a per-image table, Matterport-style mask
mAP@0.5 and mAP@0.5:0.95, COCO AP (bbox and segm, pycocotools), and ``metrics.json``."""

import math
import os
import warnings

from mrcnn.workflow.data import check_classes, load_subset
from mrcnn.workflow.errors import WorkflowError
from mrcnn.workflow.inference import CachedDetector, inference_model
from mrcnn.workflow.runs import jsonable, write_json


def evaluate_model(model, dataset, limit=None):
    """Evaluate a model (anything with ``detect`` and ``config``) on a prepared data set.

    Detection runs once per image, on the original image.

    Returns:
        dict: ``class_names``, ``num_images``, ``num_evaluated``, ``mAP@0.5``,
        ``mAP@0.5:0.95``, ``coco`` (``bbox``, ``bbox_AP50``, ``bbox_AP75``, ``bbox_stats``,
        ``segm``, ... as `mrcnn.evaluation.evaluate_coco`), ``min_confidence``, ``rows`` (per
        image: ``image_id``, ``reference``, ``num_gt``, ``num_pred``, ``AP@0.5``,
        ``AP@0.5:0.95``, ``note``); and, for callers in Python, ``_dataset`` and ``_detector``
        (a `CachedDetector` holding every image's detections). NaN means undefined.
    """
    from mrcnn.evaluation import evaluate_coco, evaluate_map

    detector = model if isinstance(model, CachedDetector) else CachedDetector(model)
    with warnings.catch_warnings():
        # pycocotools trips NumPy 2's __array__(copy=...) deprecation; not ours to fix.
        warnings.filterwarnings("ignore", message="__array__ implementation",
                                category=DeprecationWarning)
        mean_ap = evaluate_map(detector, dataset, iou_thresholds="coco", limit=limit, verbose=0)
        coco = evaluate_coco(detector, dataset, limit=limit, verbose=0)
    rows = []
    for row in mean_ap["rows"]:
        per_iou = row["AP_per_iou"]
        rows.append({"image_id": row["image_id"], "reference": row["reference"],
                     "num_gt": row["num_gt"], "num_pred": row["num_pred"],
                     "AP@0.5": None if per_iou is None else per_iou[0.5],
                     "AP@0.5:0.95": row["AP"], "note": row["note"]})
    return {
        "class_names": list(dataset.class_names[1:]),
        "num_images": mean_ap["num_images"], "num_evaluated": mean_ap["num_evaluated"],
        "mAP@0.5": mean_ap["mAP@0.5"], "mAP@0.5:0.95": mean_ap["mAP@0.5:0.95"],
        "coco": {k: v for k, v in coco.items() if k != "detections"},
        "min_confidence": float(detector.config.DETECTION_MIN_CONFIDENCE),
        "rows": rows, "_detector": detector, "_dataset": dataset,
    }


def evaluate(weights="best", logs="logs", data_dir=None, subset="val", limit=None, preset=None,
             overrides=None, min_confidence=None, data=None):
    """Evaluate trained weights on a subset of their data set (or another one).

    The data set (folder, format, annotation file, classes), the configuration and the class
    names come from the weights' run (``settings.json``) unless given.

    Args:
        weights: ``best``, ``last`` (latest run in ``logs``), a run directory or a .h5 path.
        data_dir: the data set root (default: the run's).
        data: ``{"format", "annotation_file", "class_attribute", "year"}`` overriding the run's.

    Returns:
        the dict of `evaluate_model` plus ``weights``, ``dataset`` and ``subset``.
    """
    model, names, path, saved = inference_model(weights, logs, preset, overrides,
                                                min_confidence=min_confidence)
    spec = {k: saved.get(k) for k in ("format", "annotation_file", "class_attribute", "year")}
    spec.update({k: v for k, v in (data or {}).items() if v is not None})
    data_dir = data_dir or saved.get("dataset")
    if not data_dir:
        raise WorkflowError(f"the weights {path} have no settings.json naming their data set: "
                            f"pass --data DIR")
    dataset, _ = load_subset(data_dir, subset, spec.get("format") or "via",
                             spec.get("annotation_file"), spec.get("class_attribute"),
                             names[1:],
                             spec.get("year") or "")
    check_classes(dataset, names[1:], path, subset)
    result = evaluate_model(model, dataset, limit=limit)
    result.update({"weights": os.path.abspath(path), "dataset": os.path.abspath(str(data_dir)),
                   "subset": subset})
    return result


def format_results(result):
    """The per-image table and the summary figures of `evaluate` as text."""
    def fmt(v):
        return "   n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:6.3f}"

    lines = [f"{'image_id':>8}  {'gt':>3}  {'pred':>4}  {'AP@.5':>6}  {'AP@.5:.95':>9}  image"]
    for row in result["rows"]:
        note = f"  ({row['note']})" if row["note"] else ""
        lines.append(f"{row['image_id']:>8}  {row['num_gt']:>3}  {row['num_pred']:>4}  "
                     f"{fmt(row['AP@0.5'])}  {fmt(row['AP@0.5:0.95']):>9}  "
                     f"{os.path.basename(str(row['reference']))}{note}")
    coco = result["coco"]
    lines += [
        "",
        f"Images evaluated: {result['num_evaluated']} of {result['num_images']}"
        f"{' (' + result['subset'] + ')' if result.get('subset') else ''}, detections with "
        f"confidence >= {result['min_confidence']:g}",
        f"mAP@0.5        {fmt(result['mAP@0.5'])}   (Matterport compute_ap, mask IoU)",
        f"mAP@0.5:0.95   {fmt(result['mAP@0.5:0.95'])}",
        f"COCO AP bbox   {fmt(coco['bbox'])}   (AP50 {fmt(coco['bbox_AP50']).strip()}, "
        f"AP75 {fmt(coco['bbox_AP75']).strip()})",
        f"COCO AP segm   {fmt(coco['segm'])}   (AP50 {fmt(coco['segm_AP50']).strip()}, "
        f"AP75 {fmt(coco['segm_AP75']).strip()})",
    ]
    return "\n".join(lines)


def public(result):
    """The JSON-ready part of an evaluation result (no ``_dataset`` / ``_detector``)."""
    return jsonable({k: v for k, v in result.items() if not k.startswith("_")})


def write_metrics(result, path):
    """Write `public` (result) as JSON to ``path`` (``metrics.json``); returns ``path``."""
    write_json(path, public(result))
    return path
