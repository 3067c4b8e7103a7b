"""`Dataset`: the base class of data sets (Matterport API).

Subclass it, register classes with `Dataset.add_class` and images with `Dataset.add_image`, override
`Dataset.load_mask` (and `Dataset.load_image` if images are not files), then call
`Dataset.prepare` before use::

    class BalloonDataset(Dataset):
        def load_balloon(self, dataset_dir, subset):
            self.add_class("balloon", 1, "balloon")
            for ...:
                self.add_image("balloon", image_id=filename, path=path, polygons=polygons,
                               width=width, height=height)

        def load_mask(self, image_id):
            ...
            return mask, class_ids  # bool [H, W, N], int32 [N]

    dataset = BalloonDataset()
    dataset.load_balloon(root, "train")
    dataset.prepare()

Classes are identified internally by consecutive ids (0 = background "BG"); each also keeps its
data-set ``source`` and the id it has there.
"""

import logging
import os
import warnings

import numpy as np

from mrcnn.image import to_rgb_uint8

__all__ = ["Dataset", "ImageLoadError", "read_image"]

logger = logging.getLogger(__name__)

# Attributes that exist only after prepare().
_PREPARED_ATTRS = ("num_classes", "class_ids", "class_names", "num_images",
                   "class_from_source_map", "image_from_source_map", "sources")


class ImageLoadError(ValueError, IOError):
    """An image file exists but cannot be decoded. The message names the file."""


def read_image(path, image_id=None):
    """Read an image file as RGB ``uint8`` ``[H, W, 3]`` (see `mrcnn.image.to_rgb_uint8`).

    Grayscale, RGBA, palette, CMYK, 16-bit and float images are converted. Raises
    FileNotFoundError if ``path`` does not exist and `ImageLoadError` if it cannot be decoded;
    both name the path (and ``image_id`` when given).
    """
    what = f"{path!r}" + (f" (image id {image_id})" if image_id is not None else "")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Image file not found: {what}")
    try:
        array = _read_with_pillow(path)
    except Exception as pil_error:  # noqa: BLE001 - any decoder failure; fall back to skimage
        try:
            import skimage.io
            with warnings.catch_warnings():  # imageio's plugin probing warns about plugins
                warnings.simplefilter("ignore")
                array = skimage.io.imread(path)
        except Exception:  # noqa: BLE001
            raise ImageLoadError(f"Cannot read image {what}: {pil_error}") from pil_error
    if array.ndim == 4:  # multi-frame file read by skimage: take the first frame
        array = array[0]
    try:
        return to_rgb_uint8(array)
    except ValueError as error:
        raise ImageLoadError(f"Cannot use image {what}: {error}") from error


def _read_with_pillow(path):
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        if im.mode in ("P", "PA"):
            im = im.convert("RGBA")
        elif im.mode not in ("1", "L", "LA", "RGB", "RGBA", "I", "I;16", "I;16B", "I;16L", "F"):
            im = im.convert("RGB")  # CMYK, YCbCr, LAB, HSV, RGBX, ...
        return np.asarray(im)


class Dataset:
    """Base class of data sets.

    Attributes:
        image_info: list of dicts, one per image, with at least ``id`` (the id in its source),
            ``source`` and ``path``, plus the keyword arguments given to `add_image`.
        class_info: list of dicts ``{"source", "id", "name"}``; entry 0 is the background
            ``{"source": "", "id": 0, "name": "BG"}``.
        source_class_ids: ``{source: [internal class ids usable with that source]}`` (after
            `prepare`; background included in each).

    After `prepare`: ``num_classes``, ``class_ids`` (int array), ``class_names``,
    ``num_images``, ``image_ids`` (int array), ``sources``, ``class_from_source_map``
    (``"source.id" -> class id``) and ``image_from_source_map`` (``"source.id" -> image id``).
    """

    def __init__(self, class_map=None):
        self._image_ids = []
        self.image_info = []
        self.class_info = [{"source": "", "id": 0, "name": "BG"}]
        self.source_class_ids = {}

    def __getattr__(self, name):
        # Only reached when normal lookup fails: explain the missing prepare() call.
        if name in _PREPARED_ATTRS:
            raise AttributeError(f"{type(self).__name__}.{name} is not set yet: call "
                                 f"dataset.prepare() after adding classes and images")
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    # ------------------------------------------------------------------ registration
    def add_class(self, source, class_id, class_name):
        """Register class ``class_id`` of data set ``source``; a repeated (source, id) is ignored.

        ``source`` may not contain a dot (it is used in ``"source.id"`` keys).
        """
        if "." in source:
            raise ValueError(f"add_class: source name {source!r} cannot contain a dot")
        for info in self.class_info:
            if info["source"] == source and info["id"] == class_id:
                return
        self.class_info.append({"source": source, "id": class_id, "name": class_name})

    def add_image(self, source, image_id, path, **kwargs):
        """Register an image: ``image_id`` is its id in ``source``; extra keyword arguments
        (annotations, size, ...) are stored in its ``image_info`` entry."""
        image_info = {"id": image_id, "source": source, "path": path}
        image_info.update(kwargs)
        self.image_info.append(image_info)

    def image_reference(self, image_id):
        """A link or description of the image in its source (override; default "")."""
        return ""

    def prepare(self, class_map=None):
        """Build the internal id tables. Call it after adding all classes and images.

        ``class_map`` is accepted for API compatibility and ignored (as in Matterport).
        """
        def clean_name(name):
            # Keep what comes before the first comma ("person, human" -> "person").
            return ",".join(str(name).split(",")[:1])

        self.num_classes = len(self.class_info)
        self.class_ids = np.arange(self.num_classes)
        self.class_names = [clean_name(c["name"]) for c in self.class_info]
        self.num_images = len(self.image_info)
        self._image_ids = np.arange(self.num_images)

        self.class_from_source_map = {f"{info['source']}.{info['id']}": class_id
                                      for info, class_id in zip(self.class_info, self.class_ids)}
        self.image_from_source_map = {f"{info['source']}.{info['id']}": image_id
                                      for info, image_id in zip(self.image_info, self.image_ids)}

        # Sorted (Matterport used a set) so the order is reproducible.
        self.sources = sorted({info["source"] for info in self.class_info})
        self.source_class_ids = {}
        for source in self.sources:
            self.source_class_ids[source] = [
                i for i, info in enumerate(self.class_info) if i == 0 or info["source"] == source]

    # ------------------------------------------------------------------ lookups
    def map_source_class_id(self, source_class_id):
        """Internal class id of ``"source.id"`` (e.g. ``"coco.12"``)."""
        try:
            return self.class_from_source_map[source_class_id]
        except KeyError:
            raise KeyError(f"Unknown source class {source_class_id!r}; registered: "
                           f"{sorted(self.class_from_source_map)}") from None

    def get_source_class_id(self, class_id, source):
        """The id that internal class ``class_id`` has in data set ``source``."""
        info = self.class_info[class_id]
        if info["source"] != source:
            raise ValueError(f"Class {class_id} ({info['name']!r}) belongs to source "
                             f"{info['source']!r}, not {source!r}")
        return info["id"]

    @property
    def image_ids(self):
        """Internal image ids: int array ``0 .. num_images - 1`` (empty before `prepare`)."""
        return self._image_ids

    def source_image_link(self, image_id):
        """Path or URL of the image file."""
        return self.image_info[image_id]["path"]

    # ------------------------------------------------------------------ loading
    def load_image(self, image_id):
        """Load image ``image_id`` as RGB ``uint8`` ``[H, W, 3]``.

        Reads ``image_info[image_id]["path"]``; grayscale, RGBA, 16-bit and float images are
        converted. Raises FileNotFoundError (missing file) or `ImageLoadError` (undecodable
        file), naming the path and the image id.
        """
        return read_image(self.image_info[image_id]["path"], image_id=image_id)

    def load_mask(self, image_id):
        """Instance masks of an image. Override this in your data set.

        Returns ``(masks, class_ids)``: bool [H, W, N] and int32 [N] internal class ids.
        The base implementation logs a warning and returns an empty mask ``[0, 0, 0]`` and no
        class ids.
        """
        logger.warning("You are using the default load_mask(); define load_mask() in your "
                       "Dataset subclass to return the instance masks.")
        mask = np.empty([0, 0, 0], dtype=bool)
        class_ids = np.empty([0], np.int32)
        return mask, class_ids
