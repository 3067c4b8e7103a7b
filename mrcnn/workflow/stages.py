"""Staged training: a list of stages (layers, learning rate, epochs), each later stage starting
from the best checkpoint of the run so far, all in one run directory with continuous epoch
numbers; optional deadlines that end a stage in time (after it validates and checkpoints).

Fine-tuning COCO weights is `FINE_TUNE`: the heads at 1e-3, then all layers at 1e-5 from the best
stage-1 checkpoint by validation loss.
"""

import dataclasses
import os
import time

from mrcnn.workflow.errors import WorkflowError
from mrcnn.workflow.presets import config_overrides
from mrcnn.workflow.runs import (SETTINGS_FILE, after_last_checkpoint, best_checkpoint,
                                 best_file, read_settings, resolve_weights, write_settings)


@dataclasses.dataclass
class Stage:
    """One stage of training.

    Attributes:
        layers: ``train(layers=...)``: ``heads``, ``3+``, ``4+``, ``5+``, ``all`` or a regex.
        learning_rate: the stage's learning rate.
        epochs: epochs the stage trains, after the last checkpoint of the run.
        until: instead of ``epochs``, train up to this epoch of the run (Matterport's meaning);
            a run already there skips the stage.
        start: ``"best"``: begin from the best checkpoint of the run so far (by validation
            loss); ``"continue"``: from the weights the previous stage ended with.
    """

    layers: str = "heads"
    learning_rate: float = 1e-3
    epochs: int = 1
    until: int = None
    start: str = "best"

    @classmethod
    def from_dict(cls, data, where="stages"):
        """A Stage from ``{"layers", "learning_rate" (or "lr"), "epochs", "until", "start"}``."""
        if not isinstance(data, dict):
            raise WorkflowError(f"{where}: each stage is an object like {{\"layers\": \"heads\", "
                                f"\"learning_rate\": 0.001, \"epochs\": 20}}, got {data!r}")
        data = dict(data)
        if "lr" in data:
            data["learning_rate"] = data.pop("lr")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise WorkflowError(f"{where}: unknown stage setting(s) {', '.join(unknown)}; use "
                                f"{', '.join(sorted(known))}")
        stage = cls(**data)
        if stage.start not in ("best", "continue"):
            raise WorkflowError(f"{where}: start must be \"best\" or \"continue\", got "
                                f"{stage.start!r}")
        try:
            stage.learning_rate = float(stage.learning_rate)
            stage.epochs = int(stage.epochs)
            stage.until = None if stage.until is None else int(stage.until)
        except (TypeError, ValueError) as e:
            raise WorkflowError(f"{where}: learning_rate, epochs and until are numbers ({e})") \
                from e
        if stage.learning_rate <= 0 or stage.epochs < 1:
            raise WorkflowError(f"{where}: learning_rate must be > 0 and epochs >= 1, got "
                                f"{stage.learning_rate} and {stage.epochs}")
        return stage

    def to_dict(self):
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


#: Fine-tuning pretrained weights: heads at 1e-3, then all layers at 1e-5 from the best.
FINE_TUNE = (Stage("heads", 1e-3, 20), Stage("all", 1e-5, 20))


def parse_stages(stages, where="stages"):
    """A list of `Stage` from Stage objects or dicts (a settings file's ``"stages"``)."""
    if not stages:
        raise WorkflowError(f"{where}: at least one stage is needed")
    return [s if isinstance(s, Stage) else Stage.from_dict(s, f"{where}[{i}]")
            for i, s in enumerate(stages)]


def flip_augmentation(enabled=True):
    """Random left-right flips with albumentations (or imgaug), or None when disabled."""
    if not enabled:
        return None
    try:
        import albumentations as A
        return A.Compose([A.HorizontalFlip(p=0.5)])
    except ImportError:
        pass
    try:
        import imgaug.augmenters as iaa
        return iaa.Fliplr(0.5)
    except ImportError as e:
        raise WorkflowError("--augment needs albumentations (pip install albumentations)") from e


def deadline_callback(deadline):
    """Keras callback that stops training after the batch that passes ``deadline``
    (a ``time.time()`` value). Keras still validates and ends the epoch, so a checkpoint is
    written. ``callback.stopped`` tells whether it fired."""
    import keras

    class Deadline(keras.callbacks.Callback):
        stopped = False

        def on_train_batch_end(self, batch, logs=None):
            if time.time() > deadline:
                self.model.stop_training = True
                self.stopped = True

    return Deadline()


def _best_or_none(run_dir, name):
    try:
        return best_checkpoint(run_dir, name)
    except WorkflowError:
        return None, None


def train_stages(train_dataset, val_dataset, config, stages=FINE_TUNE, weights="none",
                 logs="logs", settings=None, augmentation=None, deadlines=None, only=None,
                 exclude=None, verbose=1):
    """Train ``stages`` in one run directory; each ``start="best"`` stage after the first
    begins from the best checkpoint of the run so far.

    Args:
        train_dataset, val_dataset: prepared data sets.
        config: the training configuration (its NAME names the run directory).
        stages: `Stage` objects (or dicts, see `Stage.from_dict`).
        weights: initial weights (see `mrcnn.workflow.runs.resolve_weights`). When ``only``
            leaves out the first stage, the default is the best checkpoint of the latest run.
        logs: folder of the run directories.
        settings: dict recorded in the run's ``settings.json`` (data set, classes, preset, ...);
            the stages' plan and what each stage did (``stage_runs``) are added.
        augmentation: passed to ``model.train`` (see `flip_augmentation`).
        deadlines: per stage, a ``time.time()`` after which it stops (after validating), or None;
            a later stage whose deadline has passed before it starts is skipped.
        only: 1-based numbers of the stages to run (default all).
        exclude: layers not to load from ``weights`` (default: as `resolve_weights` decides).

    Returns:
        dict with ``run_dir``, ``best`` (path of the best checkpoint of the run), ``best_record``,
        ``records`` (one dict per stage run, as appended to settings.json) and ``model``.
    """
    import mrcnn.model as modellib

    stages = parse_stages(stages)
    numbers = list(only or range(1, len(stages) + 1))
    bad = [n for n in numbers if not 1 <= int(n) <= len(stages)]
    if bad:
        raise WorkflowError(f"--stage {bad[0]}: the plan has stages 1 to {len(stages)}")
    deadlines = list(deadlines or [None] * len(stages))
    records = []
    model = modellib.MaskRCNN("training", config, logs)
    spec = weights if numbers[0] == 1 else (weights or "best")
    path, resolved, description = resolve_weights(spec, config, logs)
    exclude = resolved if exclude is None else exclude
    if path:
        model.load_weights(path, by_name=True, exclude=exclude)
    after_last_checkpoint(model)
    run_dir = None
    for position, number in enumerate(numbers):
        stage = stages[number - 1]
        deadline = deadlines[number - 1] if number - 1 < len(deadlines) else None
        if position > 0 and deadline and time.time() > deadline:
            if verbose:
                print(f"Stage {number} ({stage.layers}): skipped, the time limit was reached")
            continue
        if position > 0 and stage.start == "best":
            best = _best_or_none(run_dir, config.NAME)[0]
            if best:
                path, description = best, f"the best checkpoint so far {best}"
                model.load_weights(best, by_name=True)
                after_last_checkpoint(model)
        elif position > 0:
            path, description = None, "the weights of the previous stage"
        target = stage.until if stage.until is not None else model.epoch + stage.epochs
        if target <= model.epoch:
            if verbose:
                print(f"Stage {number} ({stage.layers}, to epoch {target}): already done at "
                      f"epoch {model.epoch}, skipped")
            continue
        first = model.epoch + 1
        # A new run gets a directory of its own here, so settings.json is written first.
        run_dir = model.create_log_dir()
        record_settings = read_settings(os.path.join(run_dir, SETTINGS_FILE))
        record_settings.update(settings or {})
        record_settings.update({"name": config.NAME,
                                "stages": [s.to_dict() for s in stages]})
        # What evaluate and detect need to rebuild a model of any Config.
        record_settings.setdefault("class_names", list(train_dataset.class_names[1:]))
        if "preset" not in record_settings:
            record_settings["overrides"] = config_overrides(config)
        record_settings.setdefault("stage_runs", [])
        if settings is not None:
            write_settings(run_dir, record_settings)
        if verbose:
            print(f"\nStage {number}: layers={stage.layers!r}, learning rate "
                  f"{stage.learning_rate:g}, epochs {first}..{target} x "
                  f"{config.STEPS_PER_EPOCH} steps, from {description}\n  run directory "
                  f"{run_dir}", flush=True)
        callbacks = [deadline_callback(deadline)] if deadline else []
        model.train(train_dataset, val_dataset, learning_rate=stage.learning_rate,
                    epochs=target, layers=stage.layers, augmentation=augmentation,
                    custom_callbacks=callbacks)
        best, record = _best_or_none(run_dir, config.NAME)
        stopped = bool(callbacks) and callbacks[0].stopped
        entry = {"stage": number, "layers": stage.layers, "learning_rate": stage.learning_rate,
                 "initial_weights": path, "first_epoch": first, "last_epoch": model.epoch,
                 "stopped_by_time_limit": stopped,
                 "best_checkpoint": os.path.basename(best) if best else None,
                 "best_record": record}
        records.append(entry)
        if settings is not None:
            record_settings["stage_runs"].append(entry)
            write_settings(run_dir, record_settings)
        if verbose:
            value = (f"{record['metric']} {record['value']:.4f} at epoch {record['epoch']}"
                     if record else "value unknown")
            print(f"Stage {number} done{' (time limit reached)' if stopped else ''}; best "
                  f"checkpoint of the run: {best} ({value})", flush=True)
    run_dir = run_dir or model.log_dir
    best, record = _best_or_none(run_dir, config.NAME)
    return {"run_dir": run_dir, "best": best_file(run_dir, config.NAME) if best else None,
            "best_record": record, "records": records, "model": model}
