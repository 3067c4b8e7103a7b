"""A trace-time switch to forms of ops that TFLite's builtin kernels run as TensorFlow does.

Inside ``tflite_builtins()`` the graph-building code of two ops takes another form:

- ROI align's crop (`mrcnn.layers.roi_align`) uses `gather_crop_and_resize` (TFLite has no
  builtin CropAndResize);
- `mrcnn.ops.boxes.non_max_suppression` feeds TFLite's NMS kernel boxes sorted with distinct
  scores and none of zero area: that kernel orders equal scores otherwise than TensorFlow, and
  selects a box of zero area again and again.

Both give TensorFlow's numbers (see their tests), so the switch changes which kernels run, not
the detections. It acts when a graph is traced: trace the function inside the block.
"""

import contextlib

_active = False


def active():
    """Whether graphs being traced now are for TFLite builtins."""
    return _active


@contextlib.contextmanager
def tflite_builtins():
    """Within the block, traced graphs use TFLite-builtin forms (the module docstring)."""
    global _active
    saved, _active = _active, True
    try:
        yield
    finally:
        _active = saved
