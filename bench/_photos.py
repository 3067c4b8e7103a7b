"""A generated data set of real-size photos with polygon instances, read by a user-style
``Dataset`` subclass like Matterport's balloon sample: the input-pipeline benchmark's data.

Each image is a 1920x1080 JPEG (quality 90) with smooth colour fields, texture and blobs, so it
decodes like a photo; its instances are random star-shaped polygons of 12 to 40 vertices and
20 to 500 pixels across, stored as VIA-style ``all_points_x`` / ``all_points_y`` lists in one
JSON file beside the images.
"""

import json
import os

import numpy as np


def write_photos(folder, count, polygons, width=1920, height=1080, seed=0):
    """Write ``count`` JPEGs with ``polygons`` instances each into ``folder`` (made if missing)
    and ``folder/regions.json``; returns the JSON's path. Deterministic for a seed."""
    from PIL import Image
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    records = []
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    for i in range(count):
        image = np.zeros((height, width, 3), np.float32)
        for c in range(3):  # a few low-frequency waves per channel: skies, walls, floors
            for _ in range(3):
                fy, fx = rng.uniform(0.5, 4, size=2) / np.array([height, width])
                phase = rng.uniform(0, 2 * np.pi)
                image[..., c] += rng.uniform(20, 50) * np.sin(2 * np.pi * (fy * yy + fx * xx)
                                                              + phase)
            image[..., c] += rng.uniform(80, 170)
        image += rng.normal(0, 12, size=image.shape).astype(np.float32)  # sensor noise, texture
        regions = []
        for _ in range(polygons):
            cy, cx = rng.uniform(0, height), rng.uniform(0, width)
            radius = rng.uniform(10, 250)
            n = int(rng.integers(12, 41))
            angles = np.sort(rng.uniform(0, 2 * np.pi, n))
            radii = radius * rng.uniform(0.6, 1.0, n)
            xs = np.clip(cx + radii * np.cos(angles), 0, width - 1)
            ys = np.clip(cy + radii * np.sin(angles), 0, height - 1)
            regions.append({"all_points_x": [int(v) for v in xs],
                            "all_points_y": [int(v) for v in ys]})
            y0, y1 = int(max(cy - radius, 0)), int(min(cy + radius, height))
            x0, x1 = int(max(cx - radius, 0)), int(min(cx + radius, width))
            image[y0:y1, x0:x1] = 0.7 * image[y0:y1, x0:x1] + 0.3 * rng.uniform(0, 255, 3)
        name = "photo_%03d.jpg" % i
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(
            os.path.join(folder, name), quality=90)
        records.append({"filename": name, "width": width, "height": height,
                        "regions": regions})
    path = os.path.join(folder, "regions.json")
    with open(path, "w") as f:
        json.dump(records, f)
    return path


def photo_dataset(folder):
    """A prepared `PolygonPhotoDataset` of the photos ``write_photos`` put in ``folder``."""
    dataset = PolygonPhotoDataset()
    dataset.load_photos(folder)
    dataset.prepare()
    return dataset


def _dataset_base():
    from mrcnn import utils
    return utils.Dataset


class PolygonPhotoDataset(_dataset_base()):
    """What a user writes after Matterport's balloon sample: one class, polygons drawn with
    ``skimage.draw.polygon`` into a ``[height, width, N]`` uint8 array, returned as bool."""

    def load_photos(self, folder):
        self.add_class("photo", 1, "object")
        with open(os.path.join(folder, "regions.json")) as f:
            for record in json.load(f):
                self.add_image("photo", image_id=record["filename"],
                               path=os.path.join(folder, record["filename"]),
                               width=record["width"], height=record["height"],
                               polygons=record["regions"])

    def load_mask(self, image_id):
        import skimage.draw
        info = self.image_info[image_id]
        mask = np.zeros([info["height"], info["width"], len(info["polygons"])], dtype=np.uint8)
        for i, p in enumerate(info["polygons"]):
            rr, cc = skimage.draw.polygon(p["all_points_y"], p["all_points_x"])
            mask[rr, cc, i] = 1
        return mask.astype(bool), np.ones([mask.shape[-1]], dtype=np.int32)
