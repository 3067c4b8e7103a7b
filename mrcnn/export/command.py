"""``mrcnn export`` / ``python -m mrcnn.export``: trained weights to a SavedModel or a TFLite file.

::

    mrcnn export --weights best --logs logs --output exported/            # a SavedModel
    mrcnn export --weights best --logs logs --output model.tflite --tflite
    mrcnn export --output model_fp16.tflite --tflite --quantize float16
"""

import argparse
import os
import sys
import time

__all__ = ["export_trained", "add_arguments", "run", "main"]


def export_trained(weights="best", logs="logs", output="exported", min_confidence=None,
                   tflite=False, quantize=None):
    """Export trained weights with the configuration and classes of their run.

    weights: a .h5 path, ``best`` or ``last`` (latest run in ``logs``); the run's
    ``settings.json`` (written by ``mrcnn train``) gives the configuration and class names.
    tflite: write a ``.tflite`` file (and its ``.json``) at ``output`` instead of a SavedModel
    directory; the model is built in float32 whatever precision it was trained in.
    quantize: with ``tflite``, ``"float16"`` or ``"dynamic-int8"`` (`mrcnn.export.tflite`).
    Returns ``(output, seconds taken)``.
    """
    from mrcnn.workflow.inference import inference_model
    if quantize is not None and not tflite:
        from mrcnn.workflow.errors import WorkflowError
        raise WorkflowError("--quantize %s applies to TFLite files only; add --tflite"
                            % (quantize,))
    if tflite:
        from mrcnn.export.tflite import check_quantize
        quantize = check_quantize(quantize)   # before the model is built, not after
    overrides = {"PRECISION": "float32"} if tflite else None
    model, class_names, _, _ = inference_model(weights, logs, overrides=overrides,
                                               min_confidence=min_confidence)
    start = time.perf_counter()
    model.export(output, class_names, format="tflite" if tflite else "tf_saved_model",
                 quantize=quantize)
    return output, time.perf_counter() - start


def add_arguments(parser):
    """The export options, shared by ``mrcnn export`` and ``python -m mrcnn.export``."""
    from mrcnn.export.tflite import QUANTIZATIONS
    parser.add_argument("--weights", default="best",
                        help="a .h5 file, or best / last of the latest run in --logs "
                             "(default: best)")
    parser.add_argument("--logs", default="logs", help="where training runs are (default: logs)")
    parser.add_argument("--output", required=True,
                        help="SavedModel directory to write, or the .tflite file (a name "
                             "ending in .tflite implies --tflite)")
    parser.add_argument("--tflite", action="store_true",
                        help="write a TFLite file (builtin ops only) and its .json instead of a "
                             "SavedModel; run it with mrcnn.export.TFLiteDetector")
    parser.add_argument("--quantize", choices=QUANTIZATIONS,
                        help="with --tflite: store the weights as float16 (half the file) or "
                             "int8 with dynamic-range quantization (about a quarter); default "
                             "float32")
    parser.add_argument("--min-confidence", type=float,
                        help="DETECTION_MIN_CONFIDENCE of the exported model (default: the "
                             "run's)")
    return parser


def run(args):
    """Carry out parsed export arguments; prints where the model went."""
    # As MaskRCNN.export does: a .tflite output is a TFLite file, not a directory of that name.
    args.tflite = args.tflite or args.output.lower().endswith(".tflite")
    output, seconds = export_trained(args.weights, args.logs, args.output, args.min_confidence,
                                     tflite=args.tflite, quantize=args.quantize)
    if args.tflite:
        print("TFLite model (%s, %.1f MB) written to %s (metadata %s.json) in %.1f s; run it "
              "with mrcnn.export.TFLiteDetector(%r).detect([image]) or any TFLite interpreter "
              "(inputs: molded image, image_meta)"
              % (args.quantize or "float32", os.path.getsize(output) / 1e6, output, output,
                 seconds, output))
    else:
        print("SavedModel written to %s in %.1f s; serve it with TF Serving or load it with "
              "tf.saved_model.load (signature serving_default: uint8 image [H, W, 3])"
              % (output, seconds))
    return 0


def main(argv=None):
    """``python -m mrcnn.export``."""
    parser = add_arguments(argparse.ArgumentParser(
        prog="python -m mrcnn.export",
        description="Export trained weights as a SavedModel that serves raw uint8 images, or "
                    "as a TFLite file."))
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
