"""Mask R-CNN weights in the Keras 2 HDF5 layout (Matterport's ``mask_rcnn_coco.h5``), for Keras 3.

Layout read and written here (what Keras 2 ``save_weights`` produced)::

    /                                   attrs: layer_names  array of bytes, every layer of the
                                                            top model in order, weightless too
                                               backend       "tensorflow"
                                               keras_version "2.0.8" (Matterport's file)
    /conv1                              attrs: weight_names [b"conv1/kernel:0", b"conv1/bias:0"]
    /conv1/conv1/kernel:0               dataset [kh, kw, in, out] float32
    /conv1/conv1/bias:0                 dataset [out]
    /bn_conv1                           attrs: weight_names gamma, beta, moving_mean,
                                               moving_variance (each "bn_conv1/<short>:0")
    /activation_1                       attrs: weight_names [] (weightless layers have a group)
    /rpn_model                          one group for the nested model; its weight names carry
                                        the inner layer's name: "rpn_conv_shared/kernel:0",
                                        "rpn_class_raw/bias:0", "rpn_bbox_pred/kernel:0", ...
    /mrcnn_class_conv1                  a TimeDistributed wrapper in Keras 2: the inner layer's
                                        weights under the wrapper's name
                                        ("mrcnn_class_conv1/kernel:0")

A weight's dataset lives at ``<group>/<weight name>``, so ``f["conv1"]["conv1/kernel:0"]``.
Keras 2 splits attributes larger than 64 KB into ``<name>0``, ``<name>1``, ... chunks; both forms
are read, and written when needed. Files written by ``model.save()`` hold the same structure
under a ``model_weights`` group. Keras 3's own ``*.weights.h5`` files (``layers``/``vars``
groups, no ``layer_names``) are handed to ``keras_model.load_weights``.

Naming used throughout this module: a *weighted layer* is a layer that holds weights and is not
itself a ``keras.Model``; nested models are walked into. Its *qualified name* is its own name at
the top level and ``"<outer model>/<inner layer>"`` inside a nested model
(``"rpn_model/rpn_conv_shared"``).
A weight's *short name* is the last component of its name without ``:0`` (``kernel``, ``bias``,
``gamma``, ``beta``, ``moving_mean``, ``moving_variance``).
"""

import contextlib
import dataclasses
import errno
import logging
import os
import re
import shutil
import tempfile
import uuid
import zipfile

import h5py
import keras
import numpy as np

log = logging.getLogger(__name__)

__all__ = [
    "CLASS_DEPENDENT_HEADS",
    "DiskFullError",
    "LoadReport",
    "WeightsFileError",
    "WeightsMismatchError",
    "checkpoint_problem",
    "load_weights_h5",
    "read_attrs",
    "read_weights_h5",
    "save_weights_h5",
    "weighted_layers",
]

# Heads whose weight shapes depend on NUM_CLASSES, and the exclude list that lets a model with
# a different number of classes start from Matterport's COCO weights ("mrcnn_bbox" is the
# weightless Reshape after "mrcnn_bbox_fc"; Matterport's samples list it too).
CLASS_DEPENDENT_HEADS = ("mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_mask")
CLASS_HEADS_EXCLUDE = ["mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_bbox", "mrcnn_mask"]

# Keras 2 chunked attributes above this size (HDF5 object header limit).
_HDF5_OBJECT_HEADER_LIMIT = 64512
_LIST_PREVIEW = 10


class WeightsMismatchError(ValueError):
    """The weights in a file do not fit the model (shape, weight names or layer count)."""


class WeightsFileError(ValueError):
    """A weights file is not HDF5, is corrupt or truncated, or has an unknown layout."""


class DiskFullError(OSError):
    """A weights file could not be written because the disk (or quota) is full. The file at the
    destination, if any, is left as it was, and no temporary file remains."""


def _is_disk_full(exc):
    """True for ENOSPC / EDQUOT, also when HDF5 reports it only in its message."""
    if getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc)
    return "No space left on device" in text or "errno = 28" in text or "Disk quota" in text


# Errors h5py and NumPy raise for damaged files (HDF5 reports most as OSError, some as
# KeyError/RuntimeError; attributes of unexpected types end in TypeError/ValueError).
_READ_ERRORS = (OSError, KeyError, RuntimeError, TypeError, ValueError, AttributeError,
                IndexError, UnicodeDecodeError)


@contextlib.contextmanager
def _reading(path):
    """Turn any low-level error while reading ``path`` into one WeightsFileError naming it."""
    try:
        yield
    except (WeightsFileError, WeightsMismatchError, FileNotFoundError, IsADirectoryError):
        raise
    except _READ_ERRORS as e:
        raise WeightsFileError("Cannot read weights file %s (corrupt, truncated, or not a weights "
                               "file): %s: %s" % (path, type(e).__name__, e)) from e


@dataclasses.dataclass
class LoadReport:
    """What ``load_weights_h5`` did. Names are qualified layer names (see module docstring).

    loaded: model layers whose weights were all set from the file.
    skipped: layers left untouched because ``exclude`` named them (model or file side).
    missing_in_model: weighted layers of the file with no matching model layer (not loaded).
    missing_in_file: weighted model layers the file has no weights for (kept their values).
    """

    filepath: str = ""
    loaded: list = dataclasses.field(default_factory=list)
    skipped: list = dataclasses.field(default_factory=list)
    missing_in_model: list = dataclasses.field(default_factory=list)
    missing_in_file: list = dataclasses.field(default_factory=list)
    file_format: str = "keras2"
    num_arrays: int = 0

    def __str__(self):
        lines = ["Loaded %d layer(s) (%d arrays) from %s [%s layout]"
                 % (len(self.loaded), self.num_arrays, self.filepath, self.file_format)]
        for label, names in (("skipped (excluded)", self.skipped),
                             ("in file but not in model (not loaded)", self.missing_in_model),
                             ("in model but not in file (unchanged)", self.missing_in_file)):
            if names:
                lines.append("  %s: %d: %s" % (label, len(names), _preview(names)))
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Model side


@dataclasses.dataclass
class _ModelLayer:
    qualname: str          # "conv1" or "rpn_model/rpn_conv_shared"
    top: str               # top-level layer name = HDF5 group holding its weights
    layer: object
    nested: bool           # inside a nested model (weights prefixed by the inner layer's name)


def _walk(layer, top, prefix):
    qualname = prefix + layer.name
    if isinstance(layer, keras.Model):
        for inner in layer.layers:
            yield from _walk(inner, top, qualname + "/")
    elif layer.weights:
        yield _ModelLayer(qualname, top, layer, nested=bool(prefix))


def _model_layers(keras_model):
    for layer in keras_model.layers:
        yield from _walk(layer, layer.name, "")


def weighted_layers(keras_model):
    """Yield ``(qualified_name, layer)`` for every layer holding weights, in model order.

    Nested models (e.g. ``rpn_model``) are walked into and not yielded themselves; their inner
    layers come as ``("rpn_model/rpn_conv_shared", layer)``. Layers such as TimeDistributed
    that wrap another layer are yielded as one layer.
    """
    for entry in _model_layers(keras_model):
        yield entry.qualname, entry.layer


def _all_model_names(keras_model):
    """Names of all layers at any depth (weightless too), and the qualified names."""
    names = set()

    def visit(layer, prefix):
        names.add(layer.name)
        names.add(prefix + layer.name)
        if isinstance(layer, keras.Model):
            for inner in layer.layers:
                visit(inner, prefix + layer.name + "/")

    for layer in keras_model.layers:
        visit(layer, "")
    return names


def _short_name(name):
    """'conv1/kernel:0' -> 'kernel'; 'kernel' -> 'kernel'."""
    return re.sub(r":\d+$", "", name).split("/")[-1]


def _var_short(variable):
    return _short_name(getattr(variable, "path", None) or variable.name)


# --------------------------------------------------------------------------------------------
# File side


@dataclasses.dataclass
class _FileWeight:
    group: str             # HDF5 group (top-level layer name)
    name: str              # stored weight name, "conv1/kernel:0"
    owner: str             # layer that owned it: "conv1", "rpn_conv_shared"
    short: str             # "kernel"
    dataset: object        # h5py.Dataset, read once at assignment time

    @property
    def shape(self):
        return tuple(self.dataset.shape)


def _decode(value):
    if isinstance(value, bytes):
        return value.decode("utf8")
    if isinstance(value, np.bytes_):
        return bytes(value).decode("utf8")
    return str(value)


def _read_str_list_attr(obj, name):
    """A list-of-strings attribute, reassembling Keras 2 chunks; None when absent."""
    if name in obj.attrs:
        data = obj.attrs[name]
    elif (name + "0") in obj.attrs:
        chunks, i = [], 0
        while ("%s%d" % (name, i)) in obj.attrs:
            chunks.extend(np.atleast_1d(obj.attrs["%s%d" % (name, i)]).tolist())
            i += 1
        data = chunks
    else:
        return None
    return [_decode(x) for x in np.atleast_1d(np.asarray(data, dtype=object)).tolist()]


def _write_str_list_attr(obj, name, values):
    """Write as Keras 2 did: a fixed-length bytes array, chunked above the header limit."""
    data = np.array([v.encode("utf8") for v in values], dtype="S") if values else \
        np.array([], dtype="S1")
    if data.nbytes <= _HDF5_OBJECT_HEADER_LIMIT:
        obj.attrs[name] = data
        return
    num_chunks = int(np.ceil(data.nbytes / _HDF5_OBJECT_HEADER_LIMIT))
    while max(c.nbytes for c in np.array_split(data, num_chunks)) > _HDF5_OBJECT_HEADER_LIMIT:
        num_chunks += 1
    for i, chunk in enumerate(np.array_split(data, num_chunks)):
        obj.attrs["%s%d" % (name, i)] = chunk


def _check_path(filepath):
    path = os.fspath(filepath)
    if not os.path.exists(path):
        raise FileNotFoundError("Weights file not found: %s" % path)
    if os.path.isdir(path):
        raise IsADirectoryError("Weights path is a directory, not a file: %s" % path)
    return path


def _open_h5(filepath):
    """Open for reading, with errors that name the path."""
    path = _check_path(filepath)
    if not h5py.is_hdf5(path):
        hint = ""
        if zipfile.is_zipfile(path):
            hint = (" It is a zip archive, probably a Keras 3 '.keras' model file: load it with "
                    "keras.saving.load_model or keras_model.load_weights instead.")
        raise WeightsFileError("%s is not an HDF5 weights file (corrupt, truncated or another "
                               "format).%s" % (path, hint))
    try:
        return path, h5py.File(path, "r")
    except OSError as e:
        raise WeightsFileError("Cannot read HDF5 weights file %s (corrupt or truncated?): %s"
                               % (path, e)) from e


def _keras2_root(f):
    """The group holding the Keras 2 layout (the root, or ``model_weights``), else None."""
    if _read_str_list_attr(f, "layer_names") is not None:
        return f
    mw = f.get("model_weights")
    if isinstance(mw, h5py.Group) and _read_str_list_attr(mw, "layer_names") is not None:
        return mw
    return None


def _is_keras3_layout(f):
    return isinstance(f.get("layers"), h5py.Group) or isinstance(f.get("vars"), h5py.Group)


def _keras2_root_or_raise(f, path):
    root = _keras2_root(f)
    if root is None:
        if _is_keras3_layout(f):
            raise WeightsFileError(
                "%s is a Keras 3 weights file ('layers'/'vars' groups), not the Keras 2 layout; "
                "load it with keras_model.load_weights or load_weights_h5." % path)
        raise WeightsFileError(
            "%s has no 'layer_names' attribute at its root or in a 'model_weights' group: not a "
            "Keras weights file. Root keys: %s" % (path, _preview(sorted(f.keys()))))
    return root


def _file_index(root, path):
    """Ordered {group name: [_FileWeight]} for the groups holding weights; all layer names."""
    layer_names = _read_str_list_attr(root, "layer_names")
    groups = {}
    for lname in layer_names:
        group = root.get(lname)
        if not isinstance(group, h5py.Group):
            raise WeightsFileError("%s lists layer '%s' in layer_names but has no group for it "
                                   "(corrupt file?)" % (path, lname))
        weight_names = _read_str_list_attr(group, "weight_names") or []
        entries = []
        for wname in weight_names:
            dataset = group.get(wname)
            if not isinstance(dataset, h5py.Dataset):
                raise WeightsFileError("%s: group '%s' lists weight '%s' but holds no dataset "
                                       "for it (corrupt file?)" % (path, lname, wname))
            parts = re.sub(r":\d+$", "", wname).split("/")
            owner = parts[-2] if len(parts) >= 2 else lname
            entries.append(_FileWeight(lname, wname, owner, parts[-1], dataset))
        if entries:
            groups[lname] = entries
    return groups, layer_names


def _file_keys(group_name, weights):
    """Qualified names of the layers a group stores: the group itself, or group/owner when it
    holds several layers (a nested model)."""
    owners = list(dict.fromkeys(w.owner for w in weights))
    if len(owners) == 1:
        return {group_name: weights}
    return {"%s/%s" % (group_name, o): [w for w in weights if w.owner == o] for o in owners}


def _read_dataset(fw, path):
    kind = getattr(fw.dataset.dtype, "kind", "?")
    if kind not in "fiub":
        raise WeightsFileError("%s: weight '%s' of layer '%s' holds %s values, not numbers "
                               "(corrupt or not a weights file)"
                               % (path, fw.name, fw.group, fw.dataset.dtype))
    try:
        return np.asarray(fw.dataset[()])
    except _READ_ERRORS as e:
        raise WeightsFileError("%s: cannot read weight '%s' of layer '%s' (corrupt or truncated "
                               "file?): %s" % (path, fw.name, fw.group, e)) from e


# --------------------------------------------------------------------------------------------
# Loading


def _preview(names, limit=_LIST_PREVIEW):
    names = list(names)
    if len(names) <= limit:
        return ", ".join(names)
    return "%s, ... and %d more" % (", ".join(names[:limit]), len(names) - limit)


def _is_excluded(qualname, exclude):
    return qualname in exclude or any(part in exclude for part in qualname.split("/"))


def _mismatch_hint(qualname):
    parts = qualname.split("/")
    head = next((p for p in parts if p in CLASS_DEPENDENT_HEADS), None)
    if head is not None:
        return ("'%s' depends on the number of classes: the model's NUM_CLASSES differs from "
                "the one the weights were trained with. To start from these weights with your "
                "own classes, pass exclude=%r." % (head, CLASS_HEADS_EXCLUDE))
    return ("Build the model with the configuration the weights were saved with (backbone, "
            "layer sizes), or pass exclude=['%s'] to leave this layer as it is." % parts[-1])


def _shape_error(path, qualname, fw, variable):
    return WeightsMismatchError(
        "Cannot load %s: layer '%s' weight '%s' (stored as '%s') has shape %s in the file but %s "
        "in the model. %s" % (path, qualname, _var_short(variable), fw.name, fw.shape,
                              tuple(variable.shape), _mismatch_hint(qualname)))


def _pair_by_name(path, entry, candidates):
    """[(variable, _FileWeight)] for one layer, matched by short weight name."""
    variables = list(entry.layer.weights)
    m_short = [_var_short(v) for v in variables]
    f_short = [w.short for w in candidates]
    if len(set(m_short)) == len(m_short) and len(set(f_short)) == len(f_short):
        file_only = [s for s in f_short if s not in m_short]
        model_only = [s for s in m_short if s not in f_short]
        if file_only or model_only:
            raise WeightsMismatchError(
                "Cannot load %s: layer '%s' has weights [%s] in the file but [%s] in the model "
                "(only in the file: [%s]; only in the model: [%s]). The layer was built with a "
                "different setting (e.g. use_bias, center, scale); build it like the saved one or "
                "pass exclude=['%s']."
                % (path, entry.qualname, ", ".join(f_short), ", ".join(m_short),
                   ", ".join(file_only), ", ".join(model_only), entry.layer.name))
        by_short = {w.short: w for w in candidates}
        pairs = [(v, by_short[s]) for v, s in zip(variables, m_short)]
    else:
        # Repeated short names (a layer made of sublayers): fall back to storage order.
        if len(variables) != len(candidates):
            raise WeightsMismatchError(
                "Cannot load %s: layer '%s' has %d weights in the file [%s] but %d in the model "
                "[%s]." % (path, entry.qualname, len(candidates),
                           ", ".join(w.name for w in candidates), len(variables),
                           ", ".join(getattr(v, "path", v.name) for v in variables)))
        pairs = list(zip(variables, candidates))
    for variable, fw in pairs:
        if tuple(variable.shape) != fw.shape:
            raise _shape_error(path, entry.qualname, fw, variable)
    return pairs


def _plan_by_name(path, model_entries, groups, exclude, report):
    plan = []
    consumed = set()
    for entry in model_entries:
        if _is_excluded(entry.qualname, exclude):
            report.skipped.append(entry.qualname)
            continue
        group = groups.get(entry.top, [])
        if entry.nested:
            candidates = [w for w in group if w.owner == entry.layer.name]
        else:
            candidates = list(group)
        if not candidates:
            report.missing_in_file.append(entry.qualname)
            continue
        plan.append((entry.qualname, _pair_by_name(path, entry, candidates)))
        consumed.update(id(w) for w in candidates)

    for group_name, weights in groups.items():
        left = [w for w in weights if id(w) not in consumed]
        if not left:
            continue
        if len(left) == len(weights):
            keys = [group_name]
        else:
            keys = ["%s/%s" % (group_name, o) for o in dict.fromkeys(w.owner for w in left)]
        for key in keys:
            if _is_excluded(key, exclude):
                covered = any(s == key or s.startswith(key + "/") for s in report.skipped)
                if not covered:
                    report.skipped.append(key)
            else:
                report.missing_in_model.append(key)
    return plan


def _plan_by_order(path, model_entries, groups, exclude, report):
    """Keras 2 topological loading: i-th weighted top-level layer <- i-th weighted group."""
    tops = {}
    for entry in model_entries:
        tops.setdefault(entry.top, []).append(entry)
    model_tops = list(tops.items())
    file_groups = list(groups.items())
    if len(model_tops) != len(file_groups):
        raise WeightsMismatchError(
            "Cannot load %s with by_name=False: the model has %d top-level layers with weights "
            "(%s) but the file has %d (%s). Use by_name=True to match layers by name."
            % (path, len(model_tops), _preview([n for n, _ in model_tops]), len(file_groups),
               _preview([n for n, _ in file_groups])))
    plan = []
    for (top_name, entries), (group_name, weights) in zip(model_tops, file_groups):
        owned = [(e, v) for e in entries for v in e.layer.weights]
        if len(owned) != len(weights):
            raise WeightsMismatchError(
                "Cannot load %s with by_name=False: model layer '%s' has %d weights [%s] but "
                "file layer '%s' in the same position has %d [%s]."
                % (path, top_name, len(owned),
                   ", ".join(getattr(v, "path", v.name) for _, v in owned), group_name,
                   len(weights), ", ".join(w.name for w in weights)))
        per_layer = {}
        for (entry, variable), fw in zip(owned, weights):
            if _is_excluded(entry.qualname, exclude):
                continue
            if tuple(variable.shape) != fw.shape:
                raise _shape_error(path, entry.qualname, fw, variable)
            per_layer.setdefault(entry.qualname, []).append((variable, fw))
        for entry in entries:
            if _is_excluded(entry.qualname, exclude):
                report.skipped.append(entry.qualname)
            else:
                plan.append((entry.qualname, per_layer[entry.qualname]))
    return plan


def _assign(variable, array):
    if np.dtype(array.dtype).name != str(variable.dtype):
        # Keras casts e.g. float32 file values to a float16/bfloat16 variable of a
        # mixed-precision model; do it explicitly so NumPy-less dtypes work too.
        array = keras.ops.cast(array, variable.dtype)
    variable.assign(array)


def _warn_missing(report):
    if report.missing_in_model:
        log.warning("%d weighted layer(s) in %s have no layer of that name in the model and were "
                    "not loaded: %s", len(report.missing_in_model), report.filepath,
                    _preview(report.missing_in_model))
    if report.missing_in_file:
        log.warning("%d weighted model layer(s) have no weights in %s and keep their current "
                    "values: %s", len(report.missing_in_file), report.filepath,
                    _preview(report.missing_in_file))


def _load_keras3(keras_model, path, by_name, exclude, verbose):
    """Delegate a Keras 3 ``layers``/``vars`` file to ``keras_model.load_weights``."""
    if exclude:
        raise ValueError(
            "%s is a Keras 3 weights file ('layers'/'vars' layout), which Keras loads by model "
            "structure, so exclude=%r cannot be honoured. Load it into a model of the same "
            "architecture, re-save it with mrcnn.weights.save_weights_h5 (Keras 2 layout, loads "
            "by name) and load that file with exclude." % (path, sorted(exclude)))
    note = ("%s is a Keras 3 weights file: delegating to keras_model.load_weights, which matches "
            "layers by model structure, not by name." % path)
    if by_name:
        log.warning(note + " The model must have the same layers as the saved one.")
    elif verbose:
        log.info(note)
    tmpdir = None
    target = path
    if not path.endswith(".weights.h5"):
        # Keras picks its loader from the file name; a '.h5' name would get the Keras 2 one.
        tmpdir = tempfile.mkdtemp(prefix="mrcnn_weights_")
        target = os.path.join(tmpdir, "model.weights.h5")
        try:
            os.symlink(os.path.abspath(path), target)
        except OSError:
            shutil.copyfile(path, target)
    try:
        keras_model.load_weights(target)
    except ValueError as e:
        raise WeightsMismatchError(
            "Cannot load %s (Keras 3 weights file) into this model: its layers differ from the "
            "saved model's, and Keras 3 files are matched by structure, so by_name loading of "
            "individual layers is not possible. Use a model of the same architecture, or convert "
            "the file with save_weights_h5 from such a model. Keras said: %s" % (path, e)) from e
    except _READ_ERRORS as e:
        raise WeightsFileError("Cannot read Keras 3 weights file %s (corrupt or truncated?): "
                               "%s: %s" % (path, type(e).__name__, e)) from e
    finally:
        if tmpdir is not None:
            shutil.rmtree(tmpdir, ignore_errors=True)
    entries = list(_model_layers(keras_model))
    report = LoadReport(filepath=path, loaded=[e.qualname for e in entries], file_format="keras3",
                        num_arrays=sum(len(e.layer.weights) for e in entries))
    if verbose:
        log.info("%s", report)
    return report


def load_weights_h5(keras_model, filepath, by_name=True, exclude=None, verbose=1):
    """Load Keras 2 layout HDF5 weights (e.g. Matterport's ``mask_rcnn_coco.h5``) into a model.

    keras_model: a built Keras 3 model; nested models (``rpn_model``) are walked into.
    filepath: HDF5 file from Keras 2 ``save_weights`` / ``save`` (``model_weights`` group),
        ``save_weights_h5``, or a Keras 3 ``*.weights.h5`` (delegated to Keras, see below).
    by_name: True matches each layer to the file group of the same name (inner layers of a nested
        model to the weights in the nested model's group prefixed by their name), and each
        weight by its short name, so storage order does not matter. False uses Keras 2
        topological loading: the i-th top-level layer holding weights gets the i-th file group
        holding weights, weights by position; the counts must agree.
    exclude: layer names to leave untouched; a name may be a top-level layer, a nested model
        (all its inner layers) or an inner layer (``"rpn_bbox_pred"`` or
        ``"rpn_model/rpn_bbox_pred"``).
    verbose: 0 quiet, 1 logs the summary, 2 also logs each loaded layer (``logging.INFO``).
        Layers missing on either side are always logged with ``logging.warning``.

    Values are cast to each variable's dtype (mixed precision). Shapes and weight names are all
    checked before any variable is assigned, so a mismatch leaves the model unchanged.

    Returns: LoadReport.
    Raises: FileNotFoundError; WeightsFileError (not HDF5, corrupt, unknown layout);
        WeightsMismatchError (shape, weight-name or layer-count mismatch; names the layer,
        the weight, both shapes and the fix).
    """
    if exclude is None:
        exclude = set()
    elif isinstance(exclude, str):
        exclude = {exclude}
    else:
        exclude = set(exclude)
    model_entries = list(_model_layers(keras_model))
    if not model_entries:
        raise ValueError("The model '%s' holds no weights; build it (call it on an input) before "
                         "loading %s." % (keras_model.name, os.fspath(filepath)))

    path, f = _open_h5(filepath)
    with _reading(path), f:
        keras3 = _keras2_root(f) is None and _is_keras3_layout(f)
    if keras3:  # Keras opens the file itself, so it is closed again first.
        return _load_keras3(keras_model, path, by_name, exclude, verbose)

    path, f = _open_h5(path)
    with _reading(path), f:
        root = _keras2_root_or_raise(f, path)
        groups, layer_names = _file_index(root, path)

        file_names = set(layer_names)
        file_names.update(w.owner for ws in groups.values() for w in ws)
        file_names.update("%s/%s" % (w.group, w.owner) for ws in groups.values() for w in ws)
        unknown = sorted(n for n in exclude
                         if n not in file_names and n not in _all_model_names(keras_model))
        if unknown:
            log.warning("exclude names neither a model layer nor a layer of %s: %s",
                        path, _preview(unknown))

        report = LoadReport(filepath=path)
        if by_name:
            plan = _plan_by_name(path, model_entries, groups, exclude, report)
        else:
            plan = _plan_by_order(path, model_entries, groups, exclude, report)

        if by_name and not plan and groups and not report.skipped:
            raise WeightsMismatchError(
                "Cannot load %s: none of its %d weighted layers has a layer of the same name in "
                "model '%s': it holds the weights of another model (or of this one under other layer "
                "names: load those with by_name=False, by layer order). Layers in the file: %s. "
                "Layers in the model: %s." % (path, len(groups), keras_model.name,
                                             _preview(groups), _preview(e.qualname
                                                                        for e in model_entries)))
        # Every array is read before any variable is set: a file damaged halfway leaves the
        # model as it was.
        arrays = [(qualname, [(variable, fw, _read_dataset(fw, path)) for variable, fw in pairs])
                  for qualname, pairs in plan]

    for qualname, triples in arrays:
        for variable, _, array in triples:
            _assign(variable, array)
        report.loaded.append(qualname)
        report.num_arrays += len(triples)
        if verbose >= 2:
            log.info("loaded %s (%s)", qualname, ", ".join(fw.short for _, fw, _ in triples))

    _warn_missing(report)
    if verbose:
        log.info("%s", report)
    return report


# --------------------------------------------------------------------------------------------
# Saving and reading


def _to_numpy(variable):
    array = np.asarray(keras.ops.convert_to_numpy(variable))
    if array.dtype.kind == "V" or array.dtype.name == "bfloat16":
        # HDF5 has no bfloat16; float32 holds it exactly.
        array = array.astype(np.float32)
    return array


def _groups_to_write(keras_model):
    """[(layer name, [(weight name, array)])] for every top-level layer, weightless ones too."""
    written = set()
    groups = []
    tops = {}
    for entry in _model_layers(keras_model):
        tops.setdefault(entry.top, []).append(entry)
    for layer in keras_model.layers:
        weights = []
        for entry in tops.get(layer.name, []):
            variables = list(entry.layer.weights)
            shorts = [_var_short(v) for v in variables]
            unique = len(set(shorts)) == len(shorts)
            for variable, short in zip(variables, shorts):
                if unique:
                    wname = "%s/%s:0" % (entry.layer.name, short)
                else:
                    # Sublayers with the same short names: keep them apart by their full path.
                    wname = "%s:0" % getattr(variable, "path", variable.name)
                weights.append((wname, _to_numpy(variable)))
                written.add(id(variable))
        groups.append((layer.name, weights))
    lost = [getattr(v, "path", v.name) for v in keras_model.weights if id(v) not in written]
    if lost:
        raise ValueError("save_weights_h5 cannot place %d variable(s) of model '%s' in the "
                         "Keras 2 layout (variables owned by a nested model itself rather than "
                         "by its layers): %s" % (len(lost), keras_model.name, _preview(lost)))
    return groups


def save_weights_h5(keras_model, filepath, attrs=None):
    """Write the model's weights in the Keras 2 layout (see module docstring), atomically.

    Root attributes: ``layer_names`` (all top-level layers in order), ``backend="tensorflow"``,
    ``keras_version`` (this Keras), plus ``attrs`` (e.g. ``{"epoch": 3}``; values storable as
    HDF5 attributes: numbers, strings, arrays). Each top-level layer gets a group; a nested
    model gets one group whose weight names are prefixed by the inner layer's name.

    The file is written to a temporary file in the same directory and moved over ``filepath``
    with ``os.replace`` only once complete: if anything fails, an existing file is left as it
    was and the temporary file is removed.
    """
    path = os.fspath(filepath)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError("Cannot save weights to %s: directory %s does not exist"
                                % (path, directory))
    attrs = dict(attrs or {})
    reserved = sorted(k for k in attrs if re.fullmatch(r"layer_names\d*", str(k)))
    if reserved:
        raise ValueError("attrs may not set %s: written from the model" % reserved)
    groups = _groups_to_write(keras_model)

    # Not tempfile.mkstemp: its 0600 mode would end up on the final file; os.open applies the
    # umask like an ordinary file creation. The hidden ".tmp" name keeps checkpoint scans
    # (files named mask_rcnn_*.h5) from ever picking up a half-written file.
    # A process killed while writing this same file left its temporary file: remove it (a
    # full-size checkpoint each), so resuming after kills does not fill the disk.
    stale = re.compile(r"\.%s\.[0-9a-f]{12}\.tmp$" % re.escape(os.path.basename(path)))
    for name in os.listdir(directory):
        if stale.match(name):
            try:
                os.remove(os.path.join(directory, name))
            except OSError:
                pass
    tmp = os.path.join(directory, ".%s.%s.tmp" % (os.path.basename(path), uuid.uuid4().hex[:12]))
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    try:
        with h5py.File(tmp, "w") as f:
            _write_str_list_attr(f, "layer_names", [name for name, _ in groups])
            f.attrs["backend"] = b"tensorflow"
            f.attrs["keras_version"] = keras.__version__.encode("utf8")
            for key, value in attrs.items():
                try:
                    f.attrs[str(key)] = value
                except (TypeError, ValueError) as e:
                    raise ValueError("attrs[%r] = %r cannot be stored as an HDF5 attribute of %s: "
                                     "%s" % (key, value, path, e)) from e
            for name, weights in groups:
                group = f.create_group(name)
                _write_str_list_attr(group, "weight_names", [w for w, _ in weights])
                for wname, array in weights:
                    group.create_dataset(wname, data=array)
            f.flush()
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.remove(tmp)
        except OSError:
            pass
        if isinstance(e, Exception) and _is_disk_full(e):
            raise DiskFullError(
                errno.ENOSPC, "Cannot save weights to %s: the disk is full (no space left on "
                "device in %s). %s; no partial file was left. Free some space and save again."
                % (path, directory, "The previous file there is unchanged"
                   if os.path.exists(path) else "Nothing was written"), path) from e
        raise


def read_weights_h5(filepath):
    """All weights of a Keras 2 layout file as ``{layer: {short name: np.ndarray}}``.

    Layers are keyed by their qualified name: the group name, or ``"<group>/<inner layer>"``
    for a group holding several layers' weights (a nested model such as ``rpn_model``; a nested
    model with a single weighted layer is indistinguishable from a plain layer and keyed by the
    group name). Within a layer, weights are keyed by short name (``kernel``, ``moving_mean``),
    or by the stored name without ``:0`` when short names repeat. Arrays keep the file's dtype.
    """
    path, f = _open_h5(filepath)
    out = {}
    with _reading(path), f:
        root = _keras2_root_or_raise(f, path)
        groups, _ = _file_index(root, path)
        for group_name, weights in groups.items():
            for key, layer_weights in _file_keys(group_name, weights).items():
                shorts = [w.short for w in layer_weights]
                unique = len(set(shorts)) == len(shorts)
                out[key] = {(w.short if unique else re.sub(r":\d+$", "", w.name)):
                            _read_dataset(w, path) for w in layer_weights}
    return out


def checkpoint_problem(filepath):
    """Why ``filepath`` cannot be a usable weights file, or ``None`` when it looks sound.

    A cheap check for scanning checkpoint folders (``find_last``/``find_best``): the file starts
    with the HDF5 signature, HDF5 opens it (which also catches a file shorter than HDF5 recorded
    when writing it, i.e. truncated), and it has ``layer_names`` (root or ``model_weights``).
    Weight values are not read.
    """
    path = os.fspath(filepath)
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError as e:
        return "cannot be opened (%s)" % e
    if head != b"\x89HDF\r\n\x1a\n":
        return "is empty" if not head else "is not an HDF5 file (no HDF5 signature)"
    try:
        with h5py.File(path, "r") as f:
            if _keras2_root(f) is None:
                return "has no layer_names: not a Keras weights file"
    except _READ_ERRORS as e:
        return "is damaged or truncated (%s)" % e
    return None


def _decode_attr(value):
    if isinstance(value, (bytes, np.bytes_)):
        return _decode(value)
    if isinstance(value, np.ndarray):
        if value.dtype.kind in ("S", "O", "U"):
            return [_decode(v) for v in value.tolist()]
        return value
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_attrs(filepath):
    """Root attributes of a weights file as Python values (bytes decoded to str, string arrays
    to lists of str, NumPy scalars to Python scalars); Keras 2 chunked attributes such as
    ``layer_names0``, ``layer_names1`` come back joined as ``layer_names``. For a ``model.save()``
    file, attributes of its ``model_weights`` group are added where the root lacks them.
    """
    path, f = _open_h5(filepath)
    out = {}
    with _reading(path), f:
        sources = [f]
        if isinstance(f.get("model_weights"), h5py.Group):
            sources.append(f["model_weights"])
        for obj in sources:
            chunked = set()
            for name in ("layer_names", "weight_names"):
                if name not in obj.attrs and (name + "0") in obj.attrs:
                    out.setdefault(name, _read_str_list_attr(obj, name))
                    chunked.update(k for k in obj.attrs if re.fullmatch(name + r"\d+", k))
            for key, value in obj.attrs.items():
                if key not in chunked:
                    out.setdefault(key, _decode_attr(value))
    return out
