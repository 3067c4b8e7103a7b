"""A healthy run prints no TensorFlow line that reads like an error (issue 12 point 5).

Each check runs a fresh interpreter, as a user would, without the test suite's own
TF_CPP_MIN_LOG_LEVEL, and looks at stderr for lines beginning ``E0000`` or ``W0000`` (the
prefix of TensorFlow's C++ ERROR and WARNING lines).
"""

import os
import re
import subprocess
import sys
import textwrap

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOISE = re.compile(r"^[EW]0000 ", re.MULTILINE)
# TensorFlow before 2.21 prints Grappler's cost-model warning for a CropAndResize whose shapes are
# partly unknown (ROI align, mask targets) whatever TF_CPP_MIN_LOG_LEVEL says; 2.21 honours the
# level. Known and harmless on those versions, so only that line is let through there.
OLD_TF_GRAPPLER_LINE = re.compile(
    r"^W0000 .*op_level_cost_estimator\.cc:\d+\] Error in PredictCost\(\) for the op: .*"
    r'op: "CropAndResize"')


def noise_lines(stderr):
    """The ERROR and WARNING lines of ``stderr`` that a healthy run must not print."""
    import tensorflow as tf

    old = tuple(int(v) for v in tf.__version__.split(".")[:2]) < (2, 21)
    return [line for line in stderr.splitlines()
            if NOISE.match(line) and not (old and OLD_TF_GRAPPLER_LINE.match(line))]

TRAIN = textwrap.dedent("""
    import sys
    import mrcnn.model as modellib  # first, as a user would (tests/conftest.py sets a log level)
    from mrcnn.config import Config
    from mrcnn.datasets.synthetic import SyntheticShapesDataset

    class Cfg(Config):  # tests/conftest.py's TinyConfig, one step per epoch
        NAME = "tiny"
        BACKBONE = "resnet18"
        IMAGES_PER_GPU = 2
        NUM_CLASSES = 1 + 3
        IMAGE_MIN_DIM = IMAGE_MAX_DIM = 128
        RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
        TOP_DOWN_PYRAMID_SIZE = 32
        FPN_CLASSIF_FC_LAYERS_SIZE = 64
        RPN_TRAIN_ANCHORS_PER_IMAGE = 64
        PRE_NMS_LIMIT = 600
        POST_NMS_ROIS_TRAINING = 100
        POST_NMS_ROIS_INFERENCE = 50
        TRAIN_ROIS_PER_IMAGE = 32
        MAX_GT_INSTANCES = 8
        MINI_MASK_SHAPE = (28, 28)
        STEPS_PER_EPOCH = 1
        VALIDATION_STEPS = 1

    def shapes(count, seed):
        d = SyntheticShapesDataset()
        d.load_shapes(count, 128, 128, seed=seed, max_shapes=3)
        d.prepare()
        return d

    model = modellib.MaskRCNN("training", Cfg(), model_dir=sys.argv[1])
    model.train(shapes(2, 1), shapes(2, 2), learning_rate=0.001, epochs=1, layers="all")
    print("trained")

    class InferenceCfg(Cfg):  # and detection, as the demo does next
        IMAGES_PER_GPU = 1
        DETECTION_MIN_CONFIDENCE = 0.0

    detector = modellib.MaskRCNN("inference", InferenceCfg(), model_dir=sys.argv[1])
    detector.load_weights(model.find_last(), by_name=True)
    image = shapes(1, 3).load_image(0)
    print("detected", len(detector.detect([image])[0]["rois"]))
""")


def run_python(code, *args, **env):
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TF_CPP_")}
    environ.update(env)
    return subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, env=environ,
                          capture_output=True, text=True, timeout=600)


def test_import_prints_no_error_or_warning_lines():
    proc = run_python("import mrcnn.model")
    assert proc.returncode == 0, proc.stderr
    assert not noise_lines(proc.stderr), proc.stderr


def test_short_training_and_detection_print_no_error_or_warning_lines(tmp_path):
    """Covers the GPU probe (``failed call to cuInit`` on a machine without a driver) and the
    oneDNN ``DT_BOOL`` line a bool tensor through Transpose used to print on every CPU."""
    proc = run_python(TRAIN, str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "trained" in proc.stdout and "detected" in proc.stdout
    assert not noise_lines(proc.stderr), "\n".join(noise_lines(proc.stderr))
    assert "DT_BOOL" not in proc.stderr


def test_users_own_log_level_is_kept():
    code = "import os, mrcnn; print(os.environ['TF_CPP_MIN_LOG_LEVEL'])"
    assert run_python(code, TF_CPP_MIN_LOG_LEVEL="0").stdout.strip() == "0"
    assert run_python(code).stdout.strip() in {"2", "3"}
