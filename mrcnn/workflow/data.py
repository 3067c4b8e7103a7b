"""Loading a data set for the workflow: VIA (1.x/2.x) or COCO JSON, one subset or train + val
with the same class ids.

Layouts::

    VIA:   DIR/train/via_region_data.json + images     DIR/val/via_region_data.json + images
    COCO:  DIR/annotations/instances_train<year>.json  DIR/train<year>/ images   (val alike)
       or  DIR/train/<annotation file> + images          (with --annotation-file NAME)

Classes: for VIA every region is one class (``classes=["mask"]``, the default name ``object``)
or the value of a region attribute (``class_attribute="mask_type"``; ``classes`` then fixes the
names and their order). For COCO the classes are the categories (``classes`` keeps only those
named).
"""

import os

from mrcnn.workflow.errors import WorkflowError

FORMATS = ("via", "coco")
VIA_ANNOTATION_FILE = "via_region_data.json"


def _coco_paths(data_dir, subset, annotation_file=None, year=""):
    """``(annotation json, image folder, places looked)`` of a COCO subset."""
    looked = []
    if annotation_file:
        candidates = [(os.path.join(data_dir, subset, annotation_file),
                       os.path.join(data_dir, subset))]
    else:
        candidates = [(os.path.join(data_dir, "annotations", f"instances_{subset}{year}.json"),
                       os.path.join(data_dir, f"{subset}{year}"))]
    for json_path, image_dir in candidates:
        looked.append(json_path)
        if os.path.isfile(json_path):
            if not os.path.isdir(image_dir):
                raise WorkflowError(f"{json_path}: its image folder {image_dir} is missing")
            return json_path, image_dir
    raise WorkflowError(
        f"no COCO annotation file for the {subset!r} subset: looked for "
        f"{', '.join(looked)}. Lay the data set out as DIR/annotations/instances_{subset}.json "
        f"+ DIR/{subset}/ (--year Y for instances_{subset}Y.json), or name the JSON in "
        f"DIR/{subset}/ with --annotation-file")


def check_via_layout(data_dir, subset, annotation_file=VIA_ANNOTATION_FILE):
    """Path of ``data_dir/subset/annotation_file``; WorkflowError naming what is missing."""
    data_dir = os.fspath(data_dir)
    folder = os.path.join(data_dir, subset)
    json_path = os.path.join(folder, annotation_file)
    if not os.path.isdir(data_dir):
        raise WorkflowError(f"data set directory not found: {data_dir} (check --data)")
    if not os.path.isdir(folder):
        raise WorkflowError(f"subset folder not found: {folder} (expected DIR/{subset}/ with "
                            f"{annotation_file} and the images; check --data)")
    if not os.path.isfile(json_path):
        raise WorkflowError(f"annotation file not found: {json_path} (export the VIA "
                            f"annotations as JSON there, or name the file with "
                            f"--annotation-file; for COCO JSON use --format coco)")
    return json_path


def check_not_empty(images, json_path, subset):
    """WorkflowError naming ``json_path`` when ``images`` (a data set's image_info, or the part
    of it one file added) is empty."""
    if not images:
        raise WorkflowError(f"{json_path}: no image with a usable region; the subset {subset!r} "
                            f"is empty (annotate at least one object)")


def _load_via(dataset, data_dir, subset, annotation_file, class_attribute, classes):
    json_path = check_via_layout(data_dir, subset, annotation_file)
    if class_attribute:
        names = dataset.load_via(data_dir, subset, annotation_file=annotation_file,
                                 class_attribute=class_attribute, class_names=classes)
    else:
        if classes and len(classes) > 1:
            raise WorkflowError(f"--classes {','.join(classes)}: several classes need "
                                f"--class-attribute ATTR, the VIA region attribute that names "
                                f"each region's class")
        names = dataset.load_via(data_dir, subset, annotation_file=annotation_file,
                                 default_class=(classes or ["object"])[0])
    return names, json_path


def _load_coco(dataset, data_dir, subset, annotation_file, classes, year):
    json_path, image_dir = _coco_paths(data_dir, subset, annotation_file, year)
    class_ids = None
    if classes:
        from mrcnn.datasets.coco import _read_coco

        coco = _read_coco(json_path)
        by_name = {c["name"]: c["id"] for c in coco.loadCats(coco.getCatIds())}
        unknown = [c for c in classes if c not in by_name]
        if unknown:
            raise WorkflowError(f"{json_path}: --classes {', '.join(unknown)} not among its "
                                f"categories ({', '.join(sorted(by_name))})")
        class_ids = [by_name[c] for c in classes]
    try:
        dataset.load_coco_json(json_path, image_dir, class_ids=class_ids)
    except ValueError as e:  # malformed JSON; the message names the file
        raise WorkflowError(str(e)) from e
    return [c["name"] for c in dataset.class_info[1:]], json_path


def load_subset(data_dir, subset, format="via", annotation_file=None, class_attribute=None,
                classes=None, year=""):
    """A prepared data set of one subset.

    Args:
        data_dir: the data set root (see the module docstring for the layouts).
        subset: ``"train"``, ``"val"`` or any subset folder name.
        format: ``"via"`` or ``"coco"``.
        annotation_file: JSON file name in the subset folder (VIA default
            ``via_region_data.json``; COCO default: ``annotations/instances_<subset><year>.json``).
        class_attribute: VIA region attribute naming each region's class, or None.
        classes: class names (see the module docstring), or None.
        year: COCO file-name suffix (``"2017"``), default none.

    Returns:
        ``(dataset, class_names)``: class_names without the background, in class-id order.

    Raises:
        WorkflowError: missing folder or file, no usable image, bad option (names it).
        VIAFormatError: malformed VIA annotations (names the file, image and region).
    """
    from mrcnn.datasets.coco import COCODataset
    from mrcnn.datasets.via import VIADataset

    data_dir = os.fspath(data_dir)
    if format not in FORMATS:
        raise WorkflowError(f"--format {format!r}: use via or coco")
    if not os.path.isdir(data_dir):
        raise WorkflowError(f"data set directory not found: {data_dir} (check --data)")
    classes = list(classes) if classes else None
    if format == "via":
        dataset = VIADataset()
        names, json_path = _load_via(dataset, data_dir, subset,
                                     annotation_file or VIA_ANNOTATION_FILE, class_attribute,
                                     classes)
    else:
        if class_attribute:
            raise WorkflowError("--class-attribute is for VIA data; COCO classes are its "
                                "categories (choose some with --classes)")
        dataset = COCODataset()
        names, json_path = _load_coco(dataset, data_dir, subset, annotation_file, classes, year)
    check_not_empty(dataset.image_info, json_path, subset)
    dataset.prepare()
    return dataset, names


def load_train_val(data_dir, format="via", annotation_file=None, class_attribute=None,
                   classes=None, year="", subsets=("train", "val"), verbose=1):
    """The prepared training and validation subsets with the same class ids.

    With a VIA ``class_attribute`` and no ``classes`` the classes are the values found in either
    subset, sorted; a class seen only in validation is kept (it can be evaluated, never
    detected) with a warning. COCO subsets must have the same categories.

    Returns:
        ``(train, val, class_names)``.
    """
    train_subset, val_subset = subsets
    if format == "via" and class_attribute and not classes:
        found = {s: load_subset(data_dir, s, format, annotation_file, class_attribute, None)[1]
                 for s in subsets}
        classes = sorted(set(found[train_subset]) | set(found[val_subset]))
        missing = sorted(set(classes) - set(found[train_subset]))
        if missing and verbose:
            print(f"WARNING: class(es) {', '.join(missing)} of attribute {class_attribute!r} "
                  f"appear only in {val_subset}/: they can be evaluated but not learnt")
    train, names = load_subset(data_dir, train_subset, format, annotation_file, class_attribute,
                               classes, year)
    val, val_names = load_subset(data_dir, val_subset, format, annotation_file, class_attribute,
                                 names if (classes or format == "coco") else None, year)
    if val_names != names:
        raise WorkflowError(f"the {train_subset} and {val_subset} subsets of {data_dir} have "
                            f"different classes ({', '.join(names)} vs {', '.join(val_names)}); "
                            f"name them with --classes")
    return train, val, names


def check_classes(dataset, class_names, weights, subset):
    """Raise WorkflowError unless ``dataset`` has the classes the weights were trained on."""
    if dataset.class_names[1:] != list(class_names):
        raise WorkflowError(f"the {subset} subset has the classes "
                            f"{', '.join(dataset.class_names[1:])} but the weights {weights} "
                            f"were trained on {', '.join(class_names)}")
