import numpy as np
import pytest

from mrcnn.config import Config, ConfigError


class ShapesConfig(Config):
    NAME = "shapes"
    NUM_CLASSES = 1 + 3
    IMAGES_PER_GPU = 4
    GPU_COUNT = 2


def test_matterport_defaults():
    c = Config()
    assert c.NAME is None
    assert c.BACKBONE == "resnet101"
    assert c.BACKBONE_STRIDES == [4, 8, 16, 32, 64]
    assert c.RPN_ANCHOR_SCALES == (32, 64, 128, 256, 512)
    assert c.RPN_ANCHOR_RATIOS == [0.5, 1, 2]
    assert c.IMAGE_RESIZE_MODE == "square"
    assert (c.IMAGE_MIN_DIM, c.IMAGE_MAX_DIM) == (800, 1024)
    np.testing.assert_allclose(c.MEAN_PIXEL, [123.7, 116.8, 103.9])
    np.testing.assert_allclose(c.BBOX_STD_DEV, [0.1, 0.1, 0.2, 0.2])
    assert c.MASK_SHAPE == [28, 28]
    assert c.MINI_MASK_SHAPE == (56, 56)
    assert c.DETECTION_MIN_CONFIDENCE == 0.7
    assert c.GRADIENT_CLIP_NORM == 5.0
    assert set(c.LOSS_WEIGHTS) == {"rpn_class_loss", "rpn_bbox_loss", "mrcnn_class_loss",
                                   "mrcnn_bbox_loss", "mrcnn_mask_loss"}
    assert c.WARMUP_STEPS == 0
    assert c.BATCH_NORM_MOMENTUM == 0.99  # Keras' default: what Matterport's layers used


def test_derived_values():
    c = ShapesConfig()
    assert c.BATCH_SIZE == 8
    assert c.IMAGE_META_SIZE == 1 + 3 + 3 + 4 + 1 + 4
    np.testing.assert_array_equal(c.IMAGE_SHAPE, [1024, 1024, 3])


def test_derived_values_follow_instance_assignments():
    c = ShapesConfig()
    c.IMAGES_PER_GPU = 1
    c.GPU_COUNT = 1
    c.NUM_CLASSES = 81
    c.IMAGE_MAX_DIM = 512
    assert c.BATCH_SIZE == 1
    assert c.IMAGE_META_SIZE == 93
    np.testing.assert_array_equal(c.IMAGE_SHAPE, [512, 512, 3])
    c.IMAGE_RESIZE_MODE = "crop"
    c.IMAGE_MIN_DIM = 256
    c.IMAGE_CHANNEL_COUNT = 1
    np.testing.assert_array_equal(c.IMAGE_SHAPE, [256, 256, 1])


def test_derived_values_cannot_be_assigned():
    c = Config()
    with pytest.raises(AttributeError, match="IMAGES_PER_GPU"):
        c.BATCH_SIZE = 4


def test_subclass_derived_attribute_is_ignored_with_warning():
    with pytest.warns(UserWarning, match="BATCH_SIZE"):
        class Odd(Config):
            IMAGES_PER_GPU = 3
            BATCH_SIZE = 7
    assert Odd().BATCH_SIZE == 3


def test_mutable_defaults_are_per_instance():
    a, b = Config(), Config()
    a.MEAN_PIXEL[0] = 0.0
    a.LOSS_WEIGHTS["rpn_class_loss"] = 5.0
    a.BACKBONE_STRIDES.append(128)
    a.MASK_SHAPE[0] = 1
    assert b.MEAN_PIXEL[0] == pytest.approx(123.7)
    assert Config.MEAN_PIXEL[0] == pytest.approx(123.7)
    assert b.LOSS_WEIGHTS["rpn_class_loss"] == 1.0
    assert Config.LOSS_WEIGHTS["rpn_class_loss"] == 1.0
    assert b.BACKBONE_STRIDES == [4, 8, 16, 32, 64]
    assert b.MASK_SHAPE == [28, 28]


def test_subclass_mutable_override_is_copied():
    class C(Config):
        RPN_ANCHOR_RATIOS = [1]
    a = C()
    a.RPN_ANCHOR_RATIOS.append(2)
    assert C.RPN_ANCHOR_RATIOS == [1]
    assert C().RPN_ANCHOR_RATIOS == [1]


def test_additions_accepted():
    class Light(Config):
        BACKBONE = "resnet18"
        WARMUP_STEPS = 100
        BATCH_NORM_MOMENTUM = 0.9
    assert Light().BACKBONE == "resnet18"
    assert Light().BATCH_NORM_MOMENTUM == 0.9
    for name in ("resnet50", "resnet101"):
        type("C", (Config,), {"BACKBONE": name})()


def test_callable_backbone_needs_compute_shape():
    def my_backbone(x):
        return x

    class Bad(Config):
        BACKBONE = staticmethod(my_backbone)

    with pytest.raises(ConfigError, match="COMPUTE_BACKBONE_SHAPE"):
        Bad()

    class Good(Config):
        BACKBONE = staticmethod(my_backbone)
        COMPUTE_BACKBONE_SHAPE = staticmethod(lambda shape: [[1, 1]] * 5)

    Good()

    class PlainFunctions(Config):  # functions in the class body, without staticmethod
        BACKBONE = my_backbone
        COMPUTE_BACKBONE_SHAPE = lambda shape: [[1, 1]] * 5  # noqa: E731

    c = PlainFunctions()
    assert c.BACKBONE is my_backbone
    assert c.COMPUTE_BACKBONE_SHAPE((64, 64, 3)) == [[1, 1]] * 5


@pytest.mark.parametrize("name, value", [
    ("NUM_CLASSES", 0),
    ("NUM_CLASSES", 2.5),
    ("NUM_CLASSES", True),
    ("IMAGE_RESIZE_MODE", "stretch"),
    ("BACKBONE", "resnet152"),
    ("IMAGE_MAX_DIM", 1000),
    ("IMAGE_MIN_DIM", 2048),
    ("RPN_ANCHOR_SCALES", (32, 64, 128)),
    ("MEAN_PIXEL", np.array([1.0, 2.0])),
    ("ROI_POSITIVE_RATIO", 0.0),
    ("ROI_POSITIVE_RATIO", 1.5),
    ("RPN_NMS_THRESHOLD", 1.2),
    ("DETECTION_MIN_CONFIDENCE", -0.1),
    ("DETECTION_NMS_THRESHOLD", 2),
    ("MASK_SHAPE", [56, 56]),
    ("GPU_COUNT", 0),
    ("IMAGES_PER_GPU", 0),
    ("LOSS_WEIGHTS", {"rpn_class_loss": 1.0, "mask_loss": 1.0}),
    ("RPN_TRAIN_ANCHORS_PER_IMAGE", 0),
    ("RPN_BBOX_STD_DEV", np.array([0.1, 0.1, 0.2])),
    ("BBOX_STD_DEV", np.array([0.1, 0.1, 0.2, 0.2, 0.3])),
    ("WARMUP_STEPS", -1),
    ("BATCH_NORM_MOMENTUM", 0),
    ("BATCH_NORM_MOMENTUM", 1),
    ("BATCH_NORM_MOMENTUM", 1.5),
    ("BATCH_NORM_MOMENTUM", "0.9"),
    ("BATCH_NORM_MOMENTUM", None),
    ("WINOGRAD", "yes"),
    ("WINOGRAD", "Auto"),
    ("WINOGRAD", 1),
    ("WINOGRAD", None),
    ("CLASS_NAMES", "BG"),
    ("CLASS_NAMES", ("BG", "extra")),
])
def test_invalid_setting_is_named(name, value):
    bad = type("Bad", (Config,), {name: value})
    with pytest.raises(ConfigError) as info:
        bad()
    message = str(info.value)
    assert name in message
    assert repr(value) in message


def test_error_message_lists_valid_choices():
    with pytest.raises(ConfigError, match="resnet18, resnet50, resnet101"):
        type("Bad", (Config,), {"BACKBONE": "vgg"})()
    with pytest.raises(ConfigError, match="none, square, pad64, crop"):
        type("Bad", (Config,), {"IMAGE_RESIZE_MODE": "fit"})()


def test_config_error_is_value_error():
    assert issubclass(ConfigError, ValueError)


def test_multiple_of_64_rules_depend_on_mode():
    # pad64 pads any size up to a multiple of 64: IMAGE_MAX_DIM need not be one.
    type("C", (Config,), {"IMAGE_RESIZE_MODE": "pad64", "IMAGE_MAX_DIM": 1000})()
    # crop mode crops IMAGE_MIN_DIM squares: that must be a multiple of 64.
    with pytest.raises(ConfigError, match="IMAGE_MIN_DIM"):
        type("C", (Config,), {"IMAGE_RESIZE_MODE": "crop", "IMAGE_MIN_DIM": 800})()
    type("C", (Config,), {"IMAGE_RESIZE_MODE": "crop", "IMAGE_MIN_DIM": 512})()


def test_validate_again_after_assignment():
    c = Config()
    c.NUM_CLASSES = 0
    with pytest.raises(ConfigError, match="NUM_CLASSES"):
        c.validate()


def test_display_and_to_dict(capsys):
    c = ShapesConfig()
    d = c.to_dict()
    for name in ("NAME", "BATCH_SIZE", "IMAGE_SHAPE", "IMAGE_META_SIZE", "WARMUP_STEPS",
                 "LOSS_WEIGHTS", "MEAN_PIXEL"):
        assert name in d
    assert d["BATCH_SIZE"] == 8
    assert all(k.isupper() for k in d)
    assert "validate" not in d
    c.display()
    out = capsys.readouterr().out
    printed = [line.split()[0] for line in out.splitlines() if line.strip()
               and line.split()[0].isupper() and line.split()[0] in d]
    assert printed == sorted(d)
    assert "shapes" in out
