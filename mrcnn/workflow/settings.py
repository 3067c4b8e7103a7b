"""Run settings: what ``mrcnn train`` needs to know (data set, classes, model preset and
configuration overrides, initial weights, stages), their defaults, and the small JSON settings
file (``--config FILE.json``) that holds them.

The same keys are saved in each run's ``settings.json`` (plus ``class_names`` and
``stage_runs``, what the stages did), so a run's own ``settings.json`` is also a valid
``--config`` file. Example::

    {"dataset": "balloons", "format": "via", "classes": ["balloon"],
     "preset": "standard", "overrides": {"IMAGE_MAX_DIM": 512, "IMAGE_MIN_DIM": 512},
     "weights": "coco",
     "stages": [{"layers": "heads", "learning_rate": 0.001, "epochs": 20},
                {"layers": "all", "learning_rate": 1e-05, "epochs": 20}]}
"""

import json
import os

from mrcnn.workflow.errors import WorkflowError
from mrcnn.workflow.stages import FINE_TUNE, parse_stages

#: Every setting and its default.
DEFAULTS = {
    "dataset": None,          # data set root (train/ and val/ inside)
    "format": "via",          # via or coco
    "annotation_file": None,  # JSON name in each subset folder (VIA: via_region_data.json)
    "class_attribute": None,  # VIA region attribute naming each region's class
    "classes": None,          # class names (VIA: the one class, or the attribute's values)
    "year": "",               # COCO: instances_<subset><year>.json
    "subsets": ["train", "val"],
    "name": None,             # configuration NAME (default: from the data set folder's name)
    "preset": "standard",     # see mrcnn.workflow.presets.PRESETS
    "overrides": {},          # Config settings over the preset: {"IMAGE_MAX_DIM": 512, ...}
    "weights": None,          # initial weights: coco, imagenet, last, best, none or a path
    "stages": [s.to_dict() for s in FINE_TUNE],
    "augment": False,         # random left-right flips
    "logs": "logs",           # folder of the run directories
}

#: Keys a run's settings.json holds besides DEFAULTS' (accepted, ignored, in a --config file).
RECORDED = ("class_names", "stage_runs")

#: Settings a continued run keeps from the run it continues (the weights' heads depend on them).
INHERITED = ("dataset", "format", "annotation_file", "class_attribute", "classes", "year",
             "subsets", "name", "preset", "overrides")


def read_config_file(path):
    """The settings of a JSON file (see the module docstring), checked for unknown keys."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise WorkflowError(f"--config {path}: file not found")
    try:
        with open(path) as f:
            data = json.load(f)
    except ValueError as e:
        raise WorkflowError(f"--config {path}: not valid JSON ({e})") from e
    if not isinstance(data, dict):
        raise WorkflowError(f"--config {path}: expected a JSON object of settings")
    if "config" in data:  # a friendlier name for the overrides
        data.setdefault("overrides", data.pop("config"))
    unknown = sorted(set(data) - set(DEFAULTS) - set(RECORDED))
    if unknown:
        raise WorkflowError(f"--config {path}: unknown setting(s) {', '.join(unknown)}; the "
                            f"settings are {', '.join(DEFAULTS)}")
    if not isinstance(data.get("overrides", {}), dict):
        raise WorkflowError(f"--config {path}: \"overrides\" must be an object like "
                            f"{{\"IMAGE_MAX_DIM\": 512}}")
    if "stages" in data:
        parse_stages(data["stages"], where=f"--config {path}: stages")
    return {k: v for k, v in data.items() if k in DEFAULTS}


def merge(*layers):
    """Settings of later layers over earlier ones; ``None`` values do not count, and
    ``overrides`` dicts merge key by key."""
    out = {}
    for layer in layers:
        for key, value in (layer or {}).items():
            if value is None:
                continue
            if key == "overrides":
                out["overrides"] = dict(out.get("overrides") or {}, **value)
            else:
                out[key] = value
    return out


def complete(settings):
    """``settings`` with every missing key set to its default (`DEFAULTS`)."""
    out = dict(DEFAULTS)
    out.update(merge(DEFAULTS, settings))
    return out
