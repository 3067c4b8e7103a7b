"""What both exports (SavedModel, TFLite) require of a model, and the class names they carry."""

__all__ = ["check_resize_mode", "check_exportable", "export_class_names"]


def check_resize_mode(config):
    """Raise ValueError unless IMAGE_RESIZE_MODE is deterministic (not "crop")."""
    mode = config.IMAGE_RESIZE_MODE
    if mode not in ("square", "pad64", "none"):
        raise ValueError("export: IMAGE_RESIZE_MODE %r cannot be exported (its crop is random); "
                         "use square, pad64 or none for inference" % (mode,))


def check_exportable(model):
    """Raise ValueError unless ``model`` is an inference ``MaskRCNN`` with a deterministic
    IMAGE_RESIZE_MODE. Returns its config."""
    if model.mode != "inference":
        raise ValueError("export needs a model built with mode='inference'")
    check_resize_mode(model.config)
    return model.config


def export_class_names(config, class_names):
    """NUM_CLASSES names as strings, background first (default: ``config.CLASS_NAMES``, else
    ``BG, class_1, ...``)."""
    source = "class_names"
    if class_names is None and getattr(config, "CLASS_NAMES", None) is not None:
        class_names, source = config.CLASS_NAMES, "config.CLASS_NAMES"
    if class_names is None:
        class_names = ["BG"] + ["class_%d" % i for i in range(1, config.NUM_CLASSES)]
    class_names = [str(c) for c in class_names]
    if len(class_names) != config.NUM_CLASSES:
        raise ValueError("export: %s holds %d names for NUM_CLASSES = %d (one per class, the "
                         "background 'BG' first)" % (source, len(class_names), config.NUM_CLASSES))
    return class_names
