"""Mask R-CNN on MS COCO, or any data set in COCO's JSON format: train and evaluate.

The command line of Matterport's ``samples/coco/coco.py``, on this library. The data set lies in
COCO's own layout (what the official zips unpack to)::

    DIR/annotations/instances_train2017.json    DIR/train2017/<images>
    DIR/annotations/instances_val2017.json      DIR/val2017/<images>

For ``--year 2014``, training uses ``train2014`` plus ``valminusminival2014`` and validation
``minival2014`` (both of the latter read their images from ``val2014/``), as Matterport did. Any
other year string works for your own COCO-format data: ``--year ""`` reads
``annotations/instances_train.json`` with images in ``train/``, and ``instances_val.json`` with
``val/``. Nothing is downloaded but the pretrained weights.

Training follows Matterport's schedule: stage 1 trains the heads to epoch 40 at the learning rate,
stage 2 ResNet stage 4 and up to epoch 120 at the same rate, stage 3 all layers to epoch 160 at a
tenth of it. Epochs count from the start of the run (Matterport's meaning), so ``--weights last``
resumes and skips the stages already done.

    # Train from the COCO weights (or imagenet, last, none, the path of a .h5 file)
    python samples/coco.py train --dataset /data/coco --year 2017 --weights coco
    # Resume the last run of this --logs folder
    python samples/coco.py train --dataset /data/coco --year 2017 --weights last
    # COCO AP (bbox and segm) of a checkpoint on the first 500 validation images
    python samples/coco.py evaluate --dataset /data/coco --year 2017 --weights last --limit 500
    # A CPU-sized run to check a data set and the commands end to end
    python samples/coco.py train --dataset DIR --weights none --tiny --stage1-epochs 1 \\
        --stage2-epochs 2 --stage3-epochs 3

Evaluate with the model options used for training (``--tiny``, ``--backbone``, ``--image-size``):
they shape the network the checkpoint must fit. ``--weights`` is also accepted as ``--model``
(Matterport's name). The number of classes follows
the data set (81 on COCO: 80 categories and the background); the COCO weights' class-specific
layers are left out when it differs.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mrcnn.config import Config, ConfigError  # noqa: E402
from mrcnn.datasets.coco import COCODataset  # noqa: E402
from mrcnn.workflow.errors import WorkflowError, user_error_types  # noqa: E402

DEFAULT_YEAR = "2017"
DEFAULT_LOGS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "logs")
COCO_NUM_CLASSES = 1 + 80


#: Bad command-line input (data set, weights); main() prints it without a traceback.
InputError = WorkflowError


class CocoConfig(Config):
    """Matterport's configuration for training on MS COCO (other settings: Config defaults)."""

    NAME = "coco"
    IMAGES_PER_GPU = 2  # a 12 GB GPU holds two 1024x1024 images with ResNet-101
    NUM_CLASSES = COCO_NUM_CLASSES


class CocoInferenceConfig(CocoConfig):
    """Evaluation: one image at a time, every detection kept (COCO AP ranks them by score)."""

    GPU_COUNT = 1
    IMAGES_PER_GPU = 1
    DETECTION_MIN_CONFIDENCE = 0


#: ``--tiny``: a model small enough for a CPU (tests, checking a data set): ResNet-18 at 128 px
#: with narrow heads, as the test suite's TinyConfig. Explicit options still win over it.
TINY_SETTINGS = {
    "BACKBONE": "resnet18",
    "IMAGE_MIN_DIM": 128,
    "IMAGE_MAX_DIM": 128,
    "IMAGES_PER_GPU": 1,
    "RPN_ANCHOR_SCALES": (8, 16, 32, 64, 128),
    "TOP_DOWN_PYRAMID_SIZE": 32,
    "FPN_CLASSIF_FC_LAYERS_SIZE": 64,
    "RPN_TRAIN_ANCHORS_PER_IMAGE": 64,
    "PRE_NMS_LIMIT": 600,
    "POST_NMS_ROIS_TRAINING": 100,
    "POST_NMS_ROIS_INFERENCE": 50,
    "TRAIN_ROIS_PER_IMAGE": 32,
    "MAX_GT_INSTANCES": 20,
    "MINI_MASK_SHAPE": (28, 28),
    "DETECTION_MAX_INSTANCES": 20,
    "STEPS_PER_EPOCH": 2,
    "VALIDATION_STEPS": 1,
}


class CocoDataset(COCODataset):
    """MS COCO in its standard layout, with Matterport's ``load_coco`` (see the module docstring).

    Images keep their COCO ids (``image_info[i]["id"]``) and categories their COCO ids as source
    class ids, so internal class ``dataset.map_source_class_id("coco.<category id>")`` follows
    the order of the sorted category ids, as in Matterport (the COCO weights rely on it).
    """

    def load_coco(self, dataset_dir, subset, year=DEFAULT_YEAR, class_ids=None, class_map=None,
                  return_coco=False, auto_download=False):
        """Add one subset of COCO.

        Args:
            dataset_dir: root of the data set (holds ``annotations/``).
            subset: ``"train"``, ``"val"``, or for 2014 ``"minival"`` / ``"valminusminival"``
                (any name with an ``annotations/instances_<subset><year>.json`` works).
            year: ``"2014"``, ``"2017"``, or any suffix of your own files (``""`` for none).
            class_ids: COCO category ids to load (default all); only images holding one of them
                are added.
            class_map: ignored, as in Matterport.
            return_coco: return the ``pycocotools.coco.COCO`` object of the annotation file.
            auto_download: not supported (raises); download COCO yourself.

        Raises:
            FileNotFoundError: the annotation file or the image folder is missing (the message
                names the path and the layout expected).
        """
        year = str(year)
        annotation_file = os.path.join(str(dataset_dir), "annotations",
                                       f"instances_{subset}{year}.json")
        image_subset = "val" if subset in ("minival", "valminusminival") else subset
        image_dir = os.path.join(str(dataset_dir), f"{image_subset}{year}")
        if not auto_download:
            for path, what in ((annotation_file, "annotation file"), (image_dir, "image folder")):
                if not os.path.exists(path):
                    raise FileNotFoundError(
                        f"COCO {subset}{year}: {what} {path} not found. Expected "
                        f"{dataset_dir}/annotations/instances_{subset}{year}.json and the images "
                        f"in {dataset_dir}/{image_subset}{year}/ (check --dataset and --year)")
        return super().load_coco(dataset_dir, subset, year=year, class_ids=class_ids,
                                 class_map=class_map, return_coco=return_coco,
                                 auto_download=auto_download)


def subsets(year):
    """``(training subsets, validation subset)`` of a year, as Matterport splits COCO."""
    if str(year) == "2014":
        return ["train", "valminusminival"], "minival"
    return ["train"], "val"


def load_dataset(dataset_dir, year, names, limit=None):
    """A prepared CocoDataset of the given subsets, its first ``limit`` images when given."""
    dataset = CocoDataset()
    for subset in names:
        try:
            dataset.load_coco(dataset_dir, subset, year=year)
        except ValueError as error:  # malformed JSON; the message names the file
            raise InputError(str(error)) from error
    if limit:
        dataset.image_info = dataset.image_info[:limit]
    dataset.prepare()
    if dataset.num_images == 0:
        raise InputError(f"{dataset_dir}: no image with annotations in {names} {year}")
    return dataset


def make_config(base, args, num_classes):
    """An instance of ``base`` with the command-line settings and the data set's class count."""
    config = base()
    settings = dict(TINY_SETTINGS) if args.tiny else {}
    if args.backbone:
        settings["BACKBONE"] = args.backbone
    if args.image_size:
        settings["IMAGE_MIN_DIM"] = settings["IMAGE_MAX_DIM"] = args.image_size
    if getattr(args, "images_per_gpu", None):
        settings["IMAGES_PER_GPU"] = args.images_per_gpu
    if getattr(args, "steps_per_epoch", None):
        settings["STEPS_PER_EPOCH"] = args.steps_per_epoch
    if getattr(args, "validation_steps", None):
        settings["VALIDATION_STEPS"] = args.validation_steps
    if getattr(args, "lr", None):
        settings["LEARNING_RATE"] = args.lr
    if base is CocoInferenceConfig:
        settings["IMAGES_PER_GPU"] = 1  # evaluate_coco detects one image at a time
    if getattr(args, "weights", None) == "none":
        # Random batch-norm statistics are useless; they must be learnt (frozen otherwise).
        settings["TRAIN_BN"] = True
    settings["NUM_CLASSES"] = num_classes
    for name, value in settings.items():
        setattr(config, name, value)
    config.validate()
    return config


def initial_weights(args, config):
    """``(path or None, excluded layers)`` of ``--weights`` (`mrcnn.workflow.resolve_weights`;
    ``--coco-weights`` names where the COCO file is kept)."""
    from mrcnn import model as modellib
    from mrcnn import utils
    from mrcnn.workflow import resolve_weights

    if args.weights == "coco" and args.coco_weights:
        path = utils.download_trained_weights(args.coco_weights)
        exclude = (list(modellib.CLASS_SPECIFIC_LAYERS)
                   if config.NUM_CLASSES != COCO_NUM_CLASSES else [])
    else:
        path, exclude, _ = resolve_weights(args.weights, config, args.logs)
    if exclude:
        print(f"The data set has {config.NUM_CLASSES - 1} classes, COCO 80: the class-specific "
              f"layers {exclude} start from random weights")
    return path, exclude


def train(args):
    """Matterport's three training stages (`mrcnn.workflow.train_stages`); returns its dict."""
    from mrcnn.workflow import Stage, flip_augmentation, train_stages

    train_subsets, val_subset = subsets(args.year)
    dataset_train = load_dataset(args.dataset, args.year, train_subsets, args.limit)
    dataset_val = load_dataset(args.dataset, args.year, [val_subset])
    print(f"Training images: {dataset_train.num_images} ({' + '.join(train_subsets)}), "
          f"validation images: {dataset_val.num_images} ({val_subset}), classes: "
          f"{dataset_train.num_classes - 1}")
    config = make_config(CocoConfig, args, dataset_train.num_classes)
    config.display()
    path, exclude = initial_weights(args, config)
    lr = config.LEARNING_RATE
    # Epochs count from the start of the run, and each stage goes on from the previous one's
    # weights, as in Matterport: --weights last resumes and skips the stages already done.
    stages = [Stage("heads", lr, until=args.stage1_epochs, start="continue"),
              Stage("4+", lr, until=args.stage2_epochs, start="continue"),
              Stage("all", lr / 10, until=args.stage3_epochs, start="continue")]
    augmentation = None
    if not args.no_augment:
        try:
            augmentation = flip_augmentation(True)
        except InputError:
            print("albumentations is not installed: training without augmentation "
                  "(pip install 'mrcnn[augment]')")
    result = train_stages(dataset_train, dataset_val, config, stages, weights=path or "none",
                          logs=args.logs, settings={"dataset": os.path.abspath(args.dataset),
                                                    "format": "coco", "year": args.year},
                          augmentation=augmentation, exclude=exclude)
    model = result["model"]
    print("Run folder:", result["run_dir"])
    print("Last checkpoint:", model.find_last())
    print("Best checkpoint:", result["best"])
    return result


def evaluate(args):
    """COCO AP (bbox and segm) on the validation subset; returns evaluate_coco's dict."""
    _, val_subset = subsets(args.year)
    subset = args.subset or val_subset
    dataset_val = load_dataset(args.dataset, args.year, [subset])
    if args.weights == "coco" and dataset_val.num_classes != COCO_NUM_CLASSES:
        raise InputError(f"--weights coco detects the 80 COCO categories but the data set has "
                         f"{dataset_val.num_classes - 1}: evaluate a checkpoint trained on it")

    from mrcnn import model as modellib
    from mrcnn.evaluation import evaluate_coco

    config = make_config(CocoInferenceConfig, args, dataset_val.num_classes)
    model = modellib.MaskRCNN(mode="inference", config=config, model_dir=args.logs)
    path, exclude = initial_weights(args, config)
    model.load_weights(path, by_name=True, exclude=exclude)
    count = dataset_val.num_images if not args.limit else min(args.limit, dataset_val.num_images)
    print(f"Running COCO evaluation on {count} images of {subset}{args.year} (weights {path})")
    start = time.time()
    result = evaluate_coco(model, dataset_val, limit=args.limit or None,
                           iou_type=("bbox", "segm"), verbose=1)
    print(f"Evaluated in {time.time() - start:.1f} s, {result['num_detections']} detections")
    for iou_type in ("bbox", "segm"):
        print(f"COCO AP {iou_type}: {result[iou_type]:.3f} (AP50 {result[iou_type + '_AP50']:.3f}, "
              f"AP75 {result[iou_type + '_AP75']:.3f})")
    return result


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Train Mask R-CNN on MS COCO (or COCO-format data), or evaluate it.")
    parser.add_argument("command", choices=["train", "evaluate"])
    parser.add_argument("--dataset", required=True, metavar="DIR",
                        help="root of the data set: DIR/annotations/instances_<subset><year>.json "
                             "and DIR/<subset><year>/")
    parser.add_argument("--year", default=DEFAULT_YEAR,
                        help="2014, 2017, or the suffix of your own files ('' for none); "
                             "default %(default)s")
    parser.add_argument("--weights", "--model", dest="weights", required=True,
                        help="coco, imagenet, last (the latest checkpoint in --logs), none, or "
                             "the path of a .h5 file")
    parser.add_argument("--logs", default=DEFAULT_LOGS_DIR,
                        help="checkpoints and logs folder; default %(default)s")
    parser.add_argument("--limit", type=int, default=None,
                        help="use only the first N images (training set for train, validation "
                             "set for evaluate; evaluate defaults to 500)")
    parser.add_argument("--coco-weights", metavar="PATH",
                        help="where mask_rcnn_coco.h5 is kept (default: ~/.mrcnn or $MRCNN_HOME)")
    model = parser.add_argument_group("model (defaults: CocoConfig)")
    model.add_argument("--tiny", action="store_true",
                       help="a CPU-sized model: ResNet-18 at 128 px, narrow heads, 2 steps per "
                            "epoch (the options below still apply)")
    model.add_argument("--backbone", choices=["resnet18", "resnet50", "resnet101"])
    model.add_argument("--image-size", type=int, metavar="PX",
                       help="images are resized and padded to PX x PX (a multiple of 64)")
    training = parser.add_argument_group("training")
    training.add_argument("--stage1-epochs", type=int, default=40,
                          help="train the heads until this epoch (default %(default)s)")
    training.add_argument("--stage2-epochs", type=int, default=120,
                          help="then ResNet stage 4 and up until this epoch (default "
                               "%(default)s)")
    training.add_argument("--stage3-epochs", type=int, default=160,
                          help="then all layers, at a tenth of the learning rate, until this "
                               "epoch (default %(default)s)")
    training.add_argument("--lr", type=float,
                          help="learning rate of stages 1 and 2 (default: LEARNING_RATE, 0.001)")
    training.add_argument("--images-per-gpu", type=int, help="batch size")
    training.add_argument("--steps-per-epoch", type=int)
    training.add_argument("--validation-steps", type=int)
    training.add_argument("--no-augment", action="store_true",
                          help="no random horizontal flips")
    evaluation = parser.add_argument_group("evaluate")
    evaluation.add_argument("--subset", help="subset to evaluate (default: val, minival for 2014)")
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit must be at least 1, got {args.limit}")
    if args.command == "evaluate":
        if args.limit is None:
            args.limit = 500
        if args.weights in ("imagenet", "none"):
            parser.error(f"evaluate needs trained weights: --weights coco, last or a .h5 path, "
                         f"not {args.weights}")
    if not args.stage1_epochs <= args.stage2_epochs <= args.stage3_epochs:
        parser.error("the stage epochs must not decrease: --stage1-epochs "
                     f"{args.stage1_epochs}, --stage2-epochs {args.stage2_epochs}, "
                     f"--stage3-epochs {args.stage3_epochs}")
    return args


def main(argv=None):
    args = parse_args(argv)
    print(f"Command: {args.command}, dataset: {args.dataset}, year: {args.year!r}, "
          f"weights: {args.weights}, logs: {args.logs}")
    try:
        if args.command == "train":
            train(args)
        else:
            evaluate(args)
    except (ConfigError,) + user_error_types() as error:
        # Bad input (a path, a setting): a clear message, not a traceback.
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
