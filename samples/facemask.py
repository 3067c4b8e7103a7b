"""Mask R-CNN for face masks: Matterport's balloon sample, for a VIA-annotated face-mask data set.

The data set is laid out as Matterport's samples expect::

    DATASET/train/via_region_data.json   + the training images
    DATASET/val/via_region_data.json     + the validation images

with one VIA region (polygon, rect, circle, ellipse) per face mask. Every region is the class
``mask``, or, with ``--class-attribute mask_type``, the class named by that region attribute
(``surgical``, ``N95``, ``cloth``, ...).

The workflow itself lives in the library (`mrcnn.workflow`, the ``mrcnn`` command); this sample is
the ``mrcnn`` command with the face-mask defaults (NAME ``facemask``, one class ``mask``), plus
the Matterport-style classes for your own scripts. ``python samples/facemask.py COMMAND --help``
lists each command's options::

    python samples/facemask.py demo [--output out/demo] [--fast]
    python samples/facemask.py anchors  --dataset DATASET
    python samples/facemask.py train    --dataset DATASET --weights coco
    python samples/facemask.py evaluate                  # best checkpoint of the latest run
    python samples/facemask.py detect   --image FILE_OR_DIR --output detections

``train`` runs stage 1 (the heads at 1e-3) and stage 2 (all layers at 1e-5, from the best
stage-1 checkpoint by validation loss) in one run directory ``LOGS/facemaskYYYYMMDDTHHMM/`` whose
``settings.json`` lets ``evaluate``, ``detect`` and ``anchors`` rebuild the model with no repeated
options.

In Python, Matterport's way::

    config = FaceMaskConfig()
    train_ds, val_ds = FaceMaskDataset(), FaceMaskDataset()
    train_ds.load_facemask("DATASET", "train"); train_ds.prepare()
    val_ds.load_facemask("DATASET", "val"); val_ds.prepare()
    model = modellib.MaskRCNN("training", config, "logs")
    ...

or the library's: ``train_facemask("DATASET", weights="coco")`` below.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mrcnn import cli  # noqa: E402
from mrcnn.datasets.via import VIADataset  # noqa: E402
from mrcnn.workflow import WorkflowConfig, WorkflowError, run_training  # noqa: E402
from mrcnn.workflow.data import check_not_empty, check_via_layout  # noqa: E402

#: The sample's defaults under the command line's and a --config file's settings.
DEFAULTS = {"name": "facemask", "classes": ["mask"]}


class FaceMaskConfig(WorkflowConfig):
    """Fine-tuning COCO weights on a small face-mask data set (Matterport's balloon settings;
    see `mrcnn.workflow.presets.WorkflowConfig`).

    ``NUM_CLASSES`` is ``1 + len(class_names)``; ``FaceMaskConfig()`` alone is the single class
    ``mask``.
    """

    NAME = "facemask"


class FaceMaskInferenceConfig(FaceMaskConfig):
    """One image at a time (``detect`` and the evaluations feed images one by one)."""

    GPU_COUNT = 1
    IMAGES_PER_GPU = 1


class FaceMaskDataset(VIADataset):
    """Face masks annotated with VIA (see `mrcnn.datasets.via` for the formats and shapes).

    ``load_mask`` (inherited) returns bool masks ``[H, W, N]`` and int32 class ids ``[N]`` in the
    image's own pixel coordinates.
    """

    def load_facemask(self, dataset_dir, subset, annotation_file="via_region_data.json",
                      class_attribute=None, class_names=None):
        """Load one subset of the face-mask data set (Matterport's ``load_balloon``).

        Args:
            dataset_dir: root of the data set.
            subset: sub-folder to load, ``"train"`` or ``"val"``.
            annotation_file: VIA JSON file name inside ``dataset_dir/subset``.
            class_attribute: region attribute holding each region's class (e.g. ``"mask_type"``);
                ``None``: every region is the class ``mask``.
            class_names: with ``class_attribute``, the class names in id order; pass the training
                subset's names when loading the validation subset so ids agree.

        Returns:
            list of the class names (ids 1..K), background excluded.

        Raises:
            WorkflowError: missing folder or JSON file, or no usable image (names it).
        """
        json_path = check_via_layout(dataset_dir, subset, annotation_file)
        before = len(self.image_info)
        if class_attribute:
            names = self.load_via(dataset_dir, subset, annotation_file, source="facemask",
                                  class_attribute=class_attribute, class_names=class_names)
        else:
            names = self.load_via(dataset_dir, subset, annotation_file, source="facemask",
                                  default_class="mask")
        check_not_empty(self.image_info[before:], json_path, subset)
        return names


def train_facemask(dataset_dir, weights="coco", logs="logs", class_attribute=None, **settings):
    """Both fine-tuning stages on a face-mask data set, from Python.

    ``settings`` are further run settings (see `mrcnn.workflow.settings`: ``preset``,
    ``overrides``, ``stages``, ...). Returns `mrcnn.workflow.run_training`'s dict (``run_dir``,
    ``best``, ``records``, ``class_names``, ``config``, ...).
    """
    run = dict(DEFAULTS, dataset=dataset_dir, weights=weights, logs=logs, **settings)
    if class_attribute:
        run.update(class_attribute=class_attribute, classes=None)
    return run_training(run, base=FaceMaskConfig)


def main(argv=None):
    """The ``mrcnn`` command with the face-mask defaults; returns the exit status."""
    script = os.path.relpath(os.path.abspath(__file__))
    return cli.main(argv, prog="facemask.py", defaults=DEFAULTS,
                    command_line=f"python {script}")


__all__ = ["FaceMaskConfig", "FaceMaskInferenceConfig", "FaceMaskDataset", "train_facemask",
           "main", "WorkflowError"]

if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import logging

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sys.exit(main())
