"""The demo: the whole workflow on generated data, from scratch on the CPU, in minutes.

A small synthetic VIA data set of faces wearing masks is written, a light model is trained in
two stages from scratch (stage 1 all layers at 0.02 with warmup, stage 2 all layers at 0.002 from
the best stage-1 checkpoint; the heads alone cannot learn on a random backbone), evaluated, and
its detections and training curves are drawn. Training stops in time for the whole demo to end
within ``max_minutes``.

The mask head is the last part to learn: it is trained only on positive ROIs (IoU >= 0.5 with a
ground-truth box), which exist only once the RPN proposes near the objects, so its loss starts
falling in stage 1's last epoch, when the box losses have nearly converged. With two stage-2
epochs and the five losses weighted equally it stopped at a mask loss of 0.27-0.33 (blurred
probabilities whose 0.5 threshold gives box-like masks; COCO segm AP 0.61-0.74 over runs). The
demo therefore weights the mask loss double (`DEMO_LOSS_WEIGHTS`) and trains a third stage-2
epoch: mask loss 0.16-0.20, segm AP 0.76-0.79 (docs/benchmarks.md, "Demo mask quality").
"""

import os
import shlex
import time

from mrcnn.workflow.evaluate import evaluate, format_results, public, write_metrics
from mrcnn.workflow.stages import Stage
from mrcnn.workflow.train import run_training

#: The demo's plan: data set size and the two stages (epochs x STEPS_PER_EPOCH batches of 4).
DEMO_PLAN = {
    "full": {"n_train": 240, "n_val": 30, "steps": 40, "stage1_epochs": 3, "stage2_epochs": 3,
             "warmup": 50},
    "fast": {"n_train": 40, "n_val": 8, "steps": 10, "stage1_epochs": 2, "stage2_epochs": 1,
             "warmup": 10},
}

#: The demo's loss weights: the mask loss counts double (see ``demo_settings``).
DEMO_LOSS_WEIGHTS = {"rpn_class_loss": 1.0, "rpn_bbox_loss": 1.0, "mrcnn_class_loss": 1.0,
                     "mrcnn_bbox_loss": 1.0, "mrcnn_mask_loss": 2.0}

#: Seconds kept after training for building the inference model, evaluating and drawing.
RESERVE_SECONDS = 75.0


def demo_settings(output, fast=False, classes="mask"):
    """The run settings the demo trains with (see `mrcnn.workflow.settings`)."""
    plan = DEMO_PLAN["fast" if fast else "full"]
    return {
        "dataset": os.path.join(output, "data"), "format": "via", "name": "facemask",
        "classes": ["mask"] if classes == "mask" else None,
        "class_attribute": "mask_type" if classes == "types" else None,
        "preset": "light", "weights": "none", "logs": os.path.join(output, "logs"),
        "overrides": {"STEPS_PER_EPOCH": plan["steps"], "WARMUP_STEPS": plan["warmup"],
                      "LOSS_WEIGHTS": dict(DEMO_LOSS_WEIGHTS)},
        "stages": [Stage("all", 0.02, plan["stage1_epochs"]).to_dict(),
                   Stage("all", 0.002, plan["stage2_epochs"]).to_dict()],
    }


def draw_detections(result, path, count=4):
    """Ground truth (top) and detections (bottom) of the first validation images of an
    `evaluate` result, saved as PNG."""
    from mrcnn import visualize
    from mrcnn.ops.boxes_np import extract_bboxes
    from mrcnn.workflow.detect_files import new_figure

    dataset, detector, names = result["_dataset"], result["_detector"], \
        ["BG"] + result["class_names"]
    ids = list(dataset.image_ids[:count])
    fig, axes = new_figure(2, len(ids), size=3.2)
    for j, image_id in enumerate(ids):
        image = dataset.load_image(image_id)
        masks, class_ids = dataset.load_mask(image_id)
        visualize.display_instances(image, extract_bboxes(masks), masks, class_ids, names,
                                    title="ground truth", ax=axes[0, j])
        r = detector.detect([image])[0]
        ap = result["rows"][j]["AP@0.5"]
        visualize.display_instances(image, r["rois"], r["masks"], r["class_ids"], names,
                                    r["scores"], title=f"detections (AP@0.5 {ap:.2f})"
                                    if ap is not None else "detections", ax=axes[1, j])
    fig.tight_layout()
    visualize.save_figure(fig, path, dpi=100)
    return path


def draw_curves(run_dir, records, path):
    """The run's training curves (``history.csv``) with the start of stage 2 marked."""
    from matplotlib.ticker import MaxNLocator

    from mrcnn import visualize
    from mrcnn.workflow.detect_files import new_figure

    fig, axes = new_figure(2, 3, size=3.6)
    visualize.plot_history(os.path.join(run_dir, "history.csv"), ax=list(axes.ravel()))
    later = [e for e in records if e["stage"] > 1]
    if later:
        # plot_history puts epoch N at x = N; stage 2 starts between its first epoch and the one
        # before.
        x = later[0]["first_epoch"] - 0.5
        for ax in axes.ravel():
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.axvline(x, color="gray", linestyle=":")
            ax.text(x + 0.05, 0.97, "stage 2", color="gray", va="top",
                    transform=ax.get_xaxis_transform())
    fig.tight_layout()
    visualize.save_figure(fig, path, dpi=100)
    return path


def next_commands(output, command="mrcnn"):
    """The evaluate and detect command lines that continue from a demo's output."""
    logs = shlex.quote(os.path.join(output, "logs"))
    return [f"{command} evaluate --logs {logs}",
            f"{command} detect --logs {logs} --image "
            f"{shlex.quote(os.path.join(output, 'data', 'val'))} --output "
            f"{shlex.quote(os.path.join(output, 'detect'))}"]


def run_demo(output=os.path.join("out", "demo"), fast=False, classes="mask", max_minutes=9.5,
             seed=0, command="mrcnn"):
    """Generate data, train both stages from scratch, evaluate, draw (see the module docstring).

    Returns a dict: ``run_dir``, ``best``, ``metrics`` (the public evaluation), the paths
    ``metrics_json``, ``detections_png``, ``curves_png``, ``minutes`` and ``next`` (command
    lines printed for the next steps, starting with ``command``).
    """
    import keras

    from mrcnn.datasets.synthetic import write_via_dataset

    t0 = time.time()
    plan = DEMO_PLAN["fast" if fast else "full"]
    settings = demo_settings(output, fast, classes)
    keras.utils.set_random_seed(seed)
    write_via_dataset(settings["dataset"], n_train=plan["n_train"], n_val=plan["n_val"],
                      image_size=(128, 128), scene="facemask", seed=seed)
    print(f"Generated {plan['n_train']} training and {plan['n_val']} validation images of "
          f"synthetic faces wearing masks (VIA format) in {settings['dataset']}")
    end = t0 + 60.0 * max_minutes - RESERVE_SECONDS
    now = time.time()
    stage1_end = now + 0.72 * (end - now)
    print("\nFrom scratch, 'heads' alone cannot learn (the backbone would stay random), so stage "
          "1 trains all layers at the from-scratch learning rate 0.02 with warmup; stage 2 then "
          "trains all layers at 0.002 from the best stage-1 checkpoint. With COCO weights "
          "(`train --weights coco`) stage 1 trains the heads at 1e-3 and stage 2 all layers at "
          "1e-5.")
    result = run_training(settings, deadlines=(stage1_end, end))
    run_dir, best = result["run_dir"], result["best"]
    del result["model"]

    print(f"\nEvaluating {best} on the {plan['n_val']} validation images")
    ev = evaluate(best, logs=settings["logs"])
    print(format_results(ev))
    metrics_path = write_metrics(ev, os.path.join(output, "metrics.json"))
    detections_png = draw_detections(ev, os.path.join(output, "detections.png"))
    curves_png = draw_curves(run_dir, result["records"],
                             os.path.join(output, "training_curves.png"))

    minutes = (time.time() - t0) / 60
    stopped = [e["stage"] for e in result["records"] if e["stopped_by_time_limit"]]
    print(f"\nDemo finished in {minutes:.1f} min"
          + (f" (stage {', '.join(map(str, stopped))} cut short by --max-minutes)"
             if stopped else ""))
    print(f"  mAP@0.5 {ev['mAP@0.5']:.3f}, mAP@0.5:0.95 {ev['mAP@0.5:0.95']:.3f}, "
          f"COCO AP bbox {ev['coco']['bbox']:.3f}, segm {ev['coco']['segm']:.3f}")
    print(f"  data set:          {settings['dataset']}/{{train,val}}/via_region_data.json")
    print(f"  run directory:     {run_dir} (checkpoints, history.csv, settings.json, "
          f"TensorBoard logs)")
    print(f"  best checkpoint:   {best}")
    print(f"  detections:        {detections_png}")
    print(f"  training curves:   {curves_png}")
    print(f"  metrics:           {metrics_path}")
    lines = next_commands(output, command)
    print("Next (copy and paste; the run's settings.json supplies every other option):")
    for line in lines:
        print(f"  {line}")
    return {"run_dir": run_dir, "best": best, "metrics": public(ev),
            "metrics_json": metrics_path, "detections_png": detections_png,
            "curves_png": curves_png, "minutes": minutes, "next": lines}
