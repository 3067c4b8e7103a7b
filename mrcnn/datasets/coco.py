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
import math
import os
import warnings

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from mrcnn.dataset import Dataset

logger = logging.getLogger(__name__)

__all__ = ["COCODataset", "COCOFormatError", "COCOWarning", "annotation_to_rle",
           "annotation_to_mask"]


class COCOFormatError(ValueError):
    """A COCO JSON file is malformed. The message names the file (where known) and the image,
    annotation or category entry."""


class COCOWarning(UserWarning):
    """An annotation was skipped (a polygon with fewer than 3 points, or no pixel inside the
    image)."""


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _finite_number(value):
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _rle_string_counts(counts, where):
    """Run lengths of a compressed COCO RLE string (pycocotools' rleFrString, in Python), so
    that a damaged string is rejected before pycocotools' C decoder writes past its mask."""
    if isinstance(counts, bytes):
        try:
            counts = counts.decode("ascii")
        except UnicodeDecodeError as e:
            raise COCOFormatError(f"{where}: RLE counts are not ASCII") from e
    out = []
    p, n = 0, len(counts)
    while p < n:
        x = k = 0
        more = True
        while more:
            if p >= n:
                raise COCOFormatError(f"{where}: RLE counts string is truncated")
            c = ord(counts[p]) - 48
            if not 0 <= c < 64:
                raise COCOFormatError(f"{where}: RLE counts string has an invalid character "
                                      f"{counts[p]!r}")
            x |= (c & 0x1f) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(out) > 2:
            x += out[-2]
        out.append(x)
    return out


def _checked_rle(segm, height, width, where):
    """A validated RLE dict: positive ``size``, non-negative counts covering exactly
    ``size[0] * size[1]`` pixels."""
    size = segm.get("size")
    if (not isinstance(size, (list, tuple)) or len(size) != 2
            or not all(_is_int(v) and v > 0 for v in size)):
        raise COCOFormatError(f"{where}: RLE size must be [height, width] of positive integers, "
                              f"got {size!r:.80}")
    counts = segm["counts"]
    if isinstance(counts, list):
        if not all(_is_int(v) and v >= 0 for v in counts):
            raise COCOFormatError(f"{where}: uncompressed RLE counts must be non-negative "
                                  "integers")
        lengths = counts
    elif isinstance(counts, (str, bytes)):
        lengths = _rle_string_counts(counts, where)
        if any(v < 0 for v in lengths):
            raise COCOFormatError(f"{where}: RLE counts string decodes to a negative run")
    else:
        raise COCOFormatError(f"{where}: RLE counts must be a list or a string, got "
                              f"{type(counts).__name__}")
    if sum(lengths) != size[0] * size[1]:
        raise COCOFormatError(f"{where}: RLE counts cover {sum(lengths)} pixels, but its size "
                              f"{size[0]}x{size[1]} has {size[0] * size[1]}")
    if isinstance(counts, list):
        return mask_utils.frPyObjects({"size": list(size), "counts": list(counts)},
                                      size[0], size[1])
    return {"size": list(size), "counts": counts}


def annotation_to_rle(annotation, height, width, where=None):
    """Compressed RLE of a COCO annotation's ``segmentation``.

    Polygons with fewer than 3 points are dropped (pycocotools would read a 2-point polygon as a
    box) with a COCOWarning; an annotation left with no polygon returns ``None``. Polygons are
    clipped to the image (plus a pixel), so points far outside it cost nothing.

    Raises:
        COCOFormatError (a ValueError): the segmentation is neither polygons nor a valid RLE,
        or holds non-finite numbers.
    """
    segm = annotation.get("segmentation")
    where = where or f"annotation {annotation.get('id')!r}"
    if isinstance(segm, list):
        polygons = []
        for i, poly in enumerate(segm):
            if not isinstance(poly, list) or not all(_finite_number(v) for v in poly):
                raise COCOFormatError(f"{where}: polygon {i} must be a list of finite numbers, "
                                      f"got {poly!r:.80}")
            if len(poly) < 6 or len(poly) % 2:
                warnings.warn(f"{where}: polygon {i} has {len(poly)} coordinates (at least 3 "
                              "x, y points are needed); skipped", COCOWarning, stacklevel=2)
                continue
            from mrcnn.datasets.via import clip_polygon
            xs, ys = clip_polygon([float(v) for v in poly[0::2]], [float(v) for v in poly[1::2]],
                                  -1.0, -1.0, width + 1.0, height + 1.0)
            if len(xs) >= 3:
                polygons.append([float(v) for xy in zip(xs, ys) for v in xy])
        if not polygons:
            return None
        return mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
    if isinstance(segm, dict) and "counts" in segm and "size" in segm:
        return _checked_rle(segm, height, width, where)
    raise COCOFormatError(f"{where}: unsupported segmentation {segm!r:.80}")


def annotation_to_mask(annotation, height, width, where=None):
    """Binary mask (uint8 ``[h, w]``, 0/1) of a COCO annotation; all zeros when it has no polygon.

    The mask takes the RLE's own size, which may differ from ``(height, width)`` for RLE input.
    """
    rle = annotation_to_rle(annotation, height, width, where)
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
        raise COCOFormatError(f"{annotation_file}: invalid JSON ({e})") from e
    except UnicodeDecodeError as e:
        raise COCOFormatError(f"{annotation_file}: not UTF-8 text ({e})") from e
    if not isinstance(data, dict):
        raise COCOFormatError(f"{annotation_file}: top level must be an object, "
                         f"got {type(data).__name__}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise COCOFormatError(f"{annotation_file}: {key!r} must be a list")
    images = {}
    for i, img in enumerate(data["images"]):
        where = f"{annotation_file}: images[{i}]"
        if not isinstance(img, dict) or "id" not in img or "file_name" not in img:
            raise COCOFormatError(f"{where} lacks 'id' or 'file_name'")
        if not _is_int(img["id"]):
            raise COCOFormatError(f"{where}: id must be an integer, got {img['id']!r:.40}")
        name = img["file_name"]
        if not isinstance(name, str) or not name or "\x00" in name:
            raise COCOFormatError(f"{where} (id {img['id']}): file_name must be a non-empty "
                                  f"string, got {name!r:.80}")
        for key in ("height", "width"):
            if img.get(key) is not None and not (_is_int(img[key]) and img[key] > 0):
                raise COCOFormatError(f"{where} ({name!r}): {key} must be a positive integer, "
                                      f"got {img[key]!r:.40}")
        if img["id"] in images:
            raise COCOFormatError(f"{where} ({name!r}): id {img['id']} is used twice")
        images[img["id"]] = img
    categories = set()
    for i, cat in enumerate(data["categories"]):
        where = f"{annotation_file}: categories[{i}]"
        if not isinstance(cat, dict) or not _is_int(cat.get("id")):
            raise COCOFormatError(f"{where} lacks an integer 'id'")
        if not isinstance(cat.get("name"), str):
            raise COCOFormatError(f"{where} (id {cat['id']}) lacks a 'name' string")
        if cat["id"] in categories:
            raise COCOFormatError(f"{where}: category id {cat['id']} is used twice")
        categories.add(cat["id"])
    annotation_ids = set()
    for i, ann in enumerate(data["annotations"]):
        for key in ("id", "image_id", "category_id", "segmentation"):
            if not isinstance(ann, dict) or key not in ann:
                raise COCOFormatError(f"{annotation_file}: annotations[{i}] lacks {key!r}")
        where = f"{annotation_file}: annotations[{i}] (id {ann['id']!r:.40})"
        if not _is_int(ann["id"]):
            raise COCOFormatError(f"{where}: id must be an integer")
        if ann["id"] in annotation_ids:
            raise COCOFormatError(f"{where}: annotation id {ann['id']} is used twice")
        annotation_ids.add(ann["id"])
        if not _is_int(ann["image_id"]) or ann["image_id"] not in images:
            raise COCOFormatError(f"{where}: image_id {ann['image_id']!r:.40} is not the id of "
                                  "an image in 'images'")
        if not _is_int(ann["category_id"]) or ann["category_id"] not in categories:
            raise COCOFormatError(f"{where}: category_id {ann['category_id']!r:.40} is not the "
                                  "id of a category in 'categories'")
        if ann.get("iscrowd", 0) not in (0, 1, True, False):
            raise COCOFormatError(f"{where}: iscrowd must be 0 or 1, got {ann['iscrowd']!r:.40}")
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
                if not (height > 0 and width > 0):
                    raise COCOFormatError(f"{annotation_file}: image {path} is empty "
                                          f"({width}x{height})")
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
            where = (f"{info.get('annotation_file')}: annotation {ann.get('id')!r} of image "
                     f"{info['id']!r}")
            m = annotation_to_mask(ann, height, width, where)
            if m.max() < 1:
                what = ("covers no pixel of the %dx%d image" % (width, height)
                        if ann.get("segmentation") else "has an empty segmentation")
                warnings.warn(f"{where} {what}; skipped", COCOWarning, stacklevel=2)
                continue
            if ann.get("iscrowd"):
                class_id *= -1
                if m.shape != (height, width):
                    # Matterport's rule: a crowd RLE of the wrong size masks the whole image.
                    m = np.ones((height, width), dtype=np.uint8)
            elif m.shape != (height, width):
                raise COCOFormatError(f"{where} has size {m.shape} but the image is "
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
    except Exception as e:  # PIL raises several types for unreadable files
        raise COCOFormatError(f"{annotation_file}: cannot read the size of image {path} "
                              f"({e})") from e
    return height, width
