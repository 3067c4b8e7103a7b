"""The ``mrcnn`` command: train, evaluate, detect, anchors, demo and export, on any VIA or COCO data
set.

::

    mrcnn demo                                   # the whole job on generated data, CPU, minutes
    mrcnn train    --data DIR --classes balloon --weights coco   # VIA: DIR/train, DIR/val
    mrcnn evaluate                               # the best checkpoint of the latest run in logs/
    mrcnn detect   --image photos/ --output detections/
    mrcnn export   --output exported/                # a SavedModel of the best checkpoint
    mrcnn export   --output model.tflite --tflite    # ... or a TFLite file

``train`` saves its settings (data set, classes, preset, overrides, stages) in the run
directory's ``settings.json``; ``evaluate``, ``detect`` and ``anchors`` read them back, so no
option is repeated. ``mrcnn COMMAND --help`` lists each command's options. `main` runs it from
Python (``main(["evaluate", "--logs", "out/demo/logs"])``) and returns the exit status.
"""

import argparse
import json
import logging
import os
import shlex
import sys
import time

from mrcnn.workflow.errors import WorkflowError, user_error_types
from mrcnn.workflow.presets import PRESETS

_DEMO_OUTPUT = os.path.join("out", "demo")


def _csv(kind=str):
    def parse(text):
        try:
            return [kind(v.strip()) for v in str(text).split(",") if v.strip()]
        except ValueError as e:
            raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") \
                from e
    return parse


def _setting(text):
    """``KEY=VALUE`` of ``--set``; the value is read as JSON when it parses (numbers, lists,
    true/false/null), as Python's True/False/None when spelt so (``--set XLA=False``), else kept
    as a string."""
    key, sep, value = str(text).partition("=")
    if not sep or not key.strip().isupper():
        raise argparse.ArgumentTypeError(f"expected SETTING=VALUE with a Config setting in "
                                         f"capitals (e.g. IMAGE_MAX_DIM=512), got {text!r}")
    python_words = {"True": True, "False": False, "None": None}
    word = value.strip()
    if word in python_words:
        return key.strip(), python_words[word]
    try:
        return key.strip(), json.loads(value)
    except ValueError:
        return key.strip(), value


# ------------------------------------------------------------------------------- parsers

def _data_options():
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("data set")
    g.add_argument("--data", "--dataset", dest="dataset", metavar="DIR",
                   help="data set root: VIA: DIR/train/via_region_data.json + images, DIR/val/..."
                        "; COCO: DIR/annotations/instances_train.json + DIR/train/ (val alike)"
                        ". Default (evaluate, anchors): the data set of the run")
    g.add_argument("--format", choices=("via", "coco"),
                   help="annotation format (default: via, or the run's)")
    g.add_argument("--classes", type=_csv(), metavar="A,B,..",
                   help="VIA: the one class of every region (e.g. mask), or with "
                        "--class-attribute the class names in id order; COCO: the categories "
                        "to keep (default: all)")
    g.add_argument("--class-attribute", metavar="ATTR",
                   help="VIA region attribute naming each region's class (e.g. mask_type)")
    g.add_argument("--annotation-file", metavar="NAME",
                   help="JSON file name in each subset folder (VIA default "
                        "via_region_data.json; COCO: instead of annotations/instances_*.json)")
    g.add_argument("--year", metavar="Y",
                   help="COCO: read annotations/instances_<subset>Y.json and <subset>Y/")
    return p


def _model_options():
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("model configuration")
    g.add_argument("--preset", choices=sorted(PRESETS),
                   help="settings group: standard (ResNet-101, 1024 px: for COCO weights on a "
                        "GPU; train's default), light (ResNet-18, 128 px, from scratch on a "
                        "CPU: the demo's), tiny (smoke tests). Other commands default to the "
                        "run's")
    g.add_argument("--backbone", choices=("resnet18", "resnet50", "resnet101"), help="BACKBONE")
    g.add_argument("--image-size", type=int, metavar="PX",
                   help="IMAGE_MIN_DIM and IMAGE_MAX_DIM (a multiple of 64)")
    g.add_argument("--anchor-scales", type=_csv(float), metavar="S1,..,S5",
                   help="RPN_ANCHOR_SCALES, one per pyramid level (see mrcnn anchors)")
    g.add_argument("--anchor-ratios", type=_csv(float), metavar="R1,..",
                   help="RPN_ANCHOR_RATIOS (width/height)")
    g.add_argument("--set", type=_setting, action="append", default=[], metavar="KEY=VALUE",
                   help="any Config setting, e.g. --set DETECTION_MAX_INSTANCES=50 (repeatable)")
    return p


def _run_options(weights_help):
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("weights and runs")
    g.add_argument("--weights", metavar="W", help=weights_help)
    g.add_argument("--logs", metavar="DIR",
                   help="folder of the training run directories (default: logs; the demo "
                        "writes OUTPUT/logs, e.g. out/demo/logs)")
    return p


TRAINED = ("trained weights: best (the default: best checkpoint of the latest run in --logs), "
           "last, a run directory or a .h5 path")


def build_parser(prog="mrcnn", argv=None):
    """The argparse parser of the command line (see the module docstring).

    ``export``'s options come from `mrcnn.export`, which imports TensorFlow: they are added only
    when ``argv`` asks for that command, so the other commands' help stays quick."""
    data_opt = _data_options()
    model_opt = _model_options()
    parser = argparse.ArgumentParser(
        prog=prog, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Mask R-CNN on your own VIA or COCO data set: train, evaluate, detect, "
                    "anchors, demo.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub.add_parser(
        "train", parents=[data_opt, model_opt, _run_options(
            "initial weights: coco (downloaded once into ~/.mrcnn; class-specific layers are "
            "re-initialised unless there are 80 classes), imagenet, last (resume the latest "
            "run), best, none (from scratch) or a .h5 path. Required for stage 1; with --stage "
            "2 alone the default is the best checkpoint of the latest run")],
        help="staged training: heads, then all layers from the best checkpoint",
        description="Stage 1 trains --stage1-layers (heads) at --stage1-lr (1e-3); stage 2 "
                    "trains --stage2-layers (all) at --stage2-lr (1e-5) from the best stage-1 "
                    "checkpoint by validation loss. Both write into one run directory with "
                    "continuous epoch numbers and its settings.json. A --config JSON file may "
                    "hold any of the settings (and a stage list of any length); flags win.")
    t.add_argument("--config", metavar="FILE.json",
                   help="settings file: {\"dataset\", \"format\", \"classes\", "
                        "\"class_attribute\", \"preset\", \"overrides\": {SETTING: value}, "
                        "\"weights\", \"stages\": [{\"layers\", \"learning_rate\", \"epochs\"}, "
                        "...], ...}; a run's settings.json works too")
    t.add_argument("--name", help="configuration NAME: run directories and checkpoint names "
                                  "(default: from the data set folder's name)")
    t.add_argument("--stage", default="all", metavar="N",
                   help="which stage(s) to run: 1, 2, ... or all (default; 'both' works too)")
    for n, (layers, lr) in ((1, ("heads", "1e-3")), (2, ("all", "1e-5"))):
        t.add_argument(f"--stage{n}-epochs", type=int, metavar="N",
                       help=f"epochs of stage {n} (default: 20)")
        t.add_argument(f"--stage{n}-layers",
                       help=f"layers of stage {n}: heads, 3+, 4+, 5+, all or a regex "
                            f"(default: {layers})")
        t.add_argument(f"--stage{n}-lr", type=float, metavar="LR",
                       help=f"learning rate of stage {n} (default: {lr})")
    t.add_argument("--steps-per-epoch", type=int, metavar="N", help="STEPS_PER_EPOCH")
    t.add_argument("--validation-steps", type=int, metavar="N", help="VALIDATION_STEPS")
    t.add_argument("--images-per-gpu", type=int, metavar="N", help="IMAGES_PER_GPU")
    t.add_argument("--augment", action="store_true", default=None,
                   help="random left-right flips (albumentations or imgaug)")
    t.add_argument("--max-minutes", type=float, metavar="M",
                   help="stop training after M minutes (the epoch under way is validated and "
                        "checkpointed; stages not started are skipped)")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", parents=[data_opt, model_opt, _run_options(TRAINED)],
                       help="mAP@0.5, mAP@0.5:0.95 and COCO AP on the validation images",
                       description="Per-image table, Matterport-style mask mAP@0.5 and "
                                   "mAP@0.5:0.95, and COCO AP (bbox and segm, pycocotools). The "
                                   "data set, classes and model come from the run's "
                                   "settings.json.")
    e.add_argument("--subset", default="val", help="subset folder (default: val)")
    e.add_argument("--limit", type=int, metavar="N", help="only the first N images")
    e.add_argument("--min-confidence", type=float, metavar="P",
                   help="DETECTION_MIN_CONFIDENCE (default: the run's)")
    e.add_argument("--output", metavar="FILE.json", help="also write the figures as JSON")
    e.set_defaults(func=cmd_evaluate)

    d = sub.add_parser("detect", parents=[model_opt, _run_options(TRAINED)],
                       help="annotated PNG and JSON of detections per image",
                       description="For each image writes NAME.png (masks, boxes, classes, "
                                   "scores) and NAME.json: {image, height, width, weights, "
                                   "class_names, min_confidence, detections: [{class_id, "
                                   "class_name, score, box [y1, x1, y2, x2] (pixels, y2/x2 one "
                                   "past), bbox [x, y, w, h], area, segmentation (COCO RLE; "
                                   "pycocotools.mask.decode)}]}.")
    d.add_argument("--image", required=True, metavar="FILE_OR_DIR",
                   help="an image, or a folder whose images are all processed")
    d.add_argument("--output", default="detections", metavar="DIR",
                   help="output folder (default: detections)")
    d.add_argument("--min-confidence", type=float, metavar="P",
                   help="DETECTION_MIN_CONFIDENCE (default: the run's)")
    d.add_argument("--class-names", type=_csv(), metavar="A,B,..",
                   help="class names in id order when the weights have no settings.json")
    d.set_defaults(func=cmd_detect)

    a = sub.add_parser("anchors", parents=[data_opt, model_opt, _run_options(
                           "take the image size and preset from the run these weights belong "
                           "to (best, last, a run directory or a .h5 path)")],
                       help="k-means anchor scales and ratios for the training boxes",
                       description="Measures the training boxes in network-input pixels (after "
                                   "resize_image with the configuration's mode and "
                                   "dimensions), clusters their sizes and aspect ratios, and "
                                   "compares the mean best IoU with the suggested and the "
                                   "current anchors. The configuration is the latest run's in "
                                   "--logs on this data set (or --weights'), else the preset; "
                                   "the image size assumed is printed.")
    a.add_argument("--subset", default="train", help="subset folder (default: train)")
    a.add_argument("--num-ratios", type=int, default=3, metavar="K",
                   help="number of ratios to suggest (default: 3)")
    a.add_argument("--output", metavar="FILE.json", help="also write the figures as JSON")
    a.set_defaults(func=cmd_anchors)

    m = sub.add_parser("demo", help="the whole job on generated data, from scratch on the CPU",
                       description="Generates a small VIA data set of synthetic faces wearing "
                                   "masks, trains both stages from scratch with the light "
                                   "preset, evaluates (mAP, COCO AP), draws detections and "
                                   "training curves under --output, and prints the evaluate "
                                   "and detect commands that continue from it.")
    m.add_argument("--output", default=_DEMO_OUTPUT, metavar="DIR",
                   help=f"output folder (default: {_DEMO_OUTPUT})")
    m.add_argument("--fast", action="store_true",
                   help="fewer images and steps (a smoke run; detects less)")
    m.add_argument("--classes", choices=("mask", "types"), default="mask",
                   help="one class 'mask' (default) or the mask types N95/cloth/surgical")
    m.add_argument("--max-minutes", type=float, default=9.5, metavar="M",
                   help="stop training early so the whole demo ends within M minutes "
                        "(default: 9.5)")
    m.add_argument("--seed", type=int, default=0, help="data and initialisation seed")
    m.set_defaults(func=cmd_demo)

    x = sub.add_parser("export", help="a TensorFlow SavedModel that serves raw images, or a "
                                      "TFLite file",
                       description="Exports trained weights (best, last or a .h5 path; the "
                                   "run's settings.json gives the configuration and classes) as "
                                   "a SavedModel with detect() whole in the graph, or with "
                                   "--tflite as a TFLite file of builtin ops "
                                   "(see mrcnn.export).")
    if argv and "export" in argv[:1]:
        from mrcnn.export import command as export_command

        export_command.add_arguments(x)
        x.set_defaults(func=lambda args, defaults: export_command.run(args))

    # The top-level help lists every command's options, not just the command names.
    parser.epilog = ("commands and their options:\n\n"
                     + "\n\n".join("  " + p.format_usage().replace("usage: ", "", 1)
                                   .rstrip().replace("\n", "\n  ") for p in (t, e, d, a, m))
                     + f"\n\n  {prog} export --output DIR [--weights W] [--logs DIR] "
                       f"[--min-confidence P]"
                     + f"\n\nRun '{prog} COMMAND --help' for what each option does.")
    return parser


# ------------------------------------------------------------------------------- commands

def _overrides(args):
    """Configuration settings given on the command line."""
    out = {}
    for attr, key in (("backbone", "BACKBONE"), ("images_per_gpu", "IMAGES_PER_GPU"),
                      ("steps_per_epoch", "STEPS_PER_EPOCH"),
                      ("validation_steps", "VALIDATION_STEPS")):
        if getattr(args, attr, None) is not None:
            out[key] = getattr(args, attr)
    if getattr(args, "image_size", None):
        out["IMAGE_MIN_DIM"] = out["IMAGE_MAX_DIM"] = int(args.image_size)
    if getattr(args, "anchor_scales", None):
        out["RPN_ANCHOR_SCALES"] = tuple(args.anchor_scales)
    if getattr(args, "anchor_ratios", None):
        out["RPN_ANCHOR_RATIOS"] = list(args.anchor_ratios)
    out.update(dict(getattr(args, "set", None) or []))
    return out


def _data_settings(args):
    return {"dataset": args.dataset, "format": args.format, "classes": args.classes,
            "class_attribute": args.class_attribute,
            "annotation_file": args.annotation_file, "year": args.year}


def _stages_from_flags(stages, args):
    """The stage plan with the --stageN-* flags applied."""
    from mrcnn.workflow.stages import parse_stages

    stages = [s.to_dict() for s in parse_stages(stages)]
    for n in (1, 2):
        if n > len(stages):
            break
        for flag, key in (("epochs", "epochs"), ("layers", "layers"), ("lr", "learning_rate")):
            value = getattr(args, f"stage{n}_{flag}", None)
            if value is not None:
                stages[n - 1][key] = value
    return stages


def cmd_train(args, defaults):
    from mrcnn.workflow.settings import DEFAULTS, merge, read_config_file
    from mrcnn.workflow.train import run_training

    from_file = read_config_file(args.config) if args.config else {}
    flags = dict(_data_settings(args), name=args.name, preset=args.preset,
                 weights=args.weights, logs=args.logs, augment=args.augment,
                 overrides=_overrides(args))
    settings = merge(from_file, flags)
    settings["stages"] = _stages_from_flags(
        settings.get("stages") or defaults.get("stages") or DEFAULTS["stages"], args)
    stage = str(args.stage).lower()
    if stage in ("all", "both"):
        only = None
    elif stage.isdigit() and 1 <= int(stage) <= len(settings["stages"]):
        only = [int(stage)]
    else:
        raise WorkflowError(f"--stage {args.stage}: use all or a stage number from 1 to "
                            f"{len(settings['stages'])}")
    deadlines = None
    if args.max_minutes is not None:
        deadlines = [time.time() + 60.0 * args.max_minutes] * len(settings["stages"])
    result = run_training(settings, only=only, deadlines=deadlines, defaults=defaults)
    record = result["best_record"]
    about = f" ({record['checkpoint']}, {record['metric']} {record['value']:.4f})" if record else ""
    logs = settings.get("logs") or defaults.get("logs") or "logs"
    print(f"\nRun directory: {result['run_dir']}\nBest checkpoint: {result['best']}{about}\n"
          f"Next: {args.command_line} evaluate --logs {shlex.quote(logs)}\n"
          f"      {args.command_line} detect --logs {shlex.quote(logs)} --image PHOTOS "
          f"--output detections")
    return 0


def cmd_evaluate(args, defaults):
    from mrcnn.workflow.evaluate import evaluate, format_results, write_metrics

    data = _data_settings(args)
    result = evaluate(args.weights or "best", logs=args.logs or defaults.get("logs", "logs"),
                      data_dir=data.pop("dataset"), subset=args.subset, limit=args.limit,
                      preset=args.preset, overrides=_overrides(args),
                      min_confidence=args.min_confidence, data=data)
    print(f"Weights: {result['weights']}\nData set: {result['dataset']} ({result['subset']})")
    print(format_results(result))
    if args.output:
        write_metrics(result, args.output)
        print(f"Figures written to {args.output}")
    return 0


def cmd_detect(args, defaults):
    from mrcnn.workflow.detect_files import detect_images
    from mrcnn.workflow.inference import inference_model

    model, class_names, weights, _ = inference_model(
        args.weights or "best", args.logs or defaults.get("logs", "logs"), args.preset,
        _overrides(args), args.class_names, args.min_confidence)
    print(f"Weights: {weights}")
    written = detect_images(model, class_names, args.image, args.output, weights)
    print(f"{len(written)} image(s) done; pictures and JSON in {args.output}")
    return 0


def _anchor_run_settings(args, logs):
    """``(settings, description)`` of the run whose configuration ``anchors`` assumes."""
    from mrcnn.workflow.runs import (DEMO_LOGS, latest_run, list_runs, read_settings,
                                     trained_weights)

    if args.weights:
        path = trained_weights(args.weights, logs)
        return read_settings(path), f"the run of {path}"
    wanted = os.path.abspath(args.dataset) if args.dataset else None
    for folder in [logs] + ([] if args.logs else [DEMO_LOGS]):
        for run_dir in reversed(list_runs(folder)):
            saved = read_settings(run_dir)
            if saved and (wanted is None or saved.get("dataset") == wanted):
                return saved, f"the settings.json of the run {run_dir}"
    if args.logs and latest_run(logs) is None:
        raise WorkflowError(f"--logs {logs}: no training run there; drop --logs to use "
                            f"--preset, or pass the folder train wrote to")
    return {}, None


def cmd_anchors(args, defaults):
    from mrcnn.workflow.anchor_fit import fit_anchors, format_anchor_report
    from mrcnn.workflow.data import load_subset
    from mrcnn.workflow.presets import make_config
    from mrcnn.workflow.runs import jsonable, write_json

    logs = args.logs or defaults.get("logs", "logs")
    saved, source = _anchor_run_settings(args, logs)
    data = {k: v for k, v in _data_settings(args).items() if v is not None}
    spec = dict({k: saved.get(k) for k in ("dataset", "format", "annotation_file",
                                           "class_attribute", "classes", "year")}, **data)
    if not spec.get("dataset"):
        raise WorkflowError("anchors needs a data set: --data DIR (or --logs / --weights of a "
                            "run trained on it)")
    if not spec.get("class_attribute"):
        spec["classes"] = spec.get("classes") or defaults.get("classes")
    dataset, names = load_subset(spec["dataset"], args.subset, spec.get("format") or "via",
                                 spec.get("annotation_file"), spec.get("class_attribute"),
                                 spec.get("classes"), spec.get("year") or "")
    preset = args.preset or saved.get("preset") or "standard"
    overrides = dict(saved.get("overrides") or {}, **_overrides(args))
    config = make_config(preset, overrides, names)
    if args.preset or not source:
        source = (f"preset {preset!r}" + ("" if args.preset else
                                          " (the default: no run on this data set in "
                                          f"{os.path.abspath(logs)})"))
    else:
        source += f" (preset {preset!r})"
    fit = fit_anchors(dataset, config, num_ratios=args.num_ratios)
    print(format_anchor_report(fit, config, os.path.join(spec["dataset"], args.subset), source))
    if args.output:
        write_json(args.output, jsonable(dict(fit, assumed=source)))
    return 0


def cmd_demo(args, defaults):
    from mrcnn.workflow.demo import run_demo

    run_demo(args.output, fast=args.fast, classes=args.classes, max_minutes=args.max_minutes,
             seed=args.seed, command=args.command_line)
    return 0


def main(argv=None, prog="mrcnn", defaults=None, command_line=None):
    """Run the command line; returns the exit status (0 success, 1 a reported error).

    ``defaults``: train settings used when neither flags nor ``--config`` give them (a sample
    sets its NAME and classes here); ``prog``: the command name printed in help and errors;
    ``command_line``: how to run it, in the next-step lines printed (default ``prog``).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(prog, argv).parse_args(argv)
    args.prog, args.command_line = prog, command_line or prog
    try:
        return args.func(args, dict(defaults or {}))
    except user_error_types() as e:
        print(f"{prog} {args.command}: error: {e}", file=sys.stderr)
        return 1


def run():
    """Entry point of the ``mrcnn`` console script and ``python -m mrcnn``."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sys.exit(main())


if __name__ == "__main__":
    run()
