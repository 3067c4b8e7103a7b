"""Trace-time switches to forms of ops that another compiler accepts: TFLite or XLA.

Inside ``tflite_builtins()`` the graph-building code of two ops takes another form:

- ROI align's crop (`mrcnn.layers.roi_align`) uses `gather_crop_and_resize` (TFLite has no
  builtin CropAndResize);
- `mrcnn.ops.boxes.non_max_suppression` feeds TFLite's NMS kernel boxes sorted with distinct
  scores and none of zero area: that kernel orders equal scores otherwise than TensorFlow, and
  selects a box of zero area again and again.

Inside ``xla_static()`` every tensor of the graph gets a shape known when it is traced, which
XLA's ``jit_compile=True`` needs: NMS stays padded to its maximum output (a validity mask instead
of a cut), ROI align pools every box from every level and selects (no per-level ``tf.where``),
the crops come from `gather_crop_and_resize` (XLA has no CropAndResize kernel), the mask head
runs on all DETECTION_MAX_INSTANCES rows (as Matterport's does), and DetectionTargetLayer samples
ROIs by random top-k instead of shuffling index lists of data-dependent length.

The alternative forms give TensorFlow's numbers (see their tests; ROI sampling draws other random
numbers), so a switch changes which kernels run, not the results. It acts when a graph is traced:
trace the function inside the block.
"""

import contextlib

_mode = None


def active():
    """Whether graphs being traced now are for TFLite builtins."""
    return _mode == "tflite"


def static():
    """Whether graphs being traced now must have static shapes (for XLA)."""
    return _mode == "xla"


def gathered_crops():
    """Whether crops must be built from gathers (no CropAndResize kernel: TFLite and XLA)."""
    return _mode is not None


@contextlib.contextmanager
def _switched(mode):
    global _mode
    saved, _mode = _mode, mode
    try:
        yield
    finally:
        _mode = saved


def tflite_builtins():
    """Within the block, traced graphs use TFLite-builtin forms (the module docstring)."""
    return _switched("tflite")


def xla_static():
    """Within the block, traced graphs have static shapes for XLA (the module docstring)."""
    return _switched("xla")
