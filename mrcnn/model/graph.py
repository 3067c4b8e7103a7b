"""Builds the Keras graph of Mask R-CNN for training or inference from a Config.

This is the only place (with ``mrcnn.model.core``) that reads Config; every layer it wires takes
explicit arguments. The forward pass is written once: training and inference share the backbone,
FPN, RPN, proposals and heads, and differ only in targets (training) and detections (inference).
"""

import inspect

import keras

from mrcnn.backbone import build_fpn, resnet_graph
from mrcnn.heads.roi_heads import build_fpn_mask_graph, fpn_classifier_graph
from mrcnn.heads.rpn import apply_rpn, build_rpn_model
from mrcnn.layers.anchors import AnchorsLayer
from mrcnn.layers.detection import DetectionLayer
from mrcnn.layers.detection_targets import DetectionTargetLayer
from mrcnn.layers.misc import DetectionBoxes, LeadingRois, NormBoxes, PositiveRois
from mrcnn.layers.proposals import ProposalLayer

# Output names of each mode, in Matterport's order.
INFERENCE_OUTPUTS = ("mrcnn_detection", "mrcnn_class", "mrcnn_bbox", "mrcnn_mask", "ROI",
                     "rpn_class", "rpn_bbox")
TRAINING_OUTPUTS = ("rpn_class_logits", "rpn_class", "rpn_bbox", "mrcnn_class_logits",
                    "mrcnn_class", "mrcnn_bbox", "mrcnn_mask", "ROI", "output_rois",
                    "target_class_ids", "target_bbox", "target_mask")


def _accepts_keyword(fn, name):
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # some builtins and C callables have no signature
        return False
    return any(p.name == name and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
               or p.kind == p.VAR_KEYWORD for p in params)


def _backbone_features(input_image, config):
    if callable(config.BACKBONE):
        kwargs = {"stage5": True, "train_bn": config.TRAIN_BN}
        # Matterport's custom backbones take (input_image, stage5, train_bn); pass the momentum
        # only to those that declare it, so theirs keep working.
        if _accepts_keyword(config.BACKBONE, "bn_momentum"):
            kwargs["bn_momentum"] = config.BATCH_NORM_MOMENTUM
        _, c2, c3, c4, c5 = config.BACKBONE(input_image, **kwargs)
    else:
        _, c2, c3, c4, c5 = resnet_graph(input_image, config.BACKBONE, stage5=True,
                                         train_bn=config.TRAIN_BN,
                                         bn_momentum=config.BATCH_NORM_MOMENTUM)
    return build_fpn(c2, c3, c4, c5, config.TOP_DOWN_PYRAMID_SIZE)


def mask_roi_count(config):
    """Rows of the sampled ROIs that can be positive: the mask head's batch in training."""
    return max(1, int(config.TRAIN_ROIS_PER_IMAGE * config.ROI_POSITIVE_RATIO))


def training_inputs(config):
    """The training model's named inputs (Keras tensors), in a dict.

    Only what the graph consumes: the image, its meta and the ground truth that
    DetectionTargetLayer samples from. The RPN's targets (``input_rpn_match``,
    ``input_rpn_bbox``) are in each training batch too, but only the losses read them
    (``MaskRCNNTrainer`` takes them from the batch): a Keras input that no layer consumes is an
    error before Keras 3.14 ("`inputs` not connected to `outputs`").
    """
    h, w, c = [int(v) for v in config.IMAGE_SHAPE]
    mask_h, mask_w = (config.MINI_MASK_SHAPE if config.USE_MINI_MASK else (h, w))
    inputs = {
        "input_image": keras.Input((h, w, c), name="input_image"),
        "input_image_meta": keras.Input((config.IMAGE_META_SIZE,), name="input_image_meta"),
        "input_gt_class_ids": keras.Input((None,), name="input_gt_class_ids", dtype="int32"),
        "input_gt_boxes": keras.Input((None, 4), name="input_gt_boxes"),
        "input_gt_masks": keras.Input((mask_h, mask_w, None), name="input_gt_masks",
                                      dtype="bool"),
    }
    if not config.USE_RPN_ROIS:
        inputs["input_roi"] = keras.Input((config.POST_NMS_ROIS_TRAINING, 4), name="input_roi")
    return inputs


def build_graph(mode, config):
    """Return (inputs dict, outputs dict) Keras tensors of the Mask R-CNN graph.

    Inference inputs: input_image [N, H, W, C] float32 (molded), input_image_meta [N, META].
    Inference outputs: mrcnn_detection [N, D, 6] (y1, x1, y2, x2 normalized, class_id, score),
    mrcnn_class [N, R, C], mrcnn_bbox [N, R, C, 4], mrcnn_mask [N, D, mh, mw, C], ROI [N, R, 4],
    rpn_class [N, A, 2], rpn_bbox [N, A, 4].
    Training: see ``training_inputs``; outputs are TRAINING_OUTPUTS.

    Layers take the global Keras dtype policy (``MaskRCNN`` sets it from Config.PRECISION while
    building); the layers that handle box coordinates (anchors, proposals, targets, ROI align,
    detection) are float32 whatever it is, so mixed precision never rounds a coordinate to 16 bits.
    """
    if mode not in ("training", "inference"):
        raise ValueError("mode must be 'training' or 'inference', got %r" % (mode,))
    if mode == "training":
        inputs = training_inputs(config)
    else:
        inputs = {
            "input_image": keras.Input((None, None, int(config.IMAGE_SHAPE[2])),
                                       name="input_image"),
            "input_image_meta": keras.Input((config.IMAGE_META_SIZE,), name="input_image_meta"),
        }
    image, meta = inputs["input_image"], inputs["input_image_meta"]

    p2, p3, p4, p5, p6 = _backbone_features(image, config)
    rpn_maps = [p2, p3, p4, p5, p6]
    head_maps = [p2, p3, p4, p5]
    anchors = AnchorsLayer(config.RPN_ANCHOR_SCALES, config.RPN_ANCHOR_RATIOS,
                           config.BACKBONE_STRIDES, config.RPN_ANCHOR_STRIDE,
                           name="anchors", dtype="float32")(image)
    rpn = build_rpn_model(config.RPN_ANCHOR_STRIDE, len(config.RPN_ANCHOR_RATIOS),
                          config.TOP_DOWN_PYRAMID_SIZE)
    rpn_class_logits, rpn_class, rpn_bbox = apply_rpn(rpn, rpn_maps)

    proposal_count = (config.POST_NMS_ROIS_TRAINING if mode == "training"
                      else config.POST_NMS_ROIS_INFERENCE)
    rpn_rois = ProposalLayer(proposal_count, config.RPN_NMS_THRESHOLD, config.PRE_NMS_LIMIT,
                             config.RPN_BBOX_STD_DEV, name="ROI",
                             dtype="float32")([rpn_class, rpn_bbox, anchors])
    num_classes = config.NUM_CLASSES
    mask_channels = config.TOP_DOWN_PYRAMID_SIZE

    if mode == "training":
        gt_boxes = NormBoxes(name="norm_gt_boxes", dtype="float32")(
            [inputs["input_gt_boxes"], image])
        if config.USE_RPN_ROIS:
            target_rois = rpn_rois
        else:
            target_rois = NormBoxes(name="norm_input_rois", dtype="float32")(
                [inputs["input_roi"], image])
        rois, target_class_ids, target_bbox, target_mask = DetectionTargetLayer(
            config.TRAIN_ROIS_PER_IMAGE, config.ROI_POSITIVE_RATIO, config.MASK_SHAPE,
            config.USE_MINI_MASK, config.BBOX_STD_DEV, name="proposal_targets",
            dtype="float32")(
            [target_rois, inputs["input_gt_class_ids"], gt_boxes, inputs["input_gt_masks"]])
        class_logits, class_probs, bbox = fpn_classifier_graph(
            rois, head_maps, meta, config.POOL_SIZE, num_classes, config.TRAIN_BN,
            config.FPN_CLASSIF_FC_LAYERS_SIZE, bn_momentum=config.BATCH_NORM_MOMENTUM)
        # The mask loss only sees positive ROIs, and DetectionTargetLayer puts them first (at
        # most int(T * ROI_POSITIVE_RATIO)), so the mask head runs on those rows alone: the same
        # loss and gradients as Matterport's head over all T ROIs. With frozen batch norm its
        # rows are independent, and it runs on the batch's positives only; a trained batch norm
        # would take its statistics over whichever rows it is given, so it keeps a fixed count.
        if config.TRAIN_BN:
            mask_rois = LeadingRois(mask_roi_count(config), name="mask_rois",
                                    dtype="float32")(rois)
        else:
            mask_rois = PositiveRois(mask_roi_count(config), name="mask_rois",
                                     dtype="float32")([rois, target_class_ids])
        mask = build_fpn_mask_graph(mask_rois, head_maps, meta, config.MASK_POOL_SIZE,
                                    num_classes, config.TRAIN_BN, mask_channels,
                                    bn_momentum=config.BATCH_NORM_MOMENTUM)
        values = (rpn_class_logits, rpn_class, rpn_bbox, class_logits, class_probs, bbox, mask,
                  rpn_rois, rois, target_class_ids, target_bbox, target_mask)
        return inputs, dict(zip(TRAINING_OUTPUTS, values))

    class_logits, class_probs, bbox = fpn_classifier_graph(
        rpn_rois, head_maps, meta, config.POOL_SIZE, num_classes, config.TRAIN_BN,
        config.FPN_CLASSIF_FC_LAYERS_SIZE, bn_momentum=config.BATCH_NORM_MOMENTUM)
    detections = DetectionLayer(config.DETECTION_MAX_INSTANCES, config.DETECTION_MIN_CONFIDENCE,
                                config.DETECTION_NMS_THRESHOLD, config.BBOX_STD_DEV,
                                name="mrcnn_detection", dtype="float32")(
        [rpn_rois, class_probs, bbox, meta])
    detection_boxes = DetectionBoxes(name="detection_boxes", dtype="float32")(detections)
    mask = build_fpn_mask_graph(detection_boxes, head_maps, meta, config.MASK_POOL_SIZE,
                                num_classes, config.TRAIN_BN, mask_channels,
                                bn_momentum=config.BATCH_NORM_MOMENTUM)
    mask = LeadingRois(config.DETECTION_MAX_INSTANCES, name="mrcnn_mask_padded",
                       dtype="float32")(mask)
    values = (detections, class_probs, bbox, mask, rpn_rois, rpn_class, rpn_bbox)
    return inputs, dict(zip(INFERENCE_OUTPUTS, values))
