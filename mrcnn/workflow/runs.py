"""Training run directories: checkpoints, the best one, ``settings.json``, and what a
``--weights`` value (``coco``, ``imagenet``, ``last``, ``best``, ``none`` or a path) means.

A run directory is ``LOGS/<name>YYYYMMDDTHHMM/`` (Matterport's layout) holding
``mask_rcnn_<name>_NNNN.h5`` per epoch, the best one by validation loss
(``mask_rcnn_<name>_best.h5``, recorded in ``best.json``), ``history.csv`` and
``settings.json``: the run's settings (data set, classes, preset, configuration overrides, stage
plan) and what each stage did, so that ``evaluate`` and ``detect`` rebuild the model the weights
were trained with and the user repeats no option.
"""

import json
import math
import os
import re

import numpy as np

from mrcnn.workflow.errors import WorkflowError

#: Written in each training run directory; read back by evaluate, detect and anchors.
SETTINGS_FILE = "settings.json"
#: Where ``mrcnn demo`` writes its runs by default (named in "nothing found" errors).
DEMO_LOGS = os.path.join("out", "demo", "logs")

_RUN_RE = re.compile(r"^(?P<name>[\w-]+?)(?P<stamp>\d{8}T\d{4})$")


def jsonable(value):
    """JSON-ready copy: tuples and arrays to lists, NumPy scalars to Python, NaN to None."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if not math.isfinite(float(value)) else float(value)
    return value


def write_json(path, data):
    """Write ``jsonable(data)`` to ``path`` atomically (creating its folder)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(jsonable(data), f, indent=2)
    os.replace(path + ".tmp", path)


def run_name_of(run_dir):
    """The configuration NAME of a run directory (``facemask`` of ``facemask20240101T1200``),
    or None for a folder that is not a run directory."""
    m = _RUN_RE.match(os.path.basename(os.path.normpath(str(run_dir))))
    return m.group("name") if m else None


def run_checkpoints(run_dir, name=None):
    """``[(epoch, path)]`` of the numbered checkpoints in a run directory, by epoch."""
    name = name or run_name_of(run_dir)
    pattern = re.compile(r"^mask_rcnn_%s_(\d{4})\.h5$"
                         % (re.escape(name.lower()) if name else r"[\w-]+"))
    found = []
    if os.path.isdir(run_dir):
        for f in os.listdir(run_dir):
            m = pattern.match(f)
            if m:
                found.append((int(m.group(1)), os.path.join(run_dir, f)))
    return sorted(found)


def best_checkpoint(run_dir, name=None):
    """The numbered checkpoint the trainer marked best (``best.json``) in ``run_dir``.

    Returns ``(path, record)`` where record is best.json's content (``checkpoint``, ``epoch``,
    ``metric``, ``value``), or ``(path of mask_rcnn_<name>_best.h5, None)`` without best.json.
    """
    name = (name or run_name_of(run_dir) or "mrcnn").lower()
    record_path = os.path.join(run_dir, "best.json")
    if os.path.isfile(record_path):
        try:
            with open(record_path) as f:
                record = json.load(f)
            path = os.path.join(run_dir, os.path.basename(str(record["checkpoint"])))
            if os.path.isfile(path):
                return path, record
        except (OSError, ValueError, KeyError, TypeError):
            pass  # unreadable: fall back on the best file itself
    path = os.path.join(run_dir, f"mask_rcnn_{name}_best.h5")
    if os.path.isfile(path):
        return path, None
    raise WorkflowError(f"no best checkpoint marked in {run_dir} (no best.json or "
                        f"mask_rcnn_{name}_best.h5): train with validation data first, or use "
                        f"--weights last")


def best_file(run_dir, name=None):
    """``mask_rcnn_<name>_best.h5`` of a run if it exists, else the checkpoint best.json names."""
    name = (name or run_name_of(run_dir) or "mrcnn").lower()
    link = os.path.join(run_dir, f"mask_rcnn_{name}_best.h5")
    return link if os.path.isfile(link) else best_checkpoint(run_dir, name)[0]


def read_settings(path):
    """``settings.json`` of a run directory, or of the run a weights file lies in; ``{}``."""
    folder = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    file = os.path.join(folder, SETTINGS_FILE)
    if os.path.isfile(file):
        try:
            with open(file) as f:
                return json.load(f)
        except ValueError as e:
            raise WorkflowError(f"{file}: not valid JSON ({e}); fix or delete it") from e
    return {}


def write_settings(run_dir, settings):
    """Write ``settings.json`` into ``run_dir`` atomically."""
    write_json(os.path.join(run_dir, SETTINGS_FILE), settings)


def list_runs(logs, name=None):
    """Run directories in ``logs`` (of configuration ``name``, or any), oldest first."""
    if not os.path.isdir(logs):
        return []
    runs = []
    for d in os.listdir(logs):
        m = _RUN_RE.match(d)
        if m and os.path.isdir(os.path.join(logs, d)) and (
                name is None or m.group("name") == name.lower()):
            runs.append((m.group("stamp"), d))
    return [os.path.join(logs, d) for _, d in sorted(runs)]


def latest_run(logs, name=None):
    """The latest run directory in ``logs`` that holds a checkpoint, or None."""
    for run_dir in reversed(list_runs(logs, name)):
        if run_checkpoints(run_dir):
            return run_dir
    return None


def _nothing_found(which, logs, name, also_look_in):
    where = [os.path.abspath(logs)]
    hints = []
    for other in also_look_in:
        if os.path.abspath(other) in where:
            continue
        where.append(os.path.abspath(other))
        if latest_run(other, name):
            hints.append(other)
    what = f"runs of {name!r}" if name else "training runs"
    message = (f"--weights {which}: no {what} with a checkpoint in {' or in '.join(where)} "
               f"(looked for run directories NAMEyyyymmddThhmm holding mask_rcnn_*.h5). ")
    if hints:
        message += f"Runs were found in {hints[0]}: pass --logs {hints[0]}."
    else:
        message += ("Pass --logs DIR, the folder that train (or demo: its OUTPUT/logs) wrote "
                    "to, or --weights PATH of a .h5 file; or train first.")
    return WorkflowError(message)


def find_run_checkpoint(which, logs, name=None, also_look_in=(DEMO_LOGS, "logs")):
    """``which`` = ``"last"``: the last checkpoint of the latest run in ``logs`` that has one;
    ``"best"``: the best checkpoint of that run (see `best_checkpoint`).

    Raises WorkflowError naming every folder it looked in (``logs``, and to suggest the right
    ``--logs``, the ``also_look_in`` folders) when there is none.
    """
    run_dir = latest_run(logs, name)
    if run_dir is None:
        raise _nothing_found(which, logs, name, also_look_in)
    if which == "last":
        return run_checkpoints(run_dir)[-1][1]
    return best_checkpoint(run_dir)[0]


def trained_weights(spec, logs="logs", name=None):
    """Path of trained weights for evaluate/detect: a .h5 path, ``last`` or ``best`` (of the
    latest run in ``logs``), or a run directory (its best checkpoint)."""
    if spec in (None, "best", "last"):
        return find_run_checkpoint(spec or "best", logs, name)
    if spec in ("none", "coco", "imagenet"):
        raise WorkflowError(f"--weights {spec}: give trained weights (best, last, a run "
                            f"directory or a .h5 path)")
    if os.path.isdir(spec) and run_checkpoints(spec):
        return best_checkpoint(spec)[0] if _has_best(spec) else run_checkpoints(spec)[-1][1]
    if not os.path.isfile(spec):
        raise WorkflowError(f"--weights {spec}: file not found (use best, last, a run directory "
                            f"or the path of a .h5 file)")
    return spec


def _has_best(run_dir):
    try:
        best_checkpoint(run_dir)
        return True
    except WorkflowError:
        return False


def resolve_weights(spec, config, logs="logs"):
    """Path and excluded layers for the initial ``--weights`` of training.

    Args:
        spec: ``coco`` (downloaded once into the `mrcnn.download` cache), ``imagenet``,
            ``last`` (last checkpoint of the latest run in ``logs``), ``best`` (best checkpoint of
            the latest run), ``none`` or a file path.
        config: the configuration of the model the weights are for (decides what fits).

    Returns:
        ``(path or None, exclude list, description)``.
    """
    from mrcnn.model import CLASS_SPECIFIC_LAYERS

    if spec in (None, "none"):
        return None, [], "random initialisation"
    if spec == "coco":
        if config.BACKBONE != "resnet101":
            raise WorkflowError(f"--weights coco holds ResNet-101 weights but BACKBONE is "
                                f"{config.BACKBONE!r}; use --preset standard or --backbone "
                                f"resnet101")
        from mrcnn import download

        path = download.download_trained_weights(
            os.path.join(download.get_cache_dir(), "mask_rcnn_coco.h5"))
        # The COCO heads predict 81 classes; other class counts need freshly initialised heads.
        exclude = list(CLASS_SPECIFIC_LAYERS) if config.NUM_CLASSES != 81 else []
        return path, exclude, f"the COCO weights {path}"
    if spec == "imagenet":
        if config.BACKBONE not in ("resnet50", "resnet101"):
            raise WorkflowError(f"--weights imagenet holds ResNet-50 weights but BACKBONE is "
                                f"{config.BACKBONE!r}; use --backbone resnet50 or resnet101")
        from mrcnn import download

        path = download.download_imagenet_weights()
        return path, [], f"the ImageNet weights {path}"
    if spec in ("last", "best"):
        path = find_run_checkpoint(spec, logs, config.NAME)
        return path, [], f"the {spec} checkpoint {path}"
    if not os.path.isfile(spec):
        raise WorkflowError(f"--weights {spec}: file not found (use coco, imagenet, last, best, "
                            f"none or the path of a .h5 file)")
    return spec, [], spec


def settings_of_weights(spec, logs="logs", name=None):
    """settings.json of the run a ``--weights`` value points into, or ``{}``."""
    if spec in ("last", "best"):
        try:
            return read_settings(find_run_checkpoint(spec, logs, name, also_look_in=()))
        except WorkflowError:
            return {}
    if spec and spec not in ("none", "coco", "imagenet") and os.path.exists(spec):
        return read_settings(spec)
    return {}


def after_last_checkpoint(model):
    """Continue a resumed run after its last checkpoint rather than after the loaded one.

    ``load_weights`` of one of our checkpoints (the best of stage 1, say) resumes its run at that
    checkpoint's epoch, as in Matterport; a stage here starts after the run's last checkpoint
    instead, so that it never overwrites the checkpoints of an earlier stage.
    """
    if model.epoch:  # 0: a new run (random, COCO or ImageNet weights)
        done = run_checkpoints(model.log_dir, model.config.NAME)
        model.epoch = max([model.epoch] + [epoch for epoch, _ in done])
