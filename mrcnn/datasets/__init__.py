"""Data set loaders: VIA (VGG Image Annotator) JSON, COCO JSON and synthetic generators."""

from mrcnn.datasets.coco import COCODataset
from mrcnn.datasets.synthetic import (
    FACEMASK_CLASSES,
    SHAPE_CLASSES,
    SyntheticShapesDataset,
    make_shapes_image,
    write_via_dataset,
)
from mrcnn.datasets.via import VIADataset, VIAFormatError, VIAWarning

__all__ = [
    "COCODataset",
    "VIADataset",
    "VIAFormatError",
    "VIAWarning",
    "SyntheticShapesDataset",
    "make_shapes_image",
    "write_via_dataset",
    "SHAPE_CLASSES",
    "FACEMASK_CLASSES",
]
