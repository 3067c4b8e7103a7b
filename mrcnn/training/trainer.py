"""Training through ``keras.Model.fit``: the train/test steps, layer freezing, checkpoints.

``MaskRCNNTrainer`` is the training-mode functional model with a custom ``train_step``, so
``tf.distribute`` strategies and mixed precision work as for any Keras model.
"""

import contextlib
import errno
import json
import logging
import os
import re
import zlib

import keras
import numpy as np
import tensorflow as tf

from mrcnn.layers import conv as conv_layers
from mrcnn.ops import portable
from mrcnn.training.losses import LOSS_NAMES, compute_losses, weight_decay_loss
from mrcnn.training.optimizer import MomentumSGD

logger = logging.getLogger("mrcnn")

# Matterport's shortcuts for ``train(layers=...)``.
LAYER_REGEX = {
    "heads": r"(mrcnn\_.*)|(rpn\_.*)|(fpn\_.*)",
    "3+": r"(res3.*)|(bn3.*)|(res4.*)|(bn4.*)|(res5.*)|(bn5.*)|(mrcnn\_.*)|(rpn\_.*)|(fpn\_.*)",
    "4+": r"(res4.*)|(bn4.*)|(res5.*)|(bn5.*)|(mrcnn\_.*)|(rpn\_.*)|(fpn\_.*)",
    "5+": r"(res5.*)|(bn5.*)|(mrcnn\_.*)|(rpn\_.*)|(fpn\_.*)",
    "all": ".*",
}


class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup from 0 to ``learning_rate`` over ``warmup_steps``, then constant."""

    def __init__(self, learning_rate, warmup_steps):
        self.learning_rate = float(learning_rate)
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step):
        step = tf.cast(step, tf.float32) + 1.0
        return self.learning_rate * tf.minimum(1.0, step / float(max(self.warmup_steps, 1)))

    def get_config(self):
        return {"learning_rate": self.learning_rate, "warmup_steps": self.warmup_steps}


class MaskRCNNTrainer(keras.Model):
    """Training-mode Mask R-CNN: a functional model whose steps compute the five losses.

    Inputs and outputs are the dicts of ``mrcnn.model.graph.build_graph("training", ...)``; a
    step's batch is the dict of ``mrcnn.training.data`` (the inputs plus the RPN's targets).
    Metrics reported per epoch: ``loss`` (weighted sum plus weight decay) and each loss by name
    (``val_`` prefixed on validation data).
    """

    def __init__(self, config, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.mrcnn_config = config
        self.loss_weights = {name: float(config.LOSS_WEIGHTS.get(name, 1.0))
                             for name in LOSS_NAMES}
        self.weight_decay = float(config.WEIGHT_DECAY)
        self.trackers = {name: keras.metrics.Mean(name=name)
                         for name in ("loss",) + LOSS_NAMES}

    @property
    def metrics(self):
        return list(self.trackers.values())

    def graph_inputs(self, batch):
        """The entries of a training ``batch`` (a dict) that the graph takes: all but the RPN's
        targets, which only the losses read. Call the model on these."""
        return {name: batch[name] for name in self.input}

    def _forward_losses(self, x, training):
        with conv_layers.cached_folds(frozen_only=True):
            outputs = self(self.graph_inputs(x), training=training)
        # meta layout: id, original shape (3), image shape (3), window (4), scale, active ids.
        active = x["input_image_meta"][:, 12:]
        losses = compute_losses(x, outputs, active)
        total = tf.add_n([self.loss_weights[k] * v for k, v in losses.items()])
        total += weight_decay_loss(self.trainable_weights, self.weight_decay)
        return total, losses

    def _update(self, total, losses):
        self.trackers["loss"].update_state(total)
        for name, value in losses.items():
            self.trackers[name].update_state(value)
        results = {name: t.result() for name, t in self.trackers.items()}
        if is_multi_worker(tf.distribute.get_strategy()):
            # Keras averages step results over workers along axis 0, which a scalar lacks.
            results = {name: tf.reshape(v, [1]) for name, v in results.items()}
        return results

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Under a tf.distribute strategy Keras builds the model symbolically from a batch it
        # takes from the iterator: that starts a pass over the data set which training then does
        # not use (the first epoch read the second pass's batches, so runs under MirroredStrategy
        # and without a strategy saw different data for the same seed), and averaging that
        # batch over workers fails under MultiWorkerMirroredStrategy on our dict of inputs. The
        # model is built already and there are no compiled losses or metrics: only the
        # optimizer can be left to build (train() builds it; a direct fit() may not have).
        if self._distribute_strategy is None:
            return
        if self.optimizer is not None and not self.optimizer.built:
            with self.distribute_strategy.scope():
                self.optimizer.build(self.trainable_variables)

    def train_step(self, data):
        x = data[0] if isinstance(data, tuple) else data
        with tf.GradientTape() as tape:
            total, losses = self._forward_losses(x, training=True)
            # Gradients are summed over replicas, so each replica contributes its share.
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            scaled = total / replicas
            if hasattr(self.optimizer, "scale_loss"):
                scaled = self.optimizer.scale_loss(scaled)
        variables = self.trainable_variables
        grads = tape.gradient(scaled, variables)
        pairs = [(g, v) for g, v in zip(grads, variables) if g is not None]
        self.optimizer.apply_gradients(pairs)
        return self._update(total, losses)

    def test_step(self, data):
        x = data[0] if isinstance(data, tuple) else data
        total, losses = self._forward_losses(x, training=False)
        return self._update(total, losses)


def is_multi_worker(strategy):
    """Whether ``strategy`` spans several worker processes (MultiWorkerMirroredStrategy with a
    cluster of more than one task, as ``TF_CONFIG`` describes)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or resolver is None:
        return False
    spec = resolver.cluster_spec().as_dict()
    return sum(len(tasks) for tasks in spec.values()) > 1


def worker_role(strategy):
    """``(index, number of workers, seed shared by all workers)`` for a multi-worker strategy.

    index orders the tasks chief first, then the workers: index 0 is the chief (task ``chief``/0,
    or ``worker``/0 where the cluster has no chief), which alone writes checkpoints and logs.
    The seed (from the cluster spec) makes every worker's input sequence produce the same
    batches, which `_worker_batches` then deals out among them.
    """
    resolver = strategy.cluster_resolver
    spec = resolver.cluster_spec().as_dict()
    order = [("chief", i) for i in range(len(spec.get("chief", [])))]
    order += [("worker", i) for i in range(len(spec.get("worker", [])))]
    index = order.index((resolver.task_type, int(resolver.task_id or 0)))
    seed = zlib.crc32(json.dumps(spec, sort_keys=True).encode())
    return index, len(order), seed


def check_one_replica_per_worker(strategy, n_workers):
    """Multi-worker training deals one whole batch to each worker per step (`_worker_batches`),
    which holds only when each worker has one replica. MultiWorkerMirroredStrategy takes every
    GPU a worker sees, and a worker with several would split its batches among them. Raises
    ValueError saying how to run such a machine."""
    replicas = strategy.num_replicas_in_sync
    if replicas != n_workers:
        raise ValueError(
            "Multi-worker training takes one device per worker, but this cluster of %d workers "
            "has %d replicas (MultiWorkerMirroredStrategy uses every GPU a worker process sees). "
            "Run one worker process per GPU instead: give each its own task in TF_CONFIG's "
            "cluster (its own port) and its own CUDA_VISIBLE_DEVICES; on a single machine, "
            "MirroredStrategy over its GPUs does the same." % (n_workers, replicas))


def set_trainable(keras_model, layer_regex, verbose=0):
    """Train layers whose names fully match ``layer_regex``; freeze every other weighted layer.

    Frozen BatchNorm layers also stop updating their statistics (Keras runs a non-trainable
    BatchNormalization in inference mode). Nested models (``rpn_model``) are entered.
    Returns the names of the trainable layers.
    """
    trainable = []
    for layer in keras_model.layers:
        if isinstance(layer, keras.Model):
            trainable += set_trainable(layer, layer_regex, verbose)
            continue
        if not layer.weights:
            continue
        on = bool(re.fullmatch(layer_regex, layer.name))
        layer.trainable = on
        if on:
            trainable.append(layer.name)
        if verbose:
            logger.info("%-30s %s", layer.name, "trainable" if on else "frozen")
    return trainable


class TrainingDivergedError(FloatingPointError):
    """The training loss became NaN or infinite. The message names the epoch, the step and the
    images of that batch; ``record`` holds them (``epoch``, ``step``, ``image_ids``, ``losses``,
    ``last_checkpoint``; with several workers ``image_ids`` are all workers' images of the step
    and ``worker_image_ids`` each worker's). No checkpoint is written for the epoch it happened
    in."""

    def __init__(self, message, record):
        super().__init__(message)
        self.record = record


class StopOnBadLoss(keras.callbacks.Callback):
    """Stops training at the first step whose loss is NaN or infinite and records where.

    Replaces Keras's ``TerminateOnNaN``, which only prints a line. ``sequence`` is the training
    ``MaskRCNNSequence``: a batch is a pure function of (pass, index), so the images of the bad
    step are found by rebuilding it. With ``n_workers`` > 1 (MultiWorkerMirroredStrategy) worker
    i trains step s on batch ``s * n_workers + i`` and the loss each worker sees is the average
    over the workers, so which worker's batch went bad is unknown: ``image_ids`` lists the
    images of all workers' batches of that step, worker 0's first, and ``worker_image_ids``
    each worker's.
    """

    def __init__(self, sequence, n_workers=1):
        super().__init__()
        self.sequence = sequence
        self.n_workers = n_workers
        self.bad = None
        self._epoch = 0
        # The pass over the sequence, as the sequence counts them (from its first_pass).
        self._pass = sequence.first_pass - 1

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._pass += 1

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        values = {k: float(v) for k, v in logs.items()
                  if k == "loss" or k in LOSS_NAMES}
        if not values or all(np.isfinite(v) for v in values.values()):
            return
        self.model.stop_training = True
        per_worker = [self._image_ids(batch * self.n_workers + i) for i in range(self.n_workers)]
        self.bad = {"epoch": self._epoch + 1, "step": batch + 1,
                    "losses": {k: v for k, v in values.items() if not np.isfinite(v)},
                    "image_ids": [i for ids in per_worker for i in ids]}
        if self.n_workers > 1:
            self.bad["worker_image_ids"] = per_worker

    def _image_ids(self, index):
        try:
            metas = self.sequence.batch_at(self._pass, index)["input_image_meta"]
            dataset = self.sequence.dataset
            return [dataset.image_info[int(i)].get("id", int(i)) for i in metas[:, 0]]
        except Exception as e:  # the message matters more than the ids
            logger.warning("Cannot tell which images the bad batch held: %s", e)
            return []


class HistoryCSVLogger(keras.callbacks.CSVLogger):
    """Keras's ``CSVLogger`` with epochs counted from 1, as in the console, the checkpoint names
    (row ``epoch`` N is the epoch that wrote ``mask_rcnn_<name>_000N.h5``) and the plots.

    ``last_epoch`` is the epoch of the checkpoint training starts from: appending, the rows of
    later epochs are dropped first (see `_trim_history`), so each epoch has one row."""

    def __init__(self, filename, last_epoch=0, **kwargs):
        super().__init__(filename, **kwargs)
        self.last_epoch = last_epoch

    def on_train_begin(self, logs=None):
        if self.append:
            _trim_history(self.filename, self.last_epoch)
        super().on_train_begin(logs)

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch + 1, logs)


def _trim_history(path, last_epoch):
    """Drop the rows of epochs after ``last_epoch`` and a row cut short: what a process killed
    before writing those epochs' checkpoints left. The epochs are trained again, and their rows
    would come twice."""
    try:
        with open(path, newline="") as f:
            lines = f.read().splitlines(keepends=True)
    except (FileNotFoundError, UnicodeDecodeError):
        return
    keep = lines[:1] if lines and lines[0].endswith("\n") else []
    for line in lines[1:]:
        if not line.endswith("\n"):
            break
        try:
            if int(float(line.split(",", 1)[0])) > last_epoch:
                break
        except ValueError:  # not a row of ours (no epoch number first): left as it is
            pass
        keep.append(line)
    if keep != lines:
        _write_atomic(path, "".join(keep).encode())


class EpochTensorBoard(keras.callbacks.TensorBoard):
    """Keras's ``TensorBoard`` with the per-epoch scalars at step N for epoch N (from 1)."""

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch + 1, logs)


class CheckpointCallback(keras.callbacks.Callback):
    """After each epoch write ``mask_rcnn_<name>_<epoch>.h5`` atomically and mark the best.

    The best checkpoint by ``val_loss`` (``loss`` without validation data) over the whole run
    directory is recorded in ``best.json`` and hard-linked (copied where links are not
    supported) as ``mask_rcnn_<name>_best.h5``. Each file is written under a temporary name and
    renamed once complete, in this order: the numbered checkpoint, ``best.json``, the
    ``_best.h5`` link. A kill between the last two leaves best.json naming the new best while
    ``_best.h5`` still holds the previous one; ``find_best`` notices (the file's ``epoch``
    attribute) and returns the numbered checkpoint best.json names.

    Each checkpoint also carries ``metric`` and ``metric_value``. When training starts, what a
    killed process left is put right: its temporary files are removed, the checkpoint resumed
    from is marked best if it is better than best.json's (a kill came between its write and
    the marking), and ``_best.h5`` is linked anew if it does not hold best.json's epoch.
    """

    def __init__(self, maskrcnn, bad_loss=None):
        super().__init__()
        self.maskrcnn = maskrcnn
        self.bad_loss = bad_loss  # a StopOnBadLoss: no checkpoint of weights that went bad

    def on_train_begin(self, logs=None):
        """Put right what a killed process left in the run directory (see the class docstring)
        before the first epoch writes anything."""
        mr = self.maskrcnn
        _remove_temporaries(mr.log_dir)
        best = _read_best(os.path.join(mr.log_dir, "best.json"))
        resumed = self._resumed_metric()
        if resumed is not None and _beats(*resumed, best):
            self._mark_best(mr.checkpoint_path.format(epoch=mr.epoch), mr.epoch, *resumed)
        elif best is not None:
            numbered = os.path.join(mr.log_dir, os.path.basename(str(best.get("checkpoint"))))
            best_path = _best_path(mr)
            if os.path.isfile(numbered) and not _holds_epoch(best_path, numbered, best["epoch"]):
                _link_atomic(numbered, best_path)

    def _resumed_metric(self):
        """``(metric, value)`` the checkpoint training resumes from recorded, or None (a new
        run, a checkpoint written before checkpoints carried the metric, a non-finite value)."""
        from mrcnn.weights import read_attrs
        mr = self.maskrcnn
        if not mr.epoch:
            return None
        try:
            attrs = read_attrs(mr.checkpoint_path.format(epoch=mr.epoch))
            metric, value = str(attrs["metric"]), float(attrs["metric_value"])
        except (OSError, KeyError, TypeError, ValueError):  # WeightsFileError is a ValueError
            return None
        if attrs.get("epoch") != mr.epoch or not np.isfinite(value):
            return None
        return metric, value

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.bad_loss is not None and self.bad_loss.bad is not None:
            return
        mr = self.maskrcnn
        path = mr.checkpoint_path.format(epoch=epoch + 1)
        metric = "val_loss" if "val_loss" in logs else "loss"
        value = float(logs.get(metric, np.nan))
        mr.save_weights(path, epoch=epoch + 1, metric=metric, metric_value=value)
        mr.epoch = epoch + 1
        best = _read_best(os.path.join(mr.log_dir, "best.json"))
        if np.isfinite(value) and _beats(metric, value, best):
            self._mark_best(path, epoch + 1, metric, value)

    def _mark_best(self, path, epoch, metric, value):
        record = {"checkpoint": os.path.basename(path), "epoch": epoch,
                  "metric": metric, "value": value}
        _write_atomic(os.path.join(self.maskrcnn.log_dir, "best.json"),
                      json.dumps(record, indent=2).encode())
        _link_atomic(path, _best_path(self.maskrcnn))


def _beats(metric, value, best):
    """Whether an epoch's ``metric`` = ``value`` is a new best against best.json's record.

    Values of different metrics do not compare: a run resumed with validation data added or
    dropped measures ``val_loss`` where best.json holds ``loss`` (or the reverse). The metric of
    the run going on takes over, with a warning, and its epochs compare among themselves.
    """
    if best is None:
        return True
    if best.get("metric") != metric:
        logger.warning("best.json holds the best epoch by %s (epoch %s); this training measures "
                       "%s, so its epochs are compared by %s from now on",
                       best.get("metric"), best.get("epoch"), metric, metric)
        return True
    return value < best["value"]


def _best_path(maskrcnn):
    return maskrcnn.checkpoint_path.format(epoch=0)[:-len("_0000.h5")] + "_best.h5"


def _holds_epoch(best_path, numbered, epoch):
    """Whether ``best_path`` is ``numbered`` (a link) or a copy holding ``epoch``."""
    if not os.path.isfile(best_path):
        return False
    if os.path.samefile(best_path, numbered):
        return True
    from mrcnn.weights import WeightsFileError, read_attrs
    try:
        return read_attrs(best_path).get("epoch") == epoch
    except (WeightsFileError, OSError):
        return False


def _remove_temporaries(log_dir):
    """Remove the temporary files a killed process left in ``log_dir`` (a checkpoint's hidden
    ``.<name>.<random>.tmp``, ``best.json.tmp``, ``..._best.h5.tmp``). Only one process trains
    in a run directory, so none of them is being written."""
    pattern = re.compile(r"(\.mask_rcnn_.*\.h5\.[0-9a-f]{12}|best\.json|mask_rcnn_.*_best\.h5)"
                         r"\.tmp$")
    try:
        names = os.listdir(log_dir)
    except OSError:
        return
    for name in names:
        if pattern.fullmatch(name):
            _remove_quietly(os.path.join(log_dir, name))


def _read_best(best_file):
    """best.json's record, or None when absent or unreadable (then the next epoch re-marks)."""
    if not os.path.exists(best_file):
        return None
    try:
        with open(best_file) as f:
            best = json.load(f)
        float(best["value"])
        return best
    except (OSError, ValueError, KeyError, TypeError) as e:
        logger.warning("Cannot read %s (%s); the best checkpoint is marked anew", best_file, e)
        return None


def _write_atomic(path, data):
    tmp = path + ".tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        _remove_quietly(tmp)
        raise


def _link_atomic(source, target):
    """``target`` becomes a hard link to ``source`` (a copy where links are not supported)."""
    tmp = target + ".tmp"
    _remove_quietly(tmp)
    try:
        try:
            os.link(source, tmp)
        except OSError:
            import shutil
            shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    except BaseException as e:
        _remove_quietly(tmp)
        from mrcnn.weights import DiskFullError, _is_disk_full
        if isinstance(e, OSError) and _is_disk_full(e):
            raise DiskFullError(errno.ENOSPC, "Cannot mark the best checkpoint %s as %s: the disk "
                                "is full; %s is intact" % (source, target, source),
                                target) from e
        raise


def _remove_quietly(path):
    try:
        os.remove(path)
    except OSError:
        pass


def _optimizer(config, learning_rate):
    lr = (WarmupSchedule(learning_rate, config.WARMUP_STEPS)
          if getattr(config, "WARMUP_STEPS", 0) else learning_rate)
    clip = config.GRADIENT_CLIP_NORM
    optimizer = MomentumSGD(learning_rate=lr, momentum=config.LEARNING_MOMENTUM,
                            global_clipnorm=clip if clip else None)
    if getattr(config, "PRECISION", "float32") == "mixed_float16":
        # float16 gradients underflow without it; the scale adapts (halves on inf/NaN steps,
        # which are skipped, and doubles after 2,000 good ones).
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def train(maskrcnn, train_dataset, val_dataset, learning_rate, epochs, layers,
          augmentation=None, custom_callbacks=None, no_augmentation_sources=None,
          workers=None, seed=None):
    """Matterport's ``MaskRCNN.train``: fit from ``maskrcnn.epoch`` up to epoch ``epochs``.

    layers: "heads", "3+", "4+", "5+", "all" or a regex; augmentation: albumentations transform
    or imgaug augmenter; no_augmentation_sources: data set sources never augmented.
    seed: of the input sequence's shuffle and sampling (default: random; shared by all workers
    under MultiWorkerMirroredStrategy).
    Checkpoints go to ``maskrcnn.create_log_dir()``; afterwards ``maskrcnn.epoch`` is the last
    epoch completed (fewer than ``epochs`` when a callback stopped training).
    Returns the Keras History (None when ``epochs`` is not beyond the current epoch).
    """
    from mrcnn.training.data import MaskRCNNSequence

    config = maskrcnn.config
    model = maskrcnn.keras_model
    if epochs <= maskrcnn.epoch:
        logger.warning("train(): epochs=%d is not beyond the current epoch %d; nothing to do",
                       epochs, maskrcnn.epoch)
        return None
    layer_regex = LAYER_REGEX.get(layers, layers)
    workers = workers or min(4, os.cpu_count() or 1)
    # Several worker processes (MultiWorkerMirroredStrategy): every worker builds the same
    # sequence of batches (shared seed); at step s worker i trains on batch s * n + i, so one
    # step covers n consecutive batches, as one process with n replicas would. Only the chief
    # writes checkpoints and logs.
    worker, n_workers, shared_seed = 0, 1, None
    strategy = getattr(maskrcnn, "strategy", None)
    if is_multi_worker(strategy):
        worker, n_workers, shared_seed = worker_role(strategy)
        check_one_replica_per_worker(strategy, n_workers)
    is_chief = worker == 0
    seed = shared_seed if seed is None else seed
    # Passes over the data count from the epoch training resumes at: with the same seed (the
    # workers' shared one, or a given one) a resumed run reads new passes, not the first again.
    train_seq = MaskRCNNSequence(train_dataset, config, shuffle=True, augmentation=augmentation,
                                 no_augmentation_sources=no_augmentation_sources,
                                 steps=config.STEPS_PER_EPOCH * n_workers, workers=workers,
                                 seed=seed, name="training", first_pass=maskrcnn.epoch)
    val_seq = (MaskRCNNSequence(val_dataset, config, shuffle=True,
                                steps=config.VALIDATION_STEPS * n_workers, workers=workers,
                                seed=seed, name="validation", first_pass=maskrcnn.epoch)
               if val_dataset is not None else None)
    train_data, val_data = train_seq, val_seq
    if n_workers > 1:
        train_data = _worker_batches(strategy, train_seq, worker, n_workers)
        val_data = val_seq and _worker_batches(strategy, val_seq, worker, n_workers,
                                               pass_per_iterator=True)
    bad_loss = StopOnBadLoss(train_seq, n_workers)
    if is_chief:
        maskrcnn.create_log_dir()
        callbacks = [
            EpochTensorBoard(log_dir=maskrcnn.log_dir, histogram_freq=0, write_graph=False),
            HistoryCSVLogger(os.path.join(maskrcnn.log_dir, "history.csv"),
                             last_epoch=maskrcnn.epoch, append=True),
            bad_loss,
            CheckpointCallback(maskrcnn, bad_loss),
        ]
    else:
        callbacks = [bad_loss, _EpochCounter(maskrcnn)]
    callbacks += list(custom_callbacks or [])
    logger.info("Starting at epoch %d, LR=%g, checkpoints in %s", maskrcnn.epoch,
                learning_rate, maskrcnn.log_dir)
    scope = maskrcnn.strategy.scope() if maskrcnn.strategy is not None else contextlib.nullcontext()
    with scope:
        set_trainable(model, layer_regex)
        model.compile(optimizer=_optimizer(config, learning_rate),
                      jit_compile=bool(config.XLA))
        # Created here, the optimizer's slots exist before fit traces train_step. Left to the
        # first step, they are created inside the trace, and TensorFlow traces a function that
        # creates variables twice: the first step took twice as long (docs/benchmarks.md).
        model.optimizer.build(model.trainable_variables)
        # Frozen convolutions read their batch norm folded ahead (mrcnn.layers.conv) instead of
        # folding it in every step. The optimizer leaves frozen layers alone, so the caches hold
        # for the whole fit; refreshed here because an earlier fit wrote weights in its graph,
        # where a cache cannot see the writes.
        for cache in conv_layers.fold_caches(model, frozen_only=True):
            cache.refresh(force=True)
    # Keras traces the step functions inside fit: in static shapes when they are compiled.
    try:
        with portable.xla_static() if config.XLA else contextlib.nullcontext():
            history = model.fit(train_data, initial_epoch=maskrcnn.epoch, epochs=epochs,
                                steps_per_epoch=config.STEPS_PER_EPOCH, callbacks=callbacks,
                                validation_data=val_data,
                                validation_steps=config.VALIDATION_STEPS if val_seq else None,
                                # The sequence shuffles images itself; fit's own shuffle of the
                                # batch order would hide which batch a step trained on
                                # (StopOnBadLoss).
                                shuffle=False, verbose="auto")
    finally:
        for sequence in (train_seq, val_seq):
            if sequence is not None:
                sequence.close()
    # maskrcnn.epoch is not set to ``epochs`` here: CheckpointCallback advanced it with each
    # checkpoint, so a callback that stopped training early leaves it at the last epoch done.
    if bad_loss.bad is not None:
        _raise_diverged(maskrcnn, bad_loss.bad)
    return history


def _raise_diverged(maskrcnn, bad):
    try:
        last = maskrcnn.find_last()
    except FileNotFoundError:
        last = None
    bad = dict(bad, last_checkpoint=last)
    losses = ", ".join("%s=%s" % kv for kv in sorted(bad["losses"].items()))
    ids = ", ".join(repr(i) for i in bad["image_ids"]) or "unknown"
    workers = len(bad.get("worker_image_ids", ()))
    raise TrainingDivergedError(
        "Training stopped: the loss became non-finite (%s) at epoch %d, step %d. Images of that "
        "%s: %s. No checkpoint was written for epoch %d; %s. Check those images' annotations "
        "(a degenerate box or mask), leave them out of the data set and resume from "
        "find_last(), or lower the learning rate."
        % (losses, bad["epoch"], bad["step"],
           "step (the batches of all %d workers)" % workers if workers > 1 else "batch", ids,
           bad["epoch"],
           "the last good one is %s" % last if last else "there is no earlier checkpoint"), bad)


def _worker_batches(strategy, sequence, worker, n_workers, pass_per_iterator=False):
    """The distributed dataset of a multi-worker run: at step s, worker i's replica gets
    ``sequence[s * n_workers + i]``, and each pass over it (an epoch) moves the sequence on.

    tf.distribute's own split of a dataset would treat each of our batches as the global batch
    and cut it among the workers; this hands each worker whole batches of its own.

    How Keras iterates decides how passes are counted. fit() keeps one iterator of the training
    data for all epochs (steps_per_epoch set, length unknown), so that dataset is endless and
    moves to the next pass after each. evaluate(), and so fit()'s validation, makes a new
    iterator every time: with ``pass_per_iterator`` each iterator reads exactly one pass, the
    next one. An endless generator there would count its passes wrong: the abandoned iterator's
    prefetch had already started later ones, and the workers, each prefetching in its own time,
    validated on different passes.
    """
    sample = sequence[0]
    signature = {k: tf.TensorSpec((None,) + v.shape[1:], tf.as_dtype(v.dtype))
                 for k, v in sample.items()}
    passes = [sequence.first_pass]
    steps = len(sequence) // n_workers

    def batches():
        while True:
            epoch = passes[0]
            passes[0] += 1
            for step in range(steps):
                yield sequence.batch_at(epoch, step * n_workers + worker)
            if pass_per_iterator:
                return

    def dataset_fn(context):
        return tf.data.Dataset.from_generator(batches, output_signature=signature).prefetch(2)

    return strategy.distribute_datasets_from_function(dataset_fn)


class _EpochCounter(keras.callbacks.Callback):
    """On workers that write no checkpoint, keeps ``MaskRCNN.epoch`` counting as the chief's
    CheckpointCallback does."""

    def __init__(self, maskrcnn):
        super().__init__()
        self.maskrcnn = maskrcnn

    def on_epoch_end(self, epoch, logs=None):
        self.maskrcnn.epoch = epoch + 1
