"""Tests for mrcnn.visualize: headless (Agg), small 64x64 images, figures closed after each test."""

import colorsys
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib import patches  # noqa: E402
from matplotlib.colors import to_rgb, to_rgba  # noqa: E402

from mrcnn import visualize  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CLASS_NAMES = ["BG", "cat", "dog"]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _image(value=80):
    return np.full((64, 64, 3), value, dtype=np.uint8)


def _box_mask(y1, x1, y2, x2, shape=(64, 64)):
    m = np.zeros(shape, dtype=bool)
    m[y1:y2, x1:x2] = True
    return m


def _assert_png(fig, tmp_path, name):
    path = visualize.save_figure(fig, tmp_path / "figs" / f"{name}.png")
    data = Path(path).read_bytes()
    assert len(data) > 1000
    assert data[:8] == b"\x89PNG\r\n\x1a\n"


def _rectangles(ax):
    return [p for p in ax.patches if isinstance(p, patches.Rectangle)]


def _polygons(ax):
    return [p for p in ax.patches if isinstance(p, patches.Polygon)]


def _shown(ax):
    """The last image drawn on ``ax`` as a plain array."""
    return np.asarray(ax.images[-1].get_array())


def _blend(value, color, alpha=0.5):
    """Hand formula: channel * (1 - alpha) + alpha * 255 * color, rounded."""
    blended = np.float64(value) * (1 - alpha) + alpha * 255 * np.asarray(color)
    return np.rint(blended).astype(np.uint8)


# ------------------------------------------------------------------------------------------------
# Import hygiene
# ------------------------------------------------------------------------------------------------

def test_import_does_not_pull_tensorflow_and_table_works_without_ipython():
    code = textwrap.dedent("""
        import sys
        sys.modules["IPython"] = None  # importing IPython now fails
        import mrcnn.visualize as v
        assert "tensorflow" not in sys.modules, "tensorflow imported"
        assert "keras" not in sys.modules, "keras imported"
        text = v.display_table([["a", "bb"], ["ccc", "d"]])
        assert text == "a    bb\\nccc  d", repr(text)
        assert "tensorflow" not in sys.modules
        print("OK")
    """)
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                            env={"MPLBACKEND": "Agg", "PATH": "/usr/bin:/bin"}, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("OK")


# ------------------------------------------------------------------------------------------------
# random_colors, apply_mask, draw_box
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bright, value", [(True, 1.0), (False, 0.7)])
def test_random_colors_are_evenly_spaced_hues(bright, value):
    colors = visualize.random_colors(5, bright=bright)
    assert len(colors) == 5
    hsv = [colorsys.rgb_to_hsv(*c) for c in colors]
    assert sorted(round(h, 6) for h, _, _ in hsv) == [0.0, 0.2, 0.4, 0.6, 0.8]
    assert all(s == pytest.approx(1.0) and v == pytest.approx(value) for _, s, v in hsv)


def test_random_colors_edge_cases():
    assert visualize.random_colors(0) == []
    with pytest.raises(ValueError, match="N must be a non-negative integer"):
        visualize.random_colors(-1)


def test_apply_mask_blends_inside_only_and_keeps_input():
    image = _image(80)
    before = image.copy()
    mask = _box_mask(10, 20, 30, 40)
    out = visualize.apply_mask(image, mask, (1.0, 0.0, 0.2), alpha=0.25)
    np.testing.assert_array_equal(image, before)
    assert out.dtype == np.uint8 and out.shape == image.shape
    # 80 * 0.75 + 0.25 * 255 * (1, 0, 0.2) = (123.75, 60, 72.75)
    np.testing.assert_array_equal(out[mask], np.tile([124, 60, 73], (mask.sum(), 1)))
    np.testing.assert_array_equal(out[~mask], before[~mask])


def test_apply_mask_float_image_and_numeric_mask():
    image = np.full((4, 4, 3), 100.0)
    mask = np.zeros((4, 4), dtype=np.uint8)
    mask[0, 0] = 1
    out = visualize.apply_mask(image, mask, (0.0, 1.0, 0.0))
    np.testing.assert_allclose(out[0, 0], [50.0, 177.5, 50.0])
    np.testing.assert_allclose(out[1:, :], 100.0)


def test_apply_mask_errors():
    with pytest.raises(ValueError, match="mask must have the image's height x width"):
        visualize.apply_mask(_image(), np.zeros((10, 10), bool), (1, 0, 0))
    with pytest.raises(ValueError, match="alpha"):
        visualize.apply_mask(_image(), np.zeros((64, 64), bool), (1, 0, 0), alpha=2)
    with pytest.raises(ValueError, match="color"):
        visualize.apply_mask(_image(), np.zeros((64, 64), bool), (255, 0, 0))


def test_draw_box_outline_pixels():
    image = np.zeros((10, 12, 3), dtype=np.uint8)
    out = visualize.draw_box(image, (2, 3, 6, 8), (255, 0, 0))
    assert not image.any()
    expected = np.zeros((10, 12), dtype=bool)
    expected[2:4, 3:8] = True  # top edge
    expected[6:8, 3:8] = True  # bottom edge, just below the box
    expected[2:6, 3:5] = True  # left edge
    expected[2:6, 8:10] = True  # right edge, just right of the box
    np.testing.assert_array_equal(out[..., 0] == 255, expected)
    assert not out[..., 1:].any()


def test_draw_box_clamps_negative_coordinates():
    out = visualize.draw_box(np.zeros((6, 6), np.uint8), (-3, -3, 2, 2), 9)
    # Clamped to (0, 0, 2, 2): a filled 2x2 corner plus the outside edges at rows/cols 2..3.
    expected = np.zeros((6, 6), bool)
    expected[0:2, 0:2] = True
    expected[2:4, 0:2] = True
    expected[0:2, 2:4] = True
    np.testing.assert_array_equal(out == 9, expected)


# ------------------------------------------------------------------------------------------------
# display_images, display_top_masks
# ------------------------------------------------------------------------------------------------

def test_display_images_grid(tmp_path):
    images = [_image(10), _image(200), np.arange(64 * 64, dtype=float).reshape(64, 64)]
    fig = visualize.display_images(images, titles=["a", "b", "c"], cols=2)
    assert isinstance(fig, matplotlib.figure.Figure)
    drawn = [a for a in fig.axes if a.images]
    assert [a.get_title() for a in drawn] == ["a", "b", "c"]
    assert len(fig.axes) == 4  # 2 x 2 grid, last cell unused
    np.testing.assert_array_equal(_shown(drawn[1]), images[1])
    _assert_png(fig, tmp_path, "images")


def test_display_images_into_given_axes_and_errors():
    fig, axes = plt.subplots(1, 2)
    out = visualize.display_images([_image(), _image()], ax=axes)
    assert out is fig
    assert all(len(a.images) == 1 for a in axes)
    with pytest.raises(ValueError, match="titles has 1 entries but images has 2"):
        visualize.display_images([_image(), _image()], titles=["x"])
    with pytest.raises(ValueError, match="ax holds 2 Axes but 3 are needed"):
        visualize.display_images([_image()] * 3, ax=axes)
    with pytest.raises(ValueError, match="images is empty"):
        visualize.display_images([])


def test_display_top_masks_ranks_classes_by_area(tmp_path):
    masks = np.stack([_box_mask(0, 0, 10, 10), _box_mask(20, 20, 50, 50),
                      _box_mask(40, 0, 44, 4)], axis=-1)
    class_ids = np.array([1, 2, 1])
    fig = visualize.display_top_masks(_image(), masks, class_ids, CLASS_NAMES, limit=3)
    drawn = [a for a in fig.axes if a.images]
    assert [a.get_title() for a in drawn] == ["H x W=64x64", "dog", "cat", "-"]
    # The cat panel numbers its two instances 1 and 2.
    cat = _shown(drawn[2])
    assert cat[5, 5] == 1 and cat[42, 2] == 2 and cat[30, 30] == 0
    assert not _shown(drawn[3]).any()
    _assert_png(fig, tmp_path, "top_masks")


def test_display_top_masks_mismatch():
    with pytest.raises(ValueError, match="mask has 2 .*class_ids has 3"):
        visualize.display_top_masks(_image(), np.zeros((64, 64, 2), bool), [1, 1, 2], CLASS_NAMES)


# ------------------------------------------------------------------------------------------------
# display_instances
# ------------------------------------------------------------------------------------------------

def _two_instances():
    boxes = np.array([[10, 10, 30, 30], [35, 5, 60, 25]])
    masks = np.stack([_box_mask(*b) for b in boxes], axis=-1)
    return boxes, masks, np.array([1, 2])


def test_display_instances_draws_masks_boxes_and_captions(tmp_path):
    boxes, masks, class_ids = _two_instances()
    image = _image(80)
    colors = [(1.0, 0.0, 0.0), (0.0, 0.0, 1.0)]
    fig = visualize.display_instances(image, boxes, masks, class_ids, CLASS_NAMES,
                                      scores=np.array([0.9, 0.25]), colors=colors)
    ax = fig.axes[0]
    rects = _rectangles(ax)
    assert len(rects) == 2
    assert rects[0].get_xy() == (10, 10) and rects[0].get_width() == 20
    assert rects[1].get_xy() == (5, 35) and rects[1].get_height() == 25
    assert sorted(t.get_text() for t in ax.texts) == ["cat 0.900", "dog 0.250"]
    assert len(_polygons(ax)) == 2  # one closed contour per rectangular mask
    shown = _shown(ax)
    np.testing.assert_array_equal(shown[masks[..., 0]], np.tile(_blend(80, colors[0]), (400, 1)))
    np.testing.assert_array_equal(shown[masks[..., 1]], np.tile(_blend(80, colors[1]), (500, 1)))
    outside = ~masks.any(-1)
    np.testing.assert_array_equal(shown[outside], image[outside])
    _assert_png(fig, tmp_path, "instances")


def test_display_instances_contour_follows_mask():
    mask = _box_mask(10, 20, 20, 40)[..., None]
    fig = visualize.display_instances(_image(), np.array([[10, 20, 20, 40]]), mask, [1],
                                      CLASS_NAMES, colors=[(0, 1, 0)])
    (polygon,) = _polygons(fig.axes[0])
    xy = polygon.get_xy()
    # Contour at level 0.5 lies half a pixel outside the mask's pixel centres.
    assert xy[:, 0].min() == pytest.approx(19.5) and xy[:, 0].max() == pytest.approx(39.5)
    assert xy[:, 1].min() == pytest.approx(9.5) and xy[:, 1].max() == pytest.approx(19.5)


def test_display_instances_random_colors_match_boxes():
    boxes, masks, class_ids = _two_instances()
    fig = visualize.display_instances(_image(80), boxes, masks, class_ids, CLASS_NAMES)
    ax = fig.axes[0]
    shown = _shown(ax)
    for rect, i in zip(_rectangles(ax), range(2)):
        color = to_rgb(rect.get_edgecolor())
        np.testing.assert_array_equal(shown[masks[..., i]][0], _blend(80, color))


def test_display_instances_options():
    boxes, masks, class_ids = _two_instances()
    image = _image(80)
    fig = visualize.display_instances(image, boxes, masks, class_ids, CLASS_NAMES,
                                      show_mask=False, show_bbox=False,
                                      captions=["first", "second"], title="T")
    ax = fig.axes[0]
    assert _rectangles(ax) == [] and len(_polygons(ax)) == 2
    assert [t.get_text() for t in ax.texts] == ["first", "second"]
    assert ax.get_title() == "T"
    np.testing.assert_array_equal(_shown(ax), image)


def test_display_instances_skips_zero_boxes_and_uses_given_ax():
    boxes, masks, class_ids = _two_instances()
    boxes = boxes.copy()
    boxes[1] = 0
    fig, ax = plt.subplots()
    out = visualize.display_instances(_image(), boxes, masks, class_ids, CLASS_NAMES, ax=ax)
    assert out is fig
    assert len(_rectangles(ax)) == 1 and [t.get_text() for t in ax.texts] == ["cat"]


def test_display_instances_no_instances(tmp_path):
    image = _image(33)
    fig = visualize.display_instances(image, np.zeros((0, 4)), np.zeros((64, 64, 0), bool),
                                      np.zeros((0,), int), CLASS_NAMES)
    ax = fig.axes[0]
    assert len(ax.patches) == 0
    assert [t.get_text() for t in ax.texts] == ["No instances to display"]
    np.testing.assert_array_equal(_shown(ax), image)
    _assert_png(fig, tmp_path, "empty")


def test_display_instances_grayscale_image():
    boxes, masks, class_ids = _two_instances()
    fig = visualize.display_instances(np.full((64, 64), 80, np.uint8), boxes, masks, class_ids,
                                      CLASS_NAMES, colors=[(1, 0, 0), (0, 1, 0)])
    shown = _shown(fig.axes[0])
    assert shown.shape == (64, 64, 3)
    np.testing.assert_array_equal(shown[12, 12], _blend(80, (1, 0, 0)))


def test_show_only_for_own_figures_on_interactive_backends(monkeypatch):
    calls = []
    monkeypatch.setattr(plt, "show", lambda *a, **k: calls.append(1))
    boxes, masks, class_ids = _two_instances()
    visualize.display_instances(_image(), boxes, masks, class_ids, CLASS_NAMES)
    assert calls == []  # Agg is not interactive
    monkeypatch.setattr(visualize, "_is_interactive_backend", lambda: True)
    fig, ax = plt.subplots()
    visualize.display_instances(_image(), boxes, masks, class_ids, CLASS_NAMES, ax=ax)
    assert calls == []  # the caller's figure: the caller shows it
    visualize.display_instances(_image(), boxes, masks, class_ids, CLASS_NAMES)
    assert calls == [1]


def test_display_instances_errors():
    boxes, masks, class_ids = _two_instances()
    with pytest.raises(ValueError) as err:
        visualize.display_instances(_image(), boxes, masks[..., :1], class_ids, CLASS_NAMES)
    message = str(err.value)
    assert "display_instances" in message
    assert "boxes has 2 rows" in message and "masks has 1 (last axis)" in message
    assert "class_ids has 2" in message
    with pytest.raises(ValueError, match="scores has 3"):
        visualize.display_instances(_image(), boxes, masks, class_ids, CLASS_NAMES,
                                    scores=[0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="masks has height x width"):
        visualize.display_instances(_image(), boxes, masks[:32], class_ids, CLASS_NAMES)
    with pytest.raises(ValueError, match=r"class_ids must index class_names \(0..2\), got \[7\]"):
        visualize.display_instances(_image(), boxes, masks, [1, 7], CLASS_NAMES)
    with pytest.raises(ValueError, match="colors has 1 entries but there are 2"):
        visualize.display_instances(_image(), boxes, masks, class_ids, CLASS_NAMES,
                                    colors=[(1, 0, 0)])
    with pytest.raises(ValueError, match=r"image must have shape \[H, W, 3\]"):
        visualize.display_instances(np.zeros((64, 64, 5)), boxes, masks, class_ids, CLASS_NAMES)


# ------------------------------------------------------------------------------------------------
# display_differences
# ------------------------------------------------------------------------------------------------

def _differences_inputs():
    gt_box = np.array([[10, 10, 30, 30], [40, 40, 60, 60]])
    gt_mask = np.stack([_box_mask(*b) for b in gt_box], axis=-1)
    # pred 0: exact copy of gt 0; pred 1: gt 1 shifted left by 5 columns
    # (IoU = 20*15 / (2*400 - 300) = 0.6); pred 2: touches nothing.
    pred_box = np.array([[10, 10, 30, 30], [40, 35, 60, 55], [0, 40, 8, 48]])
    pred_mask = np.stack([_box_mask(*b) for b in pred_box], axis=-1)
    return gt_box, np.array([1, 2]), gt_mask, pred_box, pred_mask


def _caption_by_x(ax):
    return {round(t.get_position()[0]): t.get_text() for t in ax.texts if t.get_text()}


def test_display_differences_captions_and_colors(tmp_path):
    gt_box, gt_ids, gt_mask, pred_box, pred_mask = _differences_inputs()
    # Scores out of order on purpose: captions must follow their own prediction.
    fig = visualize.display_differences(_image(), gt_box, gt_ids, gt_mask, pred_box,
                                        np.array([1, 2, 1]), np.array([0.7, 0.95, 0.8]),
                                        pred_mask, CLASS_NAMES)
    ax = fig.axes[0]
    assert _caption_by_x(ax) == {10: "0.70 / 1.00", 35: "0.95 / 0.60", 40: "0.80 / 0.00"}
    edge = [to_rgba(r.get_edgecolor()) for r in _rectangles(ax)]
    assert sum(c[:3] == (0, 1, 0) for c in edge) == 2 and sum(c[:3] == (1, 0, 0) for c in edge) == 3
    assert "GT=green" in ax.get_title()
    _assert_png(fig, tmp_path, "differences")


def test_display_differences_unmatched_class_shows_best_iou():
    gt_box, gt_ids, gt_mask, pred_box, pred_mask = _differences_inputs()
    # pred 1 has the wrong class: unmatched, so it shows its best IoU (0.6) all the same;
    # pred 0 overlaps gt 0 fully but below an IoU threshold of 1.01 nothing matches.
    fig = visualize.display_differences(_image(), gt_box, gt_ids, gt_mask, pred_box,
                                        np.array([1, 1, 1]), np.array([0.9, 0.8, 0.7]),
                                        pred_mask, CLASS_NAMES, iou_threshold=1.01, title="t")
    ax = fig.axes[0]
    assert _caption_by_x(ax) == {10: "0.90 / 1.00", 35: "0.80 / 0.60", 40: "0.70 / 0.00"}
    assert ax.get_title() == "t"


def _tie_inputs():
    # gt A = [0, 0, 20, 20], gt B = [0, 20, 20, 40] (class 1, 400 px each).
    # pred 0 = [0, 4, 20, 24]: IoU with A 320/480 = 0.67, with B 80/720 = 0.11.
    # pred 1 = [0, 0, 20, 16]: IoU with A 320/400 = 0.80, with B 0.
    # Equal scores, so which prediction is matched first decides the captions.
    gt_box = np.array([[0, 0, 20, 20], [0, 20, 20, 40]])
    pred_box = np.array([[0, 4, 20, 24], [0, 0, 20, 16]])
    return (gt_box, np.array([1, 1]), np.stack([_box_mask(*b) for b in gt_box], axis=-1),
            pred_box, np.array([1, 1]), np.array([0.5, 0.5]),
            np.stack([_box_mask(*b) for b in pred_box], axis=-1))


def test_display_differences_equal_scores_follow_the_matching():
    gt_box, gt_ids, gt_mask, pred_box, pred_ids, scores, pred_mask = _tie_inputs()
    fig = visualize.display_differences(_image(), gt_box, gt_ids, gt_mask, pred_box, pred_ids,
                                        scores, pred_mask, CLASS_NAMES, iou_threshold=0.1)
    # mrcnn.metrics keeps input order for ties: pred 0 takes A; pred 1 finds A taken and B
    # below the threshold, so it is unmatched and shows its best IoU.
    assert _caption_by_x(fig.axes[0]) == {4: "0.50 / 0.67", 0: "0.50 / 0.80"}


def _matterport_order_compute_matches(gt_boxes, gt_class_ids, gt_masks, pred_boxes,
                                      pred_class_ids, pred_scores, pred_masks,
                                      iou_threshold=0.5, score_threshold=0.0):
    """Matterport's matching loop, with its np.argsort(...)[::-1] that reverses equal scores."""
    order = np.argsort(pred_scores)[::-1]
    pred_class_ids, pred_masks = pred_class_ids[order], pred_masks[..., order]
    p = pred_masks.reshape(-1, pred_masks.shape[-1]).astype(float)
    g = gt_masks.reshape(-1, gt_masks.shape[-1]).astype(float)
    inter = p.T @ g
    overlaps = inter / (p.sum(0)[:, None] + g.sum(0)[None, :] - inter)
    gt_match, pred_match = -np.ones(len(gt_boxes)), -np.ones(len(pred_boxes))
    for i in range(len(pred_boxes)):
        for j in np.argsort(overlaps[i])[::-1]:
            if gt_match[j] > -1:
                continue
            if overlaps[i, j] < iou_threshold:
                break
            if pred_class_ids[i] == gt_class_ids[j]:
                gt_match[j], pred_match[i] = i, j
                break
    return gt_match, pred_match, overlaps


def test_display_differences_maps_reordered_ties_back(monkeypatch):
    import mrcnn.metrics

    monkeypatch.setattr(mrcnn.metrics, "compute_matches", _matterport_order_compute_matches)
    gt_box, gt_ids, gt_mask, pred_box, pred_ids, scores, pred_mask = _tie_inputs()
    fig = visualize.display_differences(_image(), gt_box, gt_ids, gt_mask, pred_box, pred_ids,
                                        scores, pred_mask, CLASS_NAMES, iou_threshold=0.1)
    # Reversed ties: pred 1 takes A (0.80), then pred 0 falls back to B (0.11).
    assert _caption_by_x(fig.axes[0]) == {4: "0.50 / 0.11", 0: "0.50 / 0.80"}


def test_display_differences_handles_empty_sides_and_padding():
    gt_box, gt_ids, gt_mask, pred_box, pred_mask = _differences_inputs()
    fig = visualize.display_differences(_image(), gt_box, gt_ids, gt_mask, np.zeros((0, 4)),
                                        np.zeros(0, int), np.zeros(0), np.zeros((64, 64, 0), bool),
                                        CLASS_NAMES)
    assert len(_rectangles(fig.axes[0])) == 2
    padded_box = np.concatenate([pred_box, np.zeros((2, 4))])
    padded_mask = np.concatenate([pred_mask, np.zeros((64, 64, 2), bool)], axis=-1)
    fig = visualize.display_differences(_image(), gt_box, gt_ids, gt_mask, padded_box,
                                        np.array([1, 2, 1, 0, 0]),
                                        np.array([0.7, 0.95, 0.8, 0, 0]), padded_mask,
                                        CLASS_NAMES)
    assert len(_rectangles(fig.axes[0])) == 5


def test_display_differences_mismatch():
    gt_box, gt_ids, gt_mask, pred_box, pred_mask = _differences_inputs()
    with pytest.raises(ValueError, match="pred_score has 2"):
        visualize.display_differences(_image(), gt_box, gt_ids, gt_mask, pred_box, [1, 2, 1],
                                      [0.5, 0.4], pred_mask, CLASS_NAMES)


# ------------------------------------------------------------------------------------------------
# draw_rois, draw_boxes
# ------------------------------------------------------------------------------------------------

def _rois():
    rois = np.array([[5, 5, 25, 25], [30, 30, 60, 60], [0, 40, 10, 60]])
    refined = rois + np.array([2, 2, 2, 2])
    small = np.zeros((3, 8, 8), np.float32)
    small[:, :4, :] = 1.0  # top half of each ROI
    return rois, refined, small, np.array([1, 0, 2])


def test_draw_rois(tmp_path, capsys):
    rois, refined, small, class_ids = _rois()
    image = _image(80)
    fig = visualize.draw_rois(image, rois, refined, small, class_ids, CLASS_NAMES)
    ax = fig.axes[0]
    assert len(_rectangles(ax)) == 5  # 3 ROIs + 2 refined positives
    assert len(ax.lines) == 2
    assert sorted(t.get_text() for t in ax.texts) == ["cat", "dog"]
    assert ax.get_title() == "3 ROIs"
    changed = np.any(_shown(ax) != image, axis=-1)
    expected = _box_mask(5, 5, 15, 25) | _box_mask(0, 40, 5, 60)  # top halves of positives
    # Matterport's paste blends the mask's border with black: a corner reads 0.7 * 0.7 < 0.5.
    expected[[5, 5, 14, 14], [5, 24, 5, 24]] = False
    np.testing.assert_array_equal(changed, expected)
    out = capsys.readouterr().out
    assert "Positive ROIs:  2" in out and "Negative ROIs:  1" in out and "0.67" in out
    _assert_png(fig, tmp_path, "rois")


def test_draw_rois_limit_and_errors():
    rois, refined, small, class_ids = _rois()
    np.random.seed(0)
    fig = visualize.draw_rois(_image(), rois, refined, small, class_ids, CLASS_NAMES, limit=1)
    ax = fig.axes[0]
    assert ax.get_title() == "Showing 1 random ROIs out of 3"
    assert len([r for r in _rectangles(ax) if r.get_linestyle() == "dashed"]) == 1
    with pytest.raises(ValueError, match="refined_rois has 2 rows"):
        visualize.draw_rois(_image(), rois, refined[:2], small, class_ids, CLASS_NAMES)


def test_draw_boxes_visibilities_captions_and_masks(tmp_path):
    boxes = np.array([[5, 5, 20, 20], [25, 25, 40, 40], [45, 45, 60, 60]])
    refined = boxes + 2
    masks = np.stack([_box_mask(*b) for b in boxes], axis=-1)
    image = _image(80)
    fig = visualize.draw_boxes(image, boxes, refined, masks=masks, captions=["a", "b", "c"],
                               visibilities=[0, 1, 2], title="anchors")
    ax = fig.axes[0]
    rects = _rectangles(ax)
    # Visibility 0 hides the refined box and its line.
    assert len(rects) == 5 and len(ax.lines) == 2
    assert to_rgb(rects[0].get_edgecolor()) == to_rgb("gray")
    # Added per instance: box, then refined box (always solid) when visible.
    assert [r.get_linestyle() for r in rects] == ["dotted", "dotted", "solid", "solid", "solid"]
    positions = {t.get_text(): t.get_position() for t in ax.texts}
    assert positions == {"a": (5, 5), "b": (27, 27), "c": (47, 47)}
    changed = np.any(_shown(ax) != image, axis=-1)
    np.testing.assert_array_equal(changed, masks.any(-1))
    assert ax.get_title() == "anchors"
    _assert_png(fig, tmp_path, "boxes")


def test_draw_boxes_refined_only_and_errors():
    fig = visualize.draw_boxes(_image(), refined_boxes=np.array([[1, 1, 9, 9], [2, 2, 8, 8]]))
    assert len(_rectangles(fig.axes[0])) == 2 and len(fig.axes[0].lines) == 0
    with pytest.raises(ValueError, match="pass boxes, refined_boxes or both"):
        visualize.draw_boxes(_image())
    with pytest.raises(ValueError, match="visibilities must be 0, 1 or 2, got \\[3\\]"):
        visualize.draw_boxes(_image(), np.array([[1, 1, 9, 9]]), visibilities=[3])
    with pytest.raises(ValueError, match="boxes has 1 rows, captions has 2"):
        visualize.draw_boxes(_image(), np.array([[1, 1, 9, 9]]), captions=["a", "b"])


# ------------------------------------------------------------------------------------------------
# plot_precision_recall, plot_overlaps
# ------------------------------------------------------------------------------------------------

def test_plot_precision_recall(tmp_path):
    precisions = np.array([1.0, 1.0, 0.5, 0.5])
    recalls = np.array([0.0, 0.5, 0.5, 1.0])
    fig = visualize.plot_precision_recall(0.75, precisions, recalls)
    ax = fig.axes[0]
    (line,) = ax.lines
    np.testing.assert_array_equal(line.get_xdata(), recalls)
    np.testing.assert_array_equal(line.get_ydata(), precisions)
    assert ax.get_title() == "Precision-Recall Curve. AP@50 = 0.750"
    _assert_png(fig, tmp_path, "pr")
    with pytest.raises(ValueError, match="precisions has 4 values but recalls has 3"):
        visualize.plot_precision_recall(0.5, precisions, recalls[:3])


def test_plot_overlaps(tmp_path):
    overlaps = np.array([[0.9, 0.0], [0.6, 0.2]])
    fig = visualize.plot_overlaps(np.array([1, 2, 0]), np.array([1, 2, 0]),
                                  np.array([0.95, 0.5, 0.0]), overlaps, CLASS_NAMES)
    ax = fig.axes[0]
    texts = {tuple(t.get_position()): t.get_text() for t in ax.texts}
    assert texts == {(0, 0): "0.900\nmatch", (1, 0): "0.000\n",
                     (0, 1): "0.600\nwrong", (1, 1): "0.200\n"}
    assert [t.get_text() for t in ax.get_yticklabels()] == ["cat (0.95)", "dog (0.50)"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["cat", "dog"]
    _assert_png(fig, tmp_path, "overlaps")
    with pytest.raises(ValueError, match=r"overlaps must have shape .*\(2, 2\)"):
        visualize.plot_overlaps([1, 2], [1, 2], [0.5, 0.5], np.zeros((3, 2)), CLASS_NAMES)


# ------------------------------------------------------------------------------------------------
# display_table, display_weight_stats
# ------------------------------------------------------------------------------------------------

def test_display_table_text(capsys):
    text = visualize.display_table([["name", "n"], ["x", 12]])
    assert text == "name  n\nx     12"
    assert capsys.readouterr().out == text + "\n"
    with pytest.raises(TypeError, match="table must be a sequence of rows"):
        visualize.display_table("abc")


def test_display_table_html_in_kernel(monkeypatch):
    import IPython
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython, "get_ipython", lambda: types.SimpleNamespace(kernel=object()))
    monkeypatch.setattr(IPython.display, "display", shown.append)
    markup = visualize.display_table([["<b>", 1]])
    assert markup == "<table><tr><td>&lt;b&gt;</td><td>1</td></tr></table>"
    assert len(shown) == 1 and shown[0].data == markup


class _Var:
    def __init__(self, path):
        self.path = path


class _Layer:
    def __init__(self, name, arrays):
        self.name = name
        self._arrays = arrays
        self.weights = [_Var(f"{name}/{k}") for k in arrays]

    def get_weights(self):
        return list(self._arrays.values())


class Conv2D(_Layer):
    pass


class _Model:
    def __init__(self, layers):
        self.layers = layers


def test_display_weight_stats_duck_typed(capsys):
    dense = _Layer("dense", {"kernel": np.array([[1.0, -3.0], [0.0, 2.0]]),
                             "bias": np.zeros(2)})
    conv = Conv2D("conv", {"kernel": np.full((1, 1, 1, 2), 2000.0), "bias": np.zeros(2)})
    nested = _Model([_Layer("inner", {"w": np.array([1.0, np.nan])})])
    no_weights = _Layer("pool", {})
    table = visualize.display_weight_stats(_Model([dense, no_weights, nested, conv]))
    assert table[0] == ["WEIGHT NAME", "SHAPE", "MIN", "MAX", "STD"]
    names = [row[0] for row in table[1:]]
    assert names == ["dense/kernel", "dense/bias *** dead?", "inner/w *** NaN/Inf? *** dead?",
                     "conv/kernel *** dead? *** Overflow?", "conv/bias"]
    # kernel values 1, -3, 0, 2: min -3, max 2, std sqrt(3.5)
    # min/std padded to 9 characters, max to 10
    assert table[1][1:] == ["(2, 2)", "  -3.0000", "   +2.0000", "  +1.8708"]
    assert "dense/kernel" in capsys.readouterr().out


def test_display_weight_stats_wrappers():
    dense = _Layer("dense", {"kernel": np.array([1.0, 2.0])})
    pairs = types.SimpleNamespace(get_trainable_layers=lambda: [("dense", dense)])
    plain = types.SimpleNamespace(get_trainable_layers=lambda: [dense])
    wrapped = types.SimpleNamespace(keras_model=_Model([dense]))
    for model in (pairs, plain, wrapped):
        table = visualize.display_weight_stats(model)
        assert table[1] == ["dense/kernel", "(2,)", "  +1.0000", "   +2.0000", "  +0.5000"]


def test_display_weight_stats_keras_model():
    import keras

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="fc")])
    kernel = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    model.layers[0].set_weights([kernel, np.zeros(2)])
    table = visualize.display_weight_stats(model)
    assert len(table) == 3
    assert table[1][0].endswith("fc/kernel") and table[1][1] == "(3, 2)"
    assert table[1][2:4] == ["  +1.0000", "   +6.0000"]
    assert table[2][0].endswith("fc/bias *** dead?")
    with pytest.raises(TypeError, match="display_weight_stats: model must be"):
        visualize.display_weight_stats(object())


# ------------------------------------------------------------------------------------------------
# plot_history, save_figure
# ------------------------------------------------------------------------------------------------

HISTORY = {
    "loss": [3.0, 2.0, 1.5],
    "mrcnn_mask_loss": [0.9, 0.7, 0.6],
    "val_loss": [3.5, 2.5, 2.0],
    "val_mrcnn_mask_loss": [1.0, 0.8, 0.75],
    "lr": [0.01, 0.01, 0.001],
}


def _curves(fig):
    return {a.get_title(): {l.get_label(): (list(l.get_xdata()), list(l.get_ydata()))
                            for l in a.lines} for a in fig.axes if a.lines}


def test_plot_history_from_dict(tmp_path):
    fig = visualize.plot_history(HISTORY)
    curves = _curves(fig)
    assert curves == {
        "loss": {"loss": ([1, 2, 3], HISTORY["loss"]),
                 "val_loss": ([1, 2, 3], HISTORY["val_loss"])},
        "mrcnn_mask_loss": {"mrcnn_mask_loss": ([1, 2, 3], HISTORY["mrcnn_mask_loss"]),
                            "val_mrcnn_mask_loss": ([1, 2, 3], HISTORY["val_mrcnn_mask_loss"])},
    }
    _assert_png(fig, tmp_path, "history")


def test_plot_history_from_history_object_and_csv(tmp_path):
    history = types.SimpleNamespace(history=HISTORY, epoch=[5, 6, 7])
    fig = visualize.plot_history(history, metrics=["val_loss"])
    assert _curves(fig)["loss"]["val_loss"] == ([6, 7, 8], HISTORY["val_loss"])

    log = tmp_path / "log.csv"
    log.write_text("epoch,loss,lr,val_loss\n0,3.0,0.01,3.5\n1,2.0,0.01,\n")
    fig = visualize.plot_history(str(log))
    (curves,) = _curves(fig).values()
    assert curves["loss"] == ([1, 2], [3.0, 2.0])
    assert curves["val_loss"][1][0] == 3.5 and np.isnan(curves["val_loss"][1][1])


def test_plot_history_into_axes_and_errors(tmp_path):
    fig, ax = plt.subplots()
    assert visualize.plot_history(HISTORY, metrics="loss", ax=ax) is fig
    assert len(ax.lines) == 2
    with pytest.raises(ValueError, match="ax holds 1 Axes but 2 are needed"):
        visualize.plot_history(HISTORY, ax=ax)
    with pytest.raises(ValueError, match="metric 'rpn_loss' not found"):
        visualize.plot_history(HISTORY, metrics=["rpn_loss"])
    with pytest.raises(ValueError, match="different lengths"):
        visualize.plot_history({"loss": [1, 2], "val_loss": [1]})
    bad = tmp_path / "bad.csv"
    bad.write_text("epoch,loss\n0,oops\n")
    with pytest.raises(ValueError, match=r"bad.csv line 2, column 'loss'"):
        visualize.plot_history(bad)
    with pytest.raises(TypeError, match="history must be"):
        visualize.plot_history(42)


def test_save_figure_creates_parents(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    path = visualize.save_figure(fig, tmp_path / "a" / "b" / "c.png", dpi=50)
    assert path == tmp_path / "a" / "b" / "c.png" and path.stat().st_size > 0
    with pytest.raises(TypeError, match="fig must be a matplotlib Figure"):
        visualize.save_figure("not a figure", tmp_path / "x.png")
