"""The second stage: the box classifier/regressor head and the mask head (FPN versions).

Axes: N images, R ROIs per image, C classes including background.
"""

from keras import layers

from mrcnn.backbone.resnet import conv_bn
from mrcnn.layers.roi_align import PyramidROIAlign
from mrcnn.layers.roi_axis import MergeRoiAxis, SplitRoiAxis


def fpn_classifier_graph(rois, feature_maps, image_meta, pool_size, num_classes,
                         train_bn=False, fc_layers_size=1024, bn_momentum=0.99):
    """Classify each ROI and regress a box per class.

    rois: [N, R, 4] normalized. feature_maps: [P2, P3, P4, P5]. image_meta: [N, META].
    train_bn, bn_momentum: Config.TRAIN_BN and Config.BATCH_NORM_MOMENTUM of the BatchNorms.
    Returns: mrcnn_class_logits [N, R, C], mrcnn_class (softmax) [N, R, C],
    mrcnn_bbox [N, R, C, 4] deltas divided by BBOX_STD_DEV.
    """
    x = PyramidROIAlign((pool_size, pool_size), name="roi_align_classifier", dtype="float32")(
        [rois, image_meta] + list(feature_maps))
    x = MergeRoiAxis(name="classifier_merge_rois")(x)
    # A pool_size x pool_size 'valid' convolution is a fully connected layer on the ROI.
    x = conv_bn(x, fc_layers_size, pool_size, 1, "mrcnn_class_conv1", "mrcnn_class_bn1",
                train_bn, True, padding="valid", bn_momentum=bn_momentum)
    x = conv_bn(x, fc_layers_size, 1, 1, "mrcnn_class_conv2", "mrcnn_class_bn2", train_bn, True,
                bn_momentum=bn_momentum)
    shared = SplitRoiAxis(squeeze=True, name="pool_squeeze")([x, rois])
    logits = layers.Dense(num_classes, name="mrcnn_class_logits")(shared)
    probs = layers.Activation("softmax", name="mrcnn_class", dtype="float32")(logits)
    x = layers.Dense(num_classes * 4, name="mrcnn_bbox_fc")(shared)
    bbox = layers.Reshape((-1, num_classes, 4), name="mrcnn_bbox")(x)
    return logits, probs, bbox


def build_fpn_mask_graph(rois, feature_maps, image_meta, pool_size, num_classes,
                         train_bn=False, conv_channels=256, bn_momentum=0.99):
    """Predict a mask per ROI and class.

    rois: [N, R, 4] normalized. Returns mrcnn_mask [N, R, 2 * pool_size, 2 * pool_size, C]
    probabilities (sigmoid). train_bn, bn_momentum: as in ``fpn_classifier_graph``.
    """
    x = PyramidROIAlign((pool_size, pool_size), name="roi_align_mask", dtype="float32")(
        [rois, image_meta] + list(feature_maps))
    x = MergeRoiAxis(name="mask_merge_rois")(x)
    for i in range(1, 5):
        x = conv_bn(x, conv_channels, 3, 1, "mrcnn_mask_conv%d" % i, "mrcnn_mask_bn%d" % i,
                    train_bn, True, bn_momentum=bn_momentum)
    x = layers.Conv2DTranspose(conv_channels, 2, strides=2, activation="relu",
                               name="mrcnn_mask_deconv")(x)
    x = layers.Conv2D(num_classes, 1, activation="sigmoid", name="mrcnn_mask", dtype="float32")(x)
    return SplitRoiAxis(name="mrcnn_mask_rois")([x, rois])
