"""Data sets in COCO JSON format, read with pycocotools.

Segmentations may be polygons (lists of ``[x1, y1, x2, y2, ...]``), compressed RLE
(``{"size": [h, w], "counts": str}``) or uncompressed RLE (``{"size": [h, w], "counts": [ints]}``),
the latter usually for crowd regions (``"iscrowd": 1``). COCO coordinates are continuous with pixel
``(row, col)`` covering ``[col, col + 1) x [row, row + 1)``.

Class ids follow Matterport's ``CocoDataset``: every COCO category is added as
``add_class(source, category_id, name)``, so after ``prepare()`` the internal id of a category is
``dataset.map_source_class_id(f"{source}.{category_id}")``. Crowd instances come back from
``load_mask`` with the *negated* internal class id.
"""

import contextlib
import io
import json
import logging
import os
import warnings

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from mrcnn.dataset import Dataset

logger = logging.getLogger(__name__)

__all__ = ["COCODataset", "annotation_to_rle", "annotation_to_mask"]


def annotation_to_rle(annotation, height, width):
    """Compressed RLE of a COCO annotation's ``segmentation``.

    Polygons with fewer than 3 points are dropped (pycocotools would read a 2-point polygon as a
    box); an annotation left with no polygon returns ``None``.

    Raises:
        ValueError: the segmentation is neither polygons nor RLE, or holds non-numbers.
    """
    segm = annotation.get("segmentation")
    ann_id = annotation.get("id")
    if isinstance(segm, list):
        polygons = []
        for poly in segm:
            if not isinstance(poly, list) or not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) for v in poly):
                raise ValueError(f"annotation {ann_id}: polygon must be a list of numbers, "
                                 f"got {poly!r:.80}")
            if len(poly) >= 6 and len(poly) % 2 == 0:
                polygons.append([float(v) for v in poly])
        if not polygons:
            return None
        return mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
    if isinstance(segm, dict) and "counts" in segm and "size" in segm:
        if isinstance(segm["counts"], list):
            return mask_utils.frPyObjects(segm, height, width)
        return segm
    raise ValueError(f"annotation {ann_id}: unsupported segmentation {segm!r:.80}")


def annotation_to_mask(annotation, height, width):
    """Binary mask (uint8 ``[h, w]``, 0/1) of a COCO annotation; all zeros when it has no polygon.

    The mask takes the RLE's own size, which may differ from ``(height, width)`` for RLE input.
    """
    rle = annotation_to_rle(annotation, height, width)
    if rle is None:
        return np.zeros((height, width), dtype=np.uint8)
    with warnings.catch_warnings():
        # pycocotools' Cython decoder trips NumPy 2's __array__(copy=...) deprecation.
        warnings.simplefilter("ignore", DeprecationWarning)
        return mask_utils.decode(rle)


def _read_coco(annotation_file):
    annotation_file = str(annotation_file)
    if not os.path.isfile(annotation_file):
        raise FileNotFoundError(f"COCO annotation file not found: {annotation_file}")
    try:
        with open(annotation_file, "r", encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{annotation_file}: invalid JSON ({e})") from e
    if not isinstance(data, dict):
        raise ValueError(f"{annotation_file}: top level must be an object, "
                         f"got {type(data).__name__}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise ValueError(f"{annotation_file}: {key!r} must be a list")
    for i, ann in enumerate(data["annotations"]):
        for key in ("id", "image_id", "category_id", "segmentation"):
            if not isinstance(ann, dict) or key not in ann:
                raise ValueError(f"{annotation_file}: annotations[{i}] lacks {key!r}")
    for i, img in enumerate(data["images"]):
        if not isinstance(img, dict) or "id" not in img or "file_name" not in img:
            raise ValueError(f"{annotation_file}: images[{i}] lacks 'id' or 'file_name'")
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # createIndex prints progress
        coco.createIndex()
    return coco


class COCODataset(Dataset):
    """COCO-format instance segmentation data set (Matterport ``CocoDataset`` behaviour)."""

    def load_coco_json(self, annotation_file, image_dir, class_ids=None, source="coco",
                       return_coco=False, keep_negatives=False):
        """Add the images and annotations of a COCO JSON file.

        Args:
            annotation_file: path of the COCO JSON.
            image_dir: folder holding the images named by ``images[*].file_name``.
            class_ids: COCO category ids to load (default: all). Only images with an annotation
                of these categories are added, as Matterport does, unless ``keep_negatives``.
            source: source name for ``add_class``/``add_image``.
            return_coco: also return the ``pycocotools.coco.COCO`` object.
            keep_negatives: also add images without annotations of ``class_ids``.

        Returns:
            the ``COCO`` object when ``return_coco``.

        Raises:
            FileNotFoundError: the JSON is missing. ValueError: malformed JSON or an unknown
            category id in ``class_ids``.
        """
        coco = _read_coco(annotation_file)
        known = set(coco.getCatIds())
        if not class_ids:
            class_ids = sorted(known)
        else:
            class_ids = [int(c) for c in class_ids]
            unknown = sorted(set(class_ids) - known)
            if unknown:
                raise ValueError(f"{annotation_file}: class_ids {unknown} are not categories of "
                                 f"this file (known: {sorted(known)})")
        if keep_negatives:
            image_ids = sorted(coco.imgs)
        else:
            image_ids = sorted({i for c in class_ids for i in coco.getImgIds(catIds=[c])})
        for c in class_ids:
            self.add_class(source, c, coco.loadCats(c)[0]["name"])
        for i in image_ids:
            img = coco.imgs[i]
            path = os.path.join(str(image_dir), img["file_name"])
            height, width = img.get("height"), img.get("width")
            if height is None or width is None:
                height, width = _image_size(path, annotation_file)
            annotations = coco.loadAnns(coco.getAnnIds(imgIds=[i], catIds=class_ids, iscrowd=None))
            self.add_image(source, image_id=i, path=path, width=int(width), height=int(height),
                           annotations=annotations, annotation_file=str(annotation_file))
        if return_coco:
            return coco
        return None

    def load_coco(self, dataset_dir, subset, year="2014", class_ids=None, class_map=None,
                  return_coco=False, auto_download=False):
        """Load a subset of MS COCO from the standard layout (Matterport signature).

        Reads ``dataset_dir/annotations/instances_{subset}{year}.json`` and the images in
        ``dataset_dir/{subset}{year}/`` (``minival`` and ``valminusminival`` use ``val{year}``).
        Nothing is downloaded: ``auto_download=True`` raises; fetch the files yourself.
        ``class_map`` is accepted for compatibility and ignored (as in Matterport).
        """
        if auto_download:
            raise ValueError("load_coco: auto_download is not supported; download COCO "
                             f"{subset}{year} into {dataset_dir} yourself")
        annotation_file = os.path.join(str(dataset_dir), "annotations",
                                       f"instances_{subset}{year}.json")
        image_subset = "val" if subset in ("minival", "valminusminival") else subset
        image_dir = os.path.join(str(dataset_dir), f"{image_subset}{year}")
        return self.load_coco_json(annotation_file, image_dir, class_ids=class_ids, source="coco",
                                   return_coco=return_coco)

    def load_mask(self, image_id):
        """Instance masks of an image.

        Returns:
            masks: bool ``[H, W, N]``.
            class_ids: int32 ``[N]``, internal class ids; crowd instances are negative.
            Annotations covering no pixel are left out; an image without instances gives
            ``[H, W, 0]`` and ``[0]``.
        """
        info = self.image_info[image_id]
        if "annotations" not in info:
            return super().load_mask(image_id)
        height, width = info["height"], info["width"]
        masks, class_ids = [], []
        for ann in info["annotations"]:
            class_id = self.map_source_class_id(f"{info['source']}.{ann['category_id']}")
            if not class_id:
                continue
            m = annotation_to_mask(ann, height, width)
            if m.max() < 1:
                continue
            if ann.get("iscrowd"):
                class_id *= -1
                if m.shape != (height, width):
                    # Matterport's rule: a crowd RLE of the wrong size masks the whole image.
                    m = np.ones((height, width), dtype=np.uint8)
            elif m.shape != (height, width):
                raise ValueError(f"{info.get('annotation_file')}: annotation {ann.get('id')} "
                                 f"has size {m.shape} but image {info['id']} is "
                                 f"{(height, width)}")
            masks.append(m.astype(bool))
            class_ids.append(class_id)
        if not masks:
            return np.zeros((height, width, 0), dtype=bool), np.zeros(0, dtype=np.int32)
        return np.stack(masks, axis=2), np.asarray(class_ids, dtype=np.int32)

    def image_reference(self, image_id):
        """Path of the image file."""
        info = self.image_info[image_id]
        if "annotations" in info:
            return info["path"]
        return super().image_reference(image_id)


def _image_size(path, annotation_file):
    from PIL import Image

    try:
        with Image.open(path) as im:
            width, height = im.size
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{annotation_file}: image {path} has no height/width in the "
                                "JSON and the file is missing") from e
    return height, width
