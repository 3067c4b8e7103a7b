"""Training from run settings: load the data set, build the configuration, train the stages,
and record everything in the run's ``settings.json`` (what ``mrcnn train`` does)."""

import os

from mrcnn.workflow.data import load_train_val
from mrcnn.workflow.errors import WorkflowError
from mrcnn.workflow.presets import WorkflowConfig, make_config, run_name
from mrcnn.workflow.runs import settings_of_weights
from mrcnn.workflow.settings import INHERITED, complete, merge
from mrcnn.workflow.stages import flip_augmentation, parse_stages, train_stages


def run_training(settings, only=None, deadlines=None, base=WorkflowConfig, defaults=None,
                 verbose=1):
    """Train as ``settings`` say (see `mrcnn.workflow.settings`).

    A run continued from its own checkpoint (``weights`` ``last``, ``best`` or one of its files,
    or ``only`` without stage 1) keeps the data set, classes, preset and overrides it was
    trained with unless ``settings`` give them.

    Args:
        settings: dict of settings; missing ones take their defaults.
        only: 1-based numbers of the stages to run (default all).
        deadlines: per stage, a ``time.time()`` after which it stops.
        base: the Config subclass (see `mrcnn.workflow.presets.make_config`).
        defaults: settings under those of a continued run and ``settings`` (a sample's NAME
            and single class, say); a default ``classes`` gives way to a ``class_attribute``.

    Returns:
        the dict of `train_stages` plus ``class_names``, ``config`` and ``settings`` (as
        recorded in settings.json).
    """
    given = merge(settings)
    defaults = merge(defaults)
    logs = given.get("logs") or defaults.get("logs") or "logs"
    spec = given.get("weights")
    if spec is None and only and 1 not in only:
        spec = "best"
    if spec is None:
        raise WorkflowError("train needs initial weights for stage 1: --weights coco, imagenet, "
                            "last, none or a .h5 path (or \"weights\" in the --config file)")
    saved = settings_of_weights(spec, logs, given.get("name"))
    s = complete(merge(defaults, {k: saved.get(k) for k in INHERITED}, given))
    if s["class_attribute"] and given.get("classes") is None and saved.get("classes") is None:
        # The attribute's values are the classes; a continued run keeps its list and ids.
        s["classes"] = saved.get("class_names") if saved.get("class_attribute") else None
    s["weights"] = spec
    if not s["dataset"]:
        raise WorkflowError("train needs a data set: --data DIR (or \"dataset\" in the --config "
                            "file)")
    s["dataset"] = os.path.abspath(os.fspath(s["dataset"]))
    s["name"] = s["name"] or run_name(os.path.basename(s["dataset"]))
    stages = parse_stages(s["stages"])
    train, val, names = load_train_val(s["dataset"], s["format"], s["annotation_file"],
                                       s["class_attribute"], s["classes"], s["year"],
                                       tuple(s["subsets"]), verbose)
    config = make_config(s["preset"], s["overrides"], names, name=s["name"], base=base)
    if verbose:
        print(f"Classes: {', '.join(names)} (NUM_CLASSES={config.NUM_CLASSES}); "
              f"{len(train.image_ids)} training and {len(val.image_ids)} validation images of "
              f"{s['dataset']}; preset {s['preset']!r}")
    record = dict(s, class_names=names, stages=[st.to_dict() for st in stages])
    result = train_stages(train, val, config, stages, weights=spec, logs=logs, settings=record,
                          augmentation=flip_augmentation(s["augment"]), deadlines=deadlines,
                          only=only, verbose=verbose)
    result.update({"class_names": names, "config": config, "settings": record})
    return result
