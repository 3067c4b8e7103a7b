"""Writes ``notebooks/facemask_colab.ipynb`` from the cells below.

The notebook is generated so that its code reads (and diffs) as plain Python here; edit this file
and run ``python notebooks/make_facemask_colab.py``. ``tests/test_notebook.py`` fails when the
committed ``.ipynb`` differs from what this script writes.

Code cells carry tags that tests and papermill use: ``parameters`` marks the cell holding every
setting; the others name the step (``stage1``, ``stage2-start``, ``evaluate``, ...).
"""

import os
import sys
import textwrap

import nbformat

NOTEBOOK_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "facemask_colab.ipynb")


def _md(text):
    return ("markdown", None, text)


def _code(tag, text):
    return ("code", tag, text)


CELLS = [
    _md("""
        # Face-mask detection with Mask R-CNN on Colab

        This notebook trains [Mask R-CNN](https://arxiv.org/abs/1703.06870) to find face masks in
        photos and to tell their type apart (for example *surgical*, *N95*, *cloth*), using the
        `mrcnn` library (Matterport's Mask R-CNN API on TensorFlow 2 / Keras 3). It runs end to
        end:

        1. install `mrcnn`;
        2. get the data: your [VIA](https://www.robots.ox.ac.uk/~vgg/software/via/) annotations
           from Google Drive, an uploaded zip, a local folder, or a generated synthetic data set;
        3. configure the model and load the training and validation sets;
        4. download the COCO-trained weights to start from;
        5. train in two stages: the heads first, then all layers from the best stage-1 checkpoint;
        6. plot the training curves;
        7. evaluate (mAP@0.5, mAP@0.5:0.95 and COCO AP);
        8. look at the detections on validation images.

        **Before you start:** *Runtime → Change runtime type → GPU*. Then edit the settings in the
        next cell (at least `REPO_URL`, and `DATA_SOURCE` / `DATASET_DIR` for your own data) and
        run *Runtime → Run all*. Training time grows with `IMAGE_SIZE`, the backbone
        (`resnet101` is slower than `resnet50`) and the number of epochs and steps: lower them
        for a quick first run.

        **Your data set** follows Matterport's layout, one VIA JSON export per subset:

        ```
        facemask/train/via_region_data.json   + the training images
        facemask/val/via_region_data.json     + the validation images
        ```

        Draw one region (polygon, rectangle, circle or ellipse) per face mask and give it a region
        attribute `mask_type` holding its class. Without such an attribute set
        `CLASS_ATTRIBUTE = None`: every region is then of the single class "mask".
        """),
    _code("parameters", """
        # Settings. Every knob of the notebook is in this cell (tagged "parameters" for papermill).

        # Git URL of the mrcnn project, used by `pip install` when mrcnn is not installed yet.
        # >>> SET THIS to the repository you got this notebook from (your fork, or the project's
        # public URL); append "@<branch or tag>" to pin a version. A local folder also works.
        REPO_URL = "https://github.com/YOUR-ACCOUNT/mrcnn.git"
        INSTALL = True  # False: never pip install (mrcnn must then be importable already)

        # Where the data comes from:
        #   "generate": write a synthetic VIA face-mask data set to DATASET_DIR (a first run, no data)
        #   "drive":    mount Google Drive; DATASET_DIR is a folder or .zip on it, for example
        #               "/content/drive/MyDrive/facemask" or "/content/drive/MyDrive/facemask.zip"
        #   "upload":   upload a .zip of the data set from your computer; extracted into DATASET_DIR
        #   "path":     DATASET_DIR is a folder or .zip already on this machine
        DATA_SOURCE = "generate"  # @param ["generate", "drive", "upload", "path"]
        DATASET_DIR = "/content/facemask"  # @param {type:"string"}
        # Zips are extracted, and Drive folders copied, here: local disk reads much faster.
        LOCAL_DATA_DIR = "/content/dataset"
        DRIVE_MOUNT = "/content/drive"
        ANNOTATION_FILE = "via_region_data.json"  # the VIA JSON in train/ and val/
        CLASS_ATTRIBUTE = "mask_type"  # region attribute holding the class; None: one class "mask"
        CLASS_NAMES = None  # e.g. ["N95", "cloth", "surgical"]; None: the values found in train/
        # Only for DATA_SOURCE = "generate":
        GENERATE_TRAIN_IMAGES = 200
        GENERATE_VAL_IMAGES = 40
        GENERATE_IMAGE_SIZE = 512
        SEED = 0

        # Starting weights: "coco" (Matterport's COCO model, downloaded once, 246 MiB), "imagenet"
        # (an ImageNet ResNet-50 backbone), "none" (random) or the path of a .h5 checkpoint.
        WEIGHTS = "coco"  # @param {type:"string"}
        COCO_WEIGHTS_PATH = None  # where mask_rcnn_coco.h5 is kept; None: ~/.mrcnn ($MRCNN_HOME)

        # Model and training.
        BACKBONE = "resnet101"  # @param ["resnet101", "resnet50", "resnet18"]
        # Images are resized and padded to IMAGE_SIZE x IMAGE_SIZE (a multiple of 64).
        IMAGE_SIZE = 1024  # @param {type:"integer"}
        IMAGES_PER_GPU = 1  # batch size; 2 fits a 16 GB GPU at 1024 px with ResNet-101
        STAGE1_EPOCHS = 10  # @param {type:"integer"}
        STAGE1_LR = 1e-3
        STAGE1_LAYERS = "heads"  # RPN, FPN and the Mask R-CNN heads; the backbone stays frozen
        STAGE2_EPOCHS = 10  # @param {type:"integer"}
        STAGE2_LR = 1e-5
        STAGE2_LAYERS = "all"
        STEPS_PER_EPOCH = 100  # @param {type:"integer"}
        VALIDATION_STEPS = 20
        AUGMENT = True  # random horizontal flips (albumentations, when installed)
        # Any other Config setting, e.g. {"RPN_ANCHOR_SCALES": (16, 32, 64, 128, 256)}.
        CONFIG_OVERRIDES = {}
        # Checkpoints, TensorBoard logs and history.csv. Put it on Drive to keep them, e.g.
        # "/content/drive/MyDrive/mrcnn_logs" (Colab's own disk is wiped with the runtime).
        LOGS_DIR = "/content/logs"

        # Inference and evaluation.
        DETECTION_MIN_CONFIDENCE = 0.7  # detections below this score are dropped
        EVAL_LIMIT = None  # evaluate on the first N validation images; None: all of them
        SHOW_IMAGES = 4  # validation images drawn with their detections
        """),
    _md("""
        ## 1. Install `mrcnn`

        Installs the library with `pip` from `REPO_URL`, unless it can already be imported (for
        example on a second run, or when you run the notebook from a clone of the repository).
        """),
    _code("install", """
        import importlib.util
        import os

        if importlib.util.find_spec("mrcnn") is not None:
            print("mrcnn is already installed: skipping pip install")
        elif not INSTALL:
            raise ModuleNotFoundError("mrcnn is not installed and INSTALL is False: set INSTALL = "
                                      "True (and REPO_URL) in the settings cell, or install it")
        else:
            if "YOUR-ACCOUNT" in REPO_URL:
                raise ValueError("Set REPO_URL in the settings cell to the git URL of the mrcnn "
                                 "project (e.g. https://github.com/<you>/mrcnn.git) before "
                                 "installing")
            PIP_TARGET = (REPO_URL if os.path.isdir(REPO_URL) or REPO_URL.startswith("git+")
                          else "git+" + REPO_URL)
            !pip install --quiet "mrcnn[augment] @ {PIP_TARGET}"
            importlib.invalidate_caches()
            if importlib.util.find_spec("mrcnn") is None:
                raise ModuleNotFoundError(f"pip could not install mrcnn from {REPO_URL!r}; see "
                                          "pip's messages above")

        import mrcnn

        print("mrcnn", mrcnn.__version__, "from", os.path.dirname(mrcnn.__file__))
        """),
    _md("""
        ## 2. Get the data

        `DATA_SOURCE` picks where the data set comes from (see the settings cell). Whatever the
        source, the cell ends with `DATASET_ROOT`: the folder that holds `train/` and `val/`. A zip
        may wrap them in a top folder; it is found automatically.

        `"generate"` writes cartoon faces wearing N95, cloth and surgical masks, annotated the way
        you would annotate photos in VIA (one polygon per mask, attribute `mask_type`). It is only
        meant to check that everything runs: real photos are needed for a useful model.
        """),
    _code("data", """
        import io
        import shutil
        import zipfile

        from mrcnn.datasets.synthetic import write_via_dataset


        def find_dataset_root(folder):
            \"\"\"The folder under `folder` (itself included) holding train/ and val/ annotations.\"\"\"
            for root, dirs, _ in os.walk(folder):
                dirs[:] = sorted(d for d in dirs if d != "__MACOSX")  # macOS zips add __MACOSX/
                if all(os.path.isfile(os.path.join(root, subset, ANNOTATION_FILE))
                       for subset in ("train", "val")):
                    return root
            raise FileNotFoundError(
                f"No data set found in {folder}: expected train/{ANNOTATION_FILE} and "
                f"val/{ANNOTATION_FILE} (Matterport's layout) in it or in one of its sub-folders; "
                "check DATASET_DIR and ANNOTATION_FILE")


        def extract_zip(source, destination):
            \"\"\"Extract a zip (a path or an open file) into `destination`; returns `destination`.\"\"\"
            os.makedirs(destination, exist_ok=True)
            with zipfile.ZipFile(source) as archive:
                archive.extractall(destination)  # zipfile drops absolute and ".." member paths
            return destination


        def local_copy(path):
            \"\"\"A zip extracted, or a folder copied, into LOCAL_DATA_DIR.\"\"\"
            if not os.path.exists(path):
                raise FileNotFoundError(f"DATASET_DIR = {path!r} does not exist (DATA_SOURCE = "
                                        f"{DATA_SOURCE!r})")
            if zipfile.is_zipfile(path):
                return extract_zip(path, LOCAL_DATA_DIR)
            shutil.copytree(path, LOCAL_DATA_DIR, dirs_exist_ok=True)
            return LOCAL_DATA_DIR


        def colab_module(name):
            try:
                return importlib.import_module(f"google.colab.{name}")
            except ImportError:
                raise RuntimeError(f"DATA_SOURCE = {DATA_SOURCE!r} works only on Google Colab; "
                                   "elsewhere use \\"path\\"") from None


        KNOWN_CLASSES = None  # the class list, when the source tells it
        if DATA_SOURCE == "generate":
            summary = write_via_dataset(DATASET_DIR, n_train=GENERATE_TRAIN_IMAGES,
                                        n_val=GENERATE_VAL_IMAGES,
                                        image_size=(GENERATE_IMAGE_SIZE, GENERATE_IMAGE_SIZE),
                                        scene="facemask", seed=SEED,
                                        annotation_file=ANNOTATION_FILE)
            print(f"Generated {GENERATE_TRAIN_IMAGES} training and {GENERATE_VAL_IMAGES} validation "
                  f"images in {DATASET_DIR}")
            DATASET_ROOT = find_dataset_root(DATASET_DIR)
            KNOWN_CLASSES = summary["class_names"] if CLASS_ATTRIBUTE == "mask_type" else None
        elif DATA_SOURCE == "drive":
            colab_module("drive").mount(DRIVE_MOUNT)
            DATASET_ROOT = find_dataset_root(local_copy(DATASET_DIR))
        elif DATA_SOURCE == "upload":
            uploaded = colab_module("files").upload()
            if not uploaded:
                raise RuntimeError("No file was uploaded; run the cell again and pick a .zip")
            for name, content in uploaded.items():
                if not zipfile.is_zipfile(io.BytesIO(content)):
                    raise ValueError(f"{name} is not a zip file: upload the data set as a .zip "
                                     "holding train/ and val/")
                extract_zip(io.BytesIO(content), DATASET_DIR)
            DATASET_ROOT = find_dataset_root(DATASET_DIR)
        elif DATA_SOURCE == "path":
            if os.path.isdir(DATASET_DIR):
                DATASET_ROOT = find_dataset_root(DATASET_DIR)
            else:
                DATASET_ROOT = find_dataset_root(local_copy(DATASET_DIR))
        else:
            raise ValueError(f"DATA_SOURCE = {DATA_SOURCE!r}: expected \\"generate\\", \\"drive\\", "
                             "\\"upload\\" or \\"path\\"")
        print("Data set:", DATASET_ROOT)
        """),
    _md("""
        ## 3. Configuration and data sets

        `mrcnn.workflow.load_train_val` reads the VIA JSON of each subset (VIA 1.x and 2.x exports
        and 2.x project files; polygons, rectangles, circles and ellipses) into `VIADataset`s. The
        class of a region comes from its `CLASS_ATTRIBUTE` region attribute; both subsets share one
        class list so class ids agree. (The `mrcnn` command does the same: `mrcnn train --data
        DATASET_ROOT --class-attribute mask_type --weights coco`.)

        The configuration subclasses `Config` as in Matterport's samples. Training from scratch
        (`WEIGHTS = "none"`) also trains the batch-norm layers, whose random statistics are
        useless otherwise; with pretrained weights they stay frozen, as Matterport does for small
        batches.
        """),
    _code("config", """
        %matplotlib inline
        import json

        import matplotlib.pyplot as plt
        import numpy as np

        from mrcnn import utils, visualize, workflow
        from mrcnn.config import Config

        dataset_train, dataset_val, CLASSES = workflow.load_train_val(
            DATASET_ROOT, "via", ANNOTATION_FILE, CLASS_ATTRIBUTE,
            CLASS_NAMES or KNOWN_CLASSES or (None if CLASS_ATTRIBUTE else ["mask"]))
        for subset, dataset in (("train", dataset_train), ("val", dataset_val)):
            # via_regions holds each region's class id in the order of CLASSES (1, 2, ...).
            counts = np.bincount([region["class_id"] for info in dataset.image_info
                                  for region in info["via_regions"]],
                                 minlength=len(CLASSES) + 1)[1:]
            print(f"{subset:5}: {dataset.num_images} images, regions per class: "
                  + ", ".join(f"{name} {n}" for name, n in zip(CLASSES, counts)))


        class FaceMaskConfig(Config):
            NAME = "facemask"
            NUM_CLASSES = 1 + len(CLASSES)  # background + the mask types
            GPU_COUNT = 1
            # The right-hand names below are the settings cell's (class bodies read globals).
            IMAGES_PER_GPU = IMAGES_PER_GPU
            BACKBONE = BACKBONE
            IMAGE_MIN_DIM = IMAGE_SIZE
            IMAGE_MAX_DIM = IMAGE_SIZE
            STEPS_PER_EPOCH = STEPS_PER_EPOCH
            VALIDATION_STEPS = VALIDATION_STEPS
            TRAIN_BN = WEIGHTS in (None, "none")


        for key, value in CONFIG_OVERRIDES.items():
            if not key.isupper() or not hasattr(Config, key):
                raise KeyError(f"CONFIG_OVERRIDES: {key!r} is not a Config setting")
            setattr(FaceMaskConfig, key, value)  # on the class, so InferenceConfig inherits it

        config = FaceMaskConfig()
        config.display()

        # One training image with its annotations: a quick check that the masks fit the objects.
        image_id = dataset_train.image_ids[0]
        gt_masks, gt_class_ids = dataset_train.load_mask(image_id)
        visualize.display_instances(dataset_train.load_image(image_id),
                                    utils.extract_bboxes(gt_masks), gt_masks, gt_class_ids,
                                    dataset_train.class_names, figsize=(6, 6),
                                    title=os.path.basename(dataset_train.image_reference(image_id)));
        """),
    _md("""
        ## 4. Model and starting weights

        The training model is built, then initialised. Matterport's COCO weights detect 80 COCO
        classes, so the layers whose shapes depend on the number of classes
        (`modellib.CLASS_SPECIFIC_LAYERS`: the class logits, box and mask outputs) are left out
        and learnt from scratch; everything else starts from COCO. The download (246 MiB) is
        cached and checked for size, so a second run reuses it. `workflow.resolve_weights` turns
        `WEIGHTS` into a file and the layers to leave out.
        """),
    _code("weights", """
        import mrcnn.model as modellib
        from mrcnn.weights import WeightsMismatchError

        model = modellib.MaskRCNN(mode="training", config=config, model_dir=LOGS_DIR)

        if WEIGHTS == "coco" and COCO_WEIGHTS_PATH:
            utils.download_trained_weights(COCO_WEIGHTS_PATH)
            weights_path, exclude = COCO_WEIGHTS_PATH, modellib.CLASS_SPECIFIC_LAYERS
        else:
            weights_path, exclude, about = workflow.resolve_weights(WEIGHTS, config, LOGS_DIR)
            print("Starting from", about)
        if weights_path:
            try:
                model.load_weights(weights_path, by_name=True, exclude=exclude)
            except WeightsMismatchError as error:
                # A checkpoint trained on other classes: keep all but the class-specific layers.
                print(f"{error}\\nLoading again without {modellib.CLASS_SPECIFIC_LAYERS}")
                model.load_weights(weights_path, by_name=True,
                                   exclude=modellib.CLASS_SPECIFIC_LAYERS)
        # A fresh run folder with epochs counted from 0, even when WEIGHTS is one of our
        # checkpoints; create_log_dir never shares a folder with another run.
        model.set_log_dir()
        print("Checkpoints and logs go to", model.create_log_dir())
        """),
    _md("""
        ## 5. Stage 1: train the heads

        Only the region proposal network, the feature pyramid and the Mask R-CNN heads learn; the
        pretrained backbone is frozen, so the new heads cannot disturb it while they are still
        random. An epoch is `STEPS_PER_EPOCH` batches; after each one the validation loss is
        computed over `VALIDATION_STEPS` batches, a checkpoint is written, and the one with the
        lowest validation loss is marked as the best (`mask_rcnn_facemask_best.h5`).
        """),
    _code("stage1", """
        augmentation = workflow.flip_augmentation(AUGMENT)  # masks are flipped with the image

        history = model.train(dataset_train, dataset_val, learning_rate=STAGE1_LR,
                              epochs=STAGE1_EPOCHS, layers=STAGE1_LAYERS,
                              augmentation=augmentation)
        RUN_DIR = model.log_dir
        """),
    _md("""
        ## 6. Stage 2: fine-tune all layers

        Stage 2 starts from the best stage-1 checkpoint (`find_best()`), not simply the last one,
        and trains every layer with a learning rate 100 times lower, so the pretrained backbone is
        only nudged. It continues in the same run folder: epochs, checkpoints and `history.csv`
        go on where stage 1 stopped, and the best checkpoint is then the best of both stages.
        """),
    _code("stage2-start", """
        stage1_best = model.find_best()
        _, stage1_best_record = workflow.best_checkpoint(RUN_DIR)
        print(f"Best stage-1 checkpoint: epoch {stage1_best_record['epoch']} "
              f"({stage1_best_record['metric']} {stage1_best_record['value']:.4f}), {stage1_best}")
        model.load_weights(stage1_best, by_name=True)
        # Loading our checkpoint continues its run; go on after its last epoch, so stage 2 never
        # overwrites a stage-1 checkpoint (as mrcnn.workflow.train_stages does between stages).
        workflow.runs.after_last_checkpoint(model)
        assert model.log_dir == RUN_DIR, (model.log_dir, RUN_DIR)
        stage1_epochs_done = model.epoch
        """),
    _code("stage2", """
        history = model.train(dataset_train, dataset_val, learning_rate=STAGE2_LR,
                              epochs=model.epoch + STAGE2_EPOCHS, layers=STAGE2_LAYERS,
                              augmentation=augmentation)
        """),
    _md("""
        ## 7. Training curves

        Every epoch of both stages is a row of `history.csv` in the run folder (TensorBoard logs
        are there too: `%load_ext tensorboard` then `%tensorboard --logdir $LOGS_DIR`). The dotted
        line marks the start of stage 2. The validation loss usually flattens first: when it
        rises while the training loss keeps falling, the model is overfitting.
        """),
    _code("history", """
        history_csv = os.path.join(RUN_DIR, "history.csv")
        LOSSES = ["loss", "rpn_class_loss", "rpn_bbox_loss", "mrcnn_class_loss", "mrcnn_bbox_loss",
                  "mrcnn_mask_loss"]
        fig, axes = plt.subplots(2, 3, figsize=(15, 8))
        visualize.plot_history(history_csv, metrics=LOSSES, ax=axes.ravel())
        for ax in axes.ravel():
            ax.axvline(stage1_epochs_done + 0.5, color="gray", linestyle=":")
        fig.tight_layout()
        visualize.save_figure(fig, os.path.join(RUN_DIR, "training_curves.png"))
        plt.show()
        """),
    _md("""
        ## 8. Evaluate

        An inference model loads the best checkpoint of the run and detects objects in every
        validation image (at its original size). The scores:

        - **mAP@0.5**: Matterport's mean average precision, a detection counting as correct when
          its mask overlaps a ground-truth mask of the same class by at least 50% (IoU ≥ 0.5);
        - **mAP@0.5:0.95**: the same averaged over IoU thresholds 0.50, 0.55, ..., 0.95, which
          rewards precise masks;
        - **COCO AP** (bbox and segm): pycocotools' official metric over 0.50:0.95, for boxes and
          for masks.

        Only detections scoring at least `DETECTION_MIN_CONFIDENCE` are counted; lower it (say to
        0.05) for AP figures comparable with published ones.
        """),
    _code("evaluate", """
        class InferenceConfig(FaceMaskConfig):
            GPU_COUNT = 1
            IMAGES_PER_GPU = 1
            DETECTION_MIN_CONFIDENCE = DETECTION_MIN_CONFIDENCE  # the settings cell's value


        inference_model = modellib.MaskRCNN(mode="inference", config=InferenceConfig(),
                                            model_dir=LOGS_DIR)
        best_path = inference_model.find_best()
        inference_model.load_weights(best_path, by_name=True)

        # The per-image table and figures of `mrcnn evaluate`; all of them go to metrics.json.
        evaluation = workflow.evaluate_model(inference_model, dataset_val, limit=EVAL_LIMIT)
        print(workflow.format_results(evaluation), end="\\n\\n")
        workflow.write_metrics(evaluation, os.path.join(RUN_DIR, "metrics.json"))
        metrics = {
            "weights": best_path,
            "images": evaluation["num_images"],
            "mAP@0.5": evaluation["mAP@0.5"],
            "mAP@0.5:0.95": evaluation["mAP@0.5:0.95"],
            "COCO AP bbox": evaluation["coco"]["bbox"],
            "COCO AP segm": evaluation["coco"]["segm"],
        }
        with open(os.path.join(RUN_DIR, "evaluation.json"), "w") as f:
            json.dump(metrics, f, indent=2)
        print(f"{metrics['images']} validation images, weights {best_path}")
        for name in ("mAP@0.5", "mAP@0.5:0.95", "COCO AP bbox", "COCO AP segm"):
            print(f"  {name:14} {metrics[name]:.3f}")
        """),
    _md("""
        ## 9. Detections

        Ground truth (left) and the model's detections (right) on validation images: each
        instance gets a colour, its mask, a dashed box and its class with the score.
        """),
    _code("detections", """
        for image_id in dataset_val.image_ids[:SHOW_IMAGES]:
            image = dataset_val.load_image(image_id)
            gt_masks, gt_class_ids = dataset_val.load_mask(image_id)
            r = inference_model.detect([image])[0]
            fig, (ax_gt, ax_pred) = plt.subplots(1, 2, figsize=(16, 8))
            visualize.display_instances(image, utils.extract_bboxes(gt_masks), gt_masks,
                                        gt_class_ids, dataset_val.class_names, ax=ax_gt,
                                        title="ground truth")
            visualize.display_instances(image, r["rois"], r["masks"], r["class_ids"],
                                        dataset_val.class_names, r["scores"], ax=ax_pred,
                                        title=f"{len(r['class_ids'])} detections")
            plt.show()
        """),
    _md("""
        ## 10. Keep the model

        The best checkpoint is the file to keep. Colab's disk is wiped with the runtime: copy it
        to Drive (or set `LOGS_DIR` on Drive from the start). To detect face masks in new photos
        with it, in Python:

        ```python
        model = modellib.MaskRCNN(mode="inference", config=InferenceConfig(), model_dir=LOGS_DIR)
        model.load_weights("mask_rcnn_facemask_best.h5", by_name=True)
        r = model.detect([image])[0]  # rois, class_ids, scores, masks
        ```

        or from a shell, with the `mrcnn` command (an annotated PNG and a JSON with RLE masks per
        photo): `mrcnn detect --weights mask_rcnn_facemask_best.h5 --image photos/`, with the
        run's `settings.json` beside the checkpoint (else add `--class-names` and `--preset`).
        """),
    _code("summary", """
        print("Run folder:     ", RUN_DIR)
        print("Best checkpoint:", best_path)
        print("History:        ", history_csv)
        """),
]


def build_notebook():
    """The notebook as an ``nbformat`` node: outputs empty, cell ids fixed (stable diffs)."""
    cells = []
    for index, (kind, tag, text) in enumerate(CELLS):
        source = textwrap.dedent(text).strip("\n")
        cell_id = f"{index:02d}-{tag or 'text'}"
        if kind == "markdown":
            cells.append(nbformat.v4.new_markdown_cell(source, id=cell_id))
        else:
            cells.append(nbformat.v4.new_code_cell(source, id=cell_id,
                                                   metadata={"tags": [tag]}))
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata = {
        "accelerator": "GPU",  # Colab opens the notebook on a GPU runtime
        "colab": {"provenance": [], "gpuType": "T4"},
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    nbformat.validate(nb)
    return nb


def notebook_text():
    """The ``.ipynb`` file content written by :func:`main`."""
    return nbformat.writes(build_notebook()) + "\n"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    path = argv[0] if argv else NOTEBOOK_PATH
    with open(path, "w", encoding="utf-8") as f:
        f.write(notebook_text())
    print("wrote", path)


if __name__ == "__main__":
    main()
