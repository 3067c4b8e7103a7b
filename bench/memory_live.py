"""Which tensors are alive at detect()'s peak: TensorFlow's allocator, not the process.

    python bench/memory_live.py [--winograd auto|False] [--top 12]

bench/memory.py reads the process's peak resident set, which includes the interpreter, the
libraries and malloc's fragmentation, and cannot say what the graph held. This script runs the
default config's detect() (ResNet-101, 1024 px, random weights, 100 detections, as
bench/memory.py) with TensorFlow's BFC allocator on the CPU (``TF_CPU_ALLOCATOR_USE_BFC``, which
keeps statistics), profiles one warm call, and replays the profiler's allocation events: it prints
the allocator's peak, the tensors allocated before the call that are still held (weights, folded
kernels), and the largest tensors allocated during the call that were alive at its peak, each with
the op that made it. Run each setting in its own process (the allocator's peak only grows).
"""

import argparse
import glob
import os
import tempfile

# Before TensorFlow loads: its CPU allocator is chosen once.
os.environ["TF_CPU_ALLOCATOR_USE_BFC"] = "true"

from _common import detect_image, inference_configs, machine  # noqa: E402


def allocation_events(logdir):
    """[(time ns, "MemoryAllocation" | "MemoryDeallocation", {stat: value})] in time order,
    from the profiler's XSpace files under logdir."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2
    events = []
    for path in glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True):
        space = xplane_pb2.XSpace()
        with open(path, "rb") as f:
            space.ParseFromString(f.read())
        for plane in space.planes:
            names = {k: v.name for k, v in plane.event_metadata.items()}
            stat_names = {k: v.name for k, v in plane.stat_metadata.items()}
            for line in plane.lines:
                for event in line.events:
                    kind = names.get(event.metadata_id, "")
                    if kind not in ("MemoryAllocation", "MemoryDeallocation"):
                        continue
                    stats = {}
                    for stat in event.stats:
                        which = stat.WhichOneof("value")
                        value = getattr(stat, which)
                        if which == "ref_value":
                            value = plane.stat_metadata[value].name
                        stats[stat_names.get(stat.metadata_id)] = value
                    events.append((line.timestamp_ns + event.offset_ps // 1000, kind, stats))
    return sorted(events, key=lambda e: e[0])


def live_at_peak(events):
    """(peak bytes in use, [(bytes, op, shape)] of the allocations made during the profile and
    alive at the peak, largest first)."""
    live, peak, at_peak = {}, -1, {}
    for _, kind, stats in events:
        if kind == "MemoryAllocation":
            live[stats["addr"]] = (stats["requested_bytes"], stats.get("tf_op", "?"),
                                   stats.get("shape", ""))
        else:
            live.pop(stats["addr"], None)
        if stats["bytes_allocated"] > peak:
            peak, at_peak = stats["bytes_allocated"], dict(live)
    return peak, sorted(at_peak.values(), reverse=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--winograd", default="auto", choices=["auto", "True", "False"])
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()

    import tensorflow as tf
    from mrcnn import model as modellib

    print(machine())
    cfg = inference_configs()["default"]()
    cfg.WINOGRAD = {"True": True, "False": False}.get(args.winograd, args.winograd)
    model = modellib.MaskRCNN("inference", cfg, tempfile.mkdtemp())
    image = detect_image()
    for _ in range(2):  # trace, then a warm call
        model.detect([image])
    held = tf.config.experimental.get_memory_info("CPU:0")["current"]
    logdir = tempfile.mkdtemp()
    tf.profiler.experimental.start(logdir)
    model.detect([image])
    tf.profiler.experimental.stop()

    peak, tensors = live_at_peak(allocation_events(logdir))
    mib = 2 ** 20
    print("detect() default config, WINOGRAD %s: allocator peak %.0f MiB = %.0f MiB held "
          "between calls (weights, folded kernels) + %.0f MiB of the call"
          % (args.winograd, peak / mib, held / mib, (peak - held) / mib))
    print("largest tensors alive at the peak (of %.0f MiB made during the call):"
          % (sum(t[0] for t in tensors) / mib))
    for size, op, shape in tensors[:args.top]:
        print("  %7.1f MiB  %s %s" % (size / mib, op, shape))


if __name__ == "__main__":
    main()
