"""Detection to files: per image an annotated ``NAME.png`` and ``NAME.json`` holding each
detection's class, score, box and mask (COCO RLE)."""

import json
import os
import sys

import numpy as np

from mrcnn.workflow.errors import WorkflowError

#: Extensions read from a directory (case-insensitive).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def detection_record(r, class_names, image_shape):
    """JSON-ready detections of one image.

    Args:
        r: a ``detect`` result: rois int [D, (y1, x1, y2, x2)] pixels (y2, x2 one past the last
            pixel), class_ids int [D], scores float [D], masks bool [H, W, D].
        class_names: names indexed by class id (``"BG"`` first).
        image_shape: (H, W, ...) of the image.

    Returns:
        list of dicts ``{"class_id", "class_name", "score", "box": [y1, x1, y2, x2],
        "bbox": [x, y, width, height] (COCO), "area": mask pixels, "segmentation": COCO RLE
        {"size": [H, W], "counts": str}}``; decode a mask with
        ``pycocotools.mask.decode(segmentation)`` (uint8 [H, W]).
    """
    from pycocotools import mask as mask_utils

    out = []
    for k in range(len(r["class_ids"])):
        y1, x1, y2, x2 = (int(v) for v in r["rois"][k])
        mask = np.asarray(r["masks"][..., k], bool)
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        class_id = int(r["class_ids"][k])
        out.append({"class_id": class_id,
                    "class_name": class_names[class_id] if class_id < len(class_names) else "?",
                    "score": round(float(r["scores"][k]), 5),
                    "box": [y1, x1, y2, x2], "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": int(mask.sum()),
                    "segmentation": {"size": [int(image_shape[0]), int(image_shape[1])],
                                     "counts": rle["counts"].decode("ascii")}})
    return out


def new_figure(nrows=1, ncols=1, size=6.0, aspect=1.0):
    """A matplotlib Figure outside pyplot: rendered with Agg whatever the session's backend, and
    never shown or kept alive by pyplot. Returns ``(figure, axes [nrows, ncols])``."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(size * ncols, size * nrows * aspect))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def save_detection_picture(image, r, class_names, path, title=""):
    """``visualize.display_instances`` of a ``detect`` result, saved as PNG at ``path``."""
    from mrcnn import visualize

    h, w = image.shape[:2]
    fig, axes = new_figure(size=8.0, aspect=h / max(w, 1))
    visualize.display_instances(image, r["rois"], r["masks"], r["class_ids"], class_names,
                                r["scores"], title=title, ax=axes[0, 0])
    visualize.save_figure(fig, path, dpi=100, bbox_inches="tight")


def list_images(target):
    """``(paths, is_directory)`` for ``--image`` (a file or a folder of images)."""
    target = os.fspath(target)
    if os.path.isdir(target):
        paths = sorted(os.path.join(target, f) for f in os.listdir(target)
                       if f.lower().endswith(IMAGE_EXTENSIONS)
                       and os.path.isfile(os.path.join(target, f)))
        if not paths:
            raise WorkflowError(f"--image {target}: no image ({', '.join(IMAGE_EXTENSIONS)}) "
                                f"in that folder")
        return paths, True
    if not os.path.exists(target):
        raise WorkflowError(f"--image {target}: image not found")
    return [target], False


def detect_images(model, class_names, target, output_dir, weights=None, verbose=1):
    """Detect on a file or every image of a folder; write ``<name>.png`` (annotated) and
    ``<name>.json`` per image into ``output_dir``.

    ``<name>.json`` is ``{image, height, width, weights, class_names, min_confidence,
    detections: [...]}`` with the detections of `detection_record`. A missing or unreadable
    single file raises WorkflowError naming it; in a folder such files are skipped with a
    warning naming them. Returns ``[(image path, png, json)]``.
    """
    from mrcnn.dataset import ImageLoadError, read_image

    paths, is_dir = list_images(target)
    output_dir = os.fspath(output_dir)
    os.makedirs(output_dir, exist_ok=True)
    stems = [os.path.splitext(os.path.basename(p))[0] for p in paths]
    written = []
    for path, stem in zip(paths, stems):
        if stems.count(stem) > 1:  # a.jpg and a.png in one folder: keep both outputs
            stem = os.path.basename(path).replace(".", "_")
        try:
            image = read_image(path)
        except (OSError, ImageLoadError) as e:
            if not is_dir:
                raise WorkflowError(f"--image {path}: cannot read the image ({e})") from e
            print(f"WARNING: skipping {path}: cannot read it ({e})", file=sys.stderr)
            continue
        r = model.detect([image])[0]
        png = os.path.join(output_dir, stem + ".png")
        js = os.path.join(output_dir, stem + ".json")
        save_detection_picture(image, r, class_names, png, title=os.path.basename(path))
        record = {"image": os.path.abspath(path), "height": int(image.shape[0]),
                  "width": int(image.shape[1]),
                  "weights": os.path.abspath(weights) if weights else None,
                  "class_names": list(class_names),
                  "min_confidence": float(model.config.DETECTION_MIN_CONFIDENCE),
                  "detections": detection_record(r, class_names, image.shape)}
        with open(js, "w") as f:
            json.dump(record, f, indent=1)
        written.append((path, png, js))
        if verbose:
            found = ", ".join(f"{d['class_name']} {d['score']:.2f}" for d in record["detections"])
            print(f"{path}: {len(record['detections'])} detection(s){': ' + found if found else ''}"
                  f" -> {png}, {js}")
    if not written:
        raise WorkflowError(f"--image {target}: none of its images could be read")
    return written
