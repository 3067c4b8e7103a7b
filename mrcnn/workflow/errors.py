"""The workflow's user-facing error and the exception types the command line reports without a
traceback (a missing file, a bad option: the message names the file, the flag and the fix)."""

import sys


class WorkflowError(Exception):
    """A mistake of the user's (missing file, bad option, nothing trained yet). The message names
    the file or flag and says what to do."""


def user_error_types():
    """Exception types whose message is the whole story (no traceback needed)."""
    types = [WorkflowError, FileNotFoundError]
    for module, names in (("mrcnn.datasets.via", ("VIAFormatError",)),
                          ("mrcnn.dataset", ("ImageLoadError",)),
                          ("mrcnn.config", ("ConfigError",)),
                          ("mrcnn.download", ("DownloadError",)),
                          ("mrcnn.datasets.coco", ("COCOFormatError",)),
                          ("mrcnn.training.trainer", ("TrainingDivergedError",)),
                          ("mrcnn.weights", ("WeightsMismatchError", "WeightsFileError",
                                             "DiskFullError"))):
        if module in sys.modules:
            types += [getattr(sys.modules[module], n) for n in names
                      if hasattr(sys.modules[module], n)]
    return tuple(types)
