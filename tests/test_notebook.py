"""notebooks/facemask_colab.ipynb: in sync with its generator, and run headless end to end.

The notebook runs in a Jupyter kernel (nbclient, kernel "python3" of this interpreter) with its
parameters overridden papermill-style by a cell inserted after the "parameters" cell: generated
data, random weights, ResNet-18 at 128 px, one epoch of two steps per stage.
"""

import ast
import importlib.util
import json
import os
import re
import sys
import zipfile

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from conftest import TinyConfig

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(REPO, "notebooks", "facemask_colab.ipynb")
pytestmark = pytest.mark.repository
GENERATOR = os.path.join(REPO, "notebooks", "make_facemask_colab.py")

# TinyConfig's model sizes (tests/conftest.py), passed through the notebook's CONFIG_OVERRIDES.
TINY_OVERRIDES = {name: getattr(TinyConfig, name) for name in (
    "RPN_ANCHOR_SCALES", "TOP_DOWN_PYRAMID_SIZE", "FPN_CLASSIF_FC_LAYERS_SIZE",
    "RPN_TRAIN_ANCHORS_PER_IMAGE", "PRE_NMS_LIMIT", "POST_NMS_ROIS_TRAINING",
    "POST_NMS_ROIS_INFERENCE", "TRAIN_ROIS_PER_IMAGE", "MAX_GT_INSTANCES", "MINI_MASK_SHAPE",
    "DETECTION_MAX_INSTANCES")}


def read_notebook():
    return nbformat.read(NOTEBOOK, as_version=4)


def tagged(nb, tag):
    """Index of the one cell carrying ``tag``."""
    found = [i for i, c in enumerate(nb.cells) if tag in c.get("metadata", {}).get("tags", [])]
    assert len(found) == 1, f"expected one cell tagged {tag!r}, found {len(found)}"
    return found[0]


def parameter_names(nb):
    tree = ast.parse(nb.cells[tagged(nb, "parameters")].source)
    return {t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets}


def with_parameters(nb, **params):
    """Insert a cell assigning ``params`` after the parameters cell (papermill's convention)."""
    unknown = set(params) - parameter_names(nb)
    assert not unknown, f"not settings of the notebook: {sorted(unknown)}"
    source = "\n".join(f"{name} = {value!r}" for name, value in params.items())
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
    nb.cells.insert(tagged(nb, "parameters") + 1, cell)
    return nb


def kernel_env(extra=None):
    extra = dict(extra or {})
    env = dict(os.environ)
    # conftest sets MPLBACKEND=Agg for this process; the kernel must use the inline backend so
    # that figures become image outputs (it needs no display either).
    env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    # The kernel must import the mrcnn these tests import: this checkout's, or the installed
    # wheel where the suite runs without the source tree (.ci/run).
    paths = [REPO, extra.pop("PYTHONPATH", None), env.get("PYTHONPATH")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env.update(extra)
    return env


def execute(nb, cwd, timeout=600, extra_env=None):
    """Run every cell in a fresh python3 kernel started from this interpreter (jupyter_client
    swaps the kernelspec's "python" for sys.executable); raises CellExecutionError on an error."""
    client = NotebookClient(nb, kernel_name="python3", timeout=timeout,
                            resources={"metadata": {"path": str(cwd)}})
    client.execute(env=kernel_env(extra_env))
    return nb


def outputs(cell, output_type=None):
    return [o for o in cell.get("outputs", []) if output_type in (None, o["output_type"])]


def stdout(cell):
    return "".join(o.get("text", "") for o in outputs(cell, "stream") if o["name"] == "stdout")


def images(cell):
    return [o for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]


def load_generator():
    spec = importlib.util.spec_from_file_location("make_facemask_colab", GENERATOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------------------------
# The committed file


def test_committed_notebook_matches_generator():
    with open(NOTEBOOK, encoding="utf-8") as f:
        committed = f.read()
    assert committed == load_generator().notebook_text(), (
        "notebooks/facemask_colab.ipynb is out of date: "
        "run python notebooks/make_facemask_colab.py")


def test_committed_notebook_is_clean_and_parametrised():
    nb = read_notebook()
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code)
    # papermill convention: the first code cell holds the parameters.
    assert code[0].metadata["tags"] == ["parameters"]
    names = parameter_names(nb)
    for knob in ("REPO_URL", "INSTALL", "DATA_SOURCE", "DATASET_DIR", "WEIGHTS", "IMAGE_SIZE",
                 "BACKBONE", "STAGE1_EPOCHS", "STAGE2_EPOCHS", "STEPS_PER_EPOCH",
                 "VALIDATION_STEPS", "LOGS_DIR", "CONFIG_OVERRIDES"):
        assert knob in names
    # The parameters cell holds only assignments of literals (papermill rewrites such cells).
    tree = ast.parse(code[0].source)
    for node in tree.body:
        assert isinstance(node, ast.Assign)
        ast.literal_eval(node.value)
    # Colab defaults: a GPU runtime, COCO weights, a big backbone.
    assert nb.metadata["accelerator"] == "GPU"
    defaults = {node.targets[0].id: ast.literal_eval(node.value) for node in tree.body}
    assert defaults["WEIGHTS"] == "coco" and defaults["BACKBONE"] in ("resnet50", "resnet101")
    assert 512 <= defaults["IMAGE_SIZE"] <= 1024 and defaults["INSTALL"] is True


# ---------------------------------------------------------------------------------------------
# Data sources without training (fast: the kernel never imports TensorFlow)

DATA_CELLS = ("parameters", "injected-parameters", "install", "data", "config")


def only(nb, tags):
    nb.cells = [c for c in nb.cells if c.cell_type == "code"
                and set(c.metadata.get("tags", [])) & set(tags)]
    return nb


def zip_dataset(tmp_path):
    """A zipped generated data set under a top folder, as zipping a folder gives."""
    from mrcnn.datasets.synthetic import write_via_dataset

    write_via_dataset(tmp_path / "made", n_train=3, n_val=2, image_size=(64, 64), seed=3)
    archive = tmp_path / "facemask.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for folder, _, files in os.walk(tmp_path / "made"):
            for name in files:
                path = os.path.join(folder, name)
                z.write(path, os.path.join("facemask", os.path.relpath(path, tmp_path / "made")))
        z.writestr("__MACOSX/facemask/._x", b"")  # macOS litter
    return archive


def check_data_cells(nb, root):
    data, config = nb.cells[DATA_CELLS.index("data")], nb.cells[DATA_CELLS.index("config")]
    assert f"Data set: {root}" in stdout(data)
    assert "train: 3 images" in stdout(config) and "val  : 2 images" in stdout(config)
    assert "NUM_CLASSES                    4" in stdout(config)
    assert len(images(config)) == 1  # the annotated training image


SMALL = dict(INSTALL=False, CLASS_NAMES=["N95", "cloth", "surgical"])


def test_data_from_a_local_zip(tmp_path):
    nb = with_parameters(read_notebook(), DATA_SOURCE="path",
                         DATASET_DIR=str(zip_dataset(tmp_path)), LOCAL_DATA_DIR=str(tmp_path / "local"), **SMALL)
    nb = execute(only(nb, DATA_CELLS), tmp_path)
    check_data_cells(nb, tmp_path / "local" / "facemask")
    # The Colab defaults make a valid configuration (no model is built here).
    printed = stdout(nb.cells[DATA_CELLS.index("config")])
    for line in ("BACKBONE                       resnet101",
                 "IMAGE_MAX_DIM                  1024", "TRAIN_BN                       False"):
        assert line in printed


# A stand-in for Colab's google.colab.drive and google.colab.files. "google" stays a namespace
# package (no __init__.py) so that google.protobuf still imports.
FAKE_COLAB = {
    "__init__.py": "",
    "drive.py": "import json, os\n"
                "def mount(path):\n"
                "    with open(os.environ['FAKE_COLAB_LOG'], 'a') as f:\n"
                "        f.write(json.dumps(['mount', path]) + '\\n')\n",
    "files.py": "import os\n"
                "def upload():\n"
                "    path = os.environ['FAKE_COLAB_UPLOAD']\n"
                "    with open(path, 'rb') as f:\n"
                "        return {os.path.basename(path): f.read()}\n",
}


@pytest.mark.parametrize("source", ["upload", "drive"])
def test_data_from_colab(tmp_path, source):
    package = tmp_path / "fake" / "google" / "colab"
    package.mkdir(parents=True)
    for name, text in FAKE_COLAB.items():
        (package / name).write_text(text)
    archive = zip_dataset(tmp_path)
    log = tmp_path / "colab.log"
    env = {"PYTHONPATH": str(tmp_path / "fake"), "FAKE_COLAB_LOG": str(log),
           "FAKE_COLAB_UPLOAD": str(archive)}
    if source == "upload":
        params = dict(DATA_SOURCE="upload", DATASET_DIR=str(tmp_path / "uploaded"))
        root = tmp_path / "uploaded" / "facemask"
    else:
        # A folder "on Drive": copied to local disk before use.
        params = dict(DATA_SOURCE="drive", DATASET_DIR=str(tmp_path / "made"),
                      DRIVE_MOUNT=str(tmp_path / "drive"), LOCAL_DATA_DIR=str(tmp_path / "local"))
        root = tmp_path / "local"
    nb = with_parameters(read_notebook(), **params, **SMALL)
    nb = execute(only(nb, DATA_CELLS), tmp_path, extra_env=env)
    check_data_cells(nb, root)
    if source == "drive":
        assert json.loads(log.read_text()) == ["mount", str(tmp_path / "drive")]
        assert (root / "train" / "via_region_data.json").is_file()


def test_unknown_data_source_is_named(tmp_path):
    nb = with_parameters(read_notebook(), INSTALL=False, DATA_SOURCE="dropbox")
    with pytest.raises(CellExecutionError, match="DATA_SOURCE = 'dropbox'"):
        execute(only(nb, DATA_CELLS), tmp_path)


# ---------------------------------------------------------------------------------------------
# End to end

# Inserted before the "stage2-start" cell: spoil every weight, so that the check after it can
# only pass if stage 2 really starts from the loaded stage-1 checkpoint.
PERTURB = """
for _w in model.keras_model.weights:
    _w.assign(_w + 1.0)
"""

# Inserted after "stage2-start": the model's weights equal those of the checkpoint that
# best.json named as stage 1's best (the numbered file, which stage 2 cannot overwrite).
CHECK_START = """
import h5py as _h5py, numpy as _np, os as _os
def _datasets(path):
    out = {}
    with _h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()])
                     if isinstance(obj, _h5py.Dataset) else None)
    return out
_saved = _os.path.join(LOGS_DIR, "stage2_start.h5")
model.save_weights(_saved)
_expected = _datasets(_os.path.join(RUN_DIR, stage1_best_record["checkpoint"]))
_actual = _datasets(_saved)
_os.remove(_saved)
STAGE2_START_CHECK = {"same_keys": sorted(_expected) == sorted(_actual),
                      "n_arrays": len(_expected),
                      "all_equal": all(_np.array_equal(_expected[k], _actual.get(k))
                                       for k in _expected),
                      "epoch": model.epoch}
"""

# Appended: what the kernel saw, for the assertions below.
REPORT = """
import json as _json, sys as _sys, matplotlib as _mpl, mrcnn as _mrcnn
print("REPORT " + _json.dumps({"mrcnn_file": _mrcnn.__file__, "backend": _mpl.get_backend(),
    "python": _sys.executable,
    "run_dir": RUN_DIR, "stage1_best": stage1_best, "stage1_best_record": stage1_best_record,
    "stage2_start": STAGE2_START_CHECK, "best_path": best_path, "metrics": metrics,
    "classes": list(CLASSES)}))
"""


def test_notebook_end_to_end(tmp_path):
    logs = tmp_path / "logs"
    nb = with_parameters(
        read_notebook(), INSTALL=False, DATA_SOURCE="generate", DATASET_DIR=str(tmp_path / "data"),
        GENERATE_TRAIN_IMAGES=4, GENERATE_VAL_IMAGES=2, GENERATE_IMAGE_SIZE=128, WEIGHTS="none",
        BACKBONE="resnet18", IMAGE_SIZE=128, IMAGES_PER_GPU=1, STAGE1_EPOCHS=1, STAGE2_EPOCHS=1,
        STEPS_PER_EPOCH=2, VALIDATION_STEPS=1, LOGS_DIR=str(logs), CONFIG_OVERRIDES=TINY_OVERRIDES,
        # An untrained model must still detect something for the drawings and COCO AP.
        DETECTION_MIN_CONFIDENCE=0.0, SHOW_IMAGES=2)
    start = tagged(nb, "stage2-start")
    nb.cells.insert(start + 1, nbformat.v4.new_code_cell(CHECK_START))
    nb.cells.insert(start, nbformat.v4.new_code_cell(PERTURB))
    nb.cells.append(nbformat.v4.new_code_cell(REPORT))
    execute(nb, tmp_path)

    for cell in nb.cells:
        assert not outputs(cell, "error"), cell.source
    report = json.loads(stdout(nb.cells[-1]).split("REPORT ", 1)[1])
    import mrcnn
    assert os.path.dirname(report["mrcnn_file"]) == os.path.dirname(mrcnn.__file__)
    assert os.path.realpath(report["python"]) == os.path.realpath(sys.executable)
    assert "inline" in report["backend"]
    assert report["classes"] == ["N95", "cloth", "surgical"]

    # One run folder holds both stages: epoch 1 (heads) and epoch 2 (all layers).
    run_dir = report["run_dir"]
    assert os.path.dirname(run_dir) == str(logs)
    assert [d for d in os.listdir(logs) if os.path.isdir(logs / d)] == [os.path.basename(run_dir)]
    files = set(os.listdir(run_dir))
    assert {"mask_rcnn_facemask_0001.h5", "mask_rcnn_facemask_0002.h5",
            "mask_rcnn_facemask_best.h5", "history.csv", "training_curves.png",
            "evaluation.json"} <= files
    with open(os.path.join(run_dir, "history.csv")) as f:
        rows = f.read().split()
    # Two epochs, one a row, numbered as the checkpoints are.
    assert rows[0].startswith("epoch,") and [r.split(",")[0] for r in rows[1:]] == ["1", "2"]

    # Stage 2 started from stage 1's best checkpoint, at the epoch where stage 1 stopped.
    assert report["stage1_best"] == os.path.join(run_dir, "mask_rcnn_facemask_best.h5")
    assert report["stage1_best_record"]["checkpoint"] == "mask_rcnn_facemask_0001.h5"
    check = report["stage2_start"]
    assert check["same_keys"] and check["all_equal"] and check["n_arrays"] > 50
    assert check["epoch"] == 1

    # Curves, evaluation figures and detections.
    assert len(images(nb.cells[tagged(nb, "history")])) == 1
    assert len(images(nb.cells[tagged(nb, "detections")])) == 2
    printed = stdout(nb.cells[tagged(nb, "evaluate")])
    for name in ("mAP@0.5", "mAP@0.5:0.95", "COCO AP bbox", "COCO AP segm"):
        match = re.search(rf"^\s*{re.escape(name)}\s+(\d\.\d{{3}})$", printed, re.M)
        assert match, f"{name} not printed in:\n{printed}"
        value = float(match.group(1))
        assert 0.0 <= value <= 1.0 and value == pytest.approx(report["metrics"][name], abs=5e-4)
    with open(os.path.join(run_dir, "evaluation.json")) as f:
        assert json.load(f) == report["metrics"]
    assert report["metrics"]["images"] == 2
    assert report["best_path"] == os.path.join(run_dir, "mask_rcnn_facemask_best.h5")
