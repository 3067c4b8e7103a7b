"""Downloading pretrained weights: cache directory, progress bar, size and checksum checks.

A download goes to ``dest + ".part"`` and is moved to ``dest`` only after its size and checksums
are verified, so an interrupted or corrupt download never leaves a file at ``dest``. A file
already at ``dest`` that passes the checks is not downloaded again.
"""

import hashlib
import logging
import os
import urllib.request

__all__ = [
    "COCO_MODEL_URL", "COCO_MODEL_SIZE", "IMAGENET_RESNET50_URL", "IMAGENET_RESNET50_MD5",
    "DownloadError", "get_cache_dir", "download_file", "download_trained_weights",
    "download_imagenet_weights",
]

logger = logging.getLogger(__name__)

#: Matterport's Mask R-CNN weights trained on MS COCO (Keras 2 HDF5 layout).
COCO_MODEL_URL = "https://github.com/matterport/Mask_RCNN/releases/download/v2.0/mask_rcnn_coco.h5"
#: Size in bytes of the file at `COCO_MODEL_URL`.
COCO_MODEL_SIZE = 257557808

#: Keras' ImageNet ResNet-50 weights without the top layers.
IMAGENET_RESNET50_URL = ("https://github.com/fchollet/deep-learning-models/releases/download/v0.2/"
                         "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5")
IMAGENET_RESNET50_MD5 = "a268eb855778b3df3c7506639542a6af"

_CHUNK_SIZE = 1 << 20
_TIMEOUT_S = 60


class DownloadError(IOError):
    """A download failed or produced a file of the wrong size or checksum."""


def get_cache_dir():
    """Directory for downloaded files: ``$MRCNN_HOME`` if set, else ``~/.mrcnn``.

    The directory is not created here.
    """
    return os.path.expanduser(os.environ.get("MRCNN_HOME") or os.path.join("~", ".mrcnn"))


def _file_digests(path, algorithms):
    hashes = {name: hashlib.new(name) for name in algorithms}
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK_SIZE), b""):
            for h in hashes.values():
                h.update(chunk)
    return {name: h.hexdigest() for name, h in hashes.items()}


def _expected_hashes(sha256, md5):
    expected = {}
    if sha256:
        expected["sha256"] = sha256.lower()
    if md5:
        expected["md5"] = md5.lower()
    return expected


def _check(url, size, digests, expected_size, expected_hashes):
    """Raise DownloadError if size or digests differ from what is expected."""
    if expected_size is not None and size != expected_size:
        raise DownloadError(f"Download of {url} has the wrong size: expected {expected_size} "
                            f"bytes, got {size}")
    for name, expected in expected_hashes.items():
        if digests[name] != expected:
            raise DownloadError(f"Download of {url} has the wrong {name} checksum: expected "
                                f"{expected}, got {digests[name]}")


def _is_valid(path, expected_size, expected_hashes):
    if expected_size is not None and os.path.getsize(path) != expected_size:
        return False
    if expected_hashes:
        digests = _file_digests(path, expected_hashes)
        return all(digests[n] == v for n, v in expected_hashes.items())
    return True


def download_file(url, dest, expected_size=None, sha256=None, md5=None, progress=True):
    """Download ``url`` to ``dest`` atomically, verifying size and checksums.

    url: any URL urllib can open (``https://``, ``file://``, ...).
    dest: destination path; its directory is created if needed.
    expected_size: size in bytes, or None not to check.
    sha256, md5: hex digests, or None not to check.
    progress: show a tqdm progress bar.

    If ``dest`` exists and passes the given checks it is kept and nothing is downloaded;
    if it fails them it is downloaded again. Data is written to ``dest + ".part"`` and moved to
    ``dest`` only once verified; on any failure (network error, wrong size or checksum,
    interruption) the partial file is removed.

    Returns ``dest``. Raises `DownloadError` naming the URL (and the expected and actual values
    for a wrong size or checksum).
    """
    dest = os.fspath(dest)
    expected_hashes = _expected_hashes(sha256, md5)
    if os.path.isfile(dest):
        if _is_valid(dest, expected_size, expected_hashes):
            logger.info("Using cached %s", dest)
            return dest
        logger.warning("%s exists but does not match the expected size/checksum; "
                       "downloading it again from %s", dest, url)

    directory = os.path.dirname(os.path.abspath(dest))
    os.makedirs(directory, exist_ok=True)
    part = dest + ".part"
    hashes = {name: hashlib.new(name) for name in expected_hashes}
    size = 0
    try:
        try:
            response = urllib.request.urlopen(url, timeout=_TIMEOUT_S)
        except OSError as error:  # URLError and HTTPError are OSErrors
            raise DownloadError(f"Cannot download {url}: {error}") from error
        with response:
            total = response.headers.get("Content-Length") if response.headers else None
            total = int(total) if total and total.isdigit() else expected_size
            from tqdm.auto import tqdm
            with open(part, "wb") as f, tqdm(total=total, unit="B", unit_scale=True,
                                             unit_divisor=1024, disable=not progress,
                                             desc=os.path.basename(dest)) as bar:
                while True:
                    try:
                        chunk = response.read(_CHUNK_SIZE)
                    except OSError as error:
                        raise DownloadError(f"Download of {url} failed after {size} bytes: "
                                            f"{error}") from error
                    if not chunk:
                        break
                    f.write(chunk)
                    for h in hashes.values():
                        h.update(chunk)
                    size += len(chunk)
                    bar.update(len(chunk))
        _check(url, size, {n: h.hexdigest() for n, h in hashes.items()}, expected_size,
               expected_hashes)
        os.replace(part, dest)
    except BaseException:
        # Also on KeyboardInterrupt: never leave a partial file behind.
        if os.path.exists(part):
            os.remove(part)
        raise
    return dest


def download_trained_weights(coco_model_path, verbose=1, url=COCO_MODEL_URL, expected_size=None,
                             sha256=None):
    """Download Matterport's COCO-trained weights to ``coco_model_path`` (kept if already valid).

    coco_model_path: destination file; verbose: 0 silent, 1 messages and a progress bar;
    url: source URL; expected_size: bytes, default `COCO_MODEL_SIZE` when ``url`` is
    `COCO_MODEL_URL` (otherwise not checked); sha256: optional hex digest.
    Returns the path.
    """
    if expected_size is None and url == COCO_MODEL_URL:
        expected_size = COCO_MODEL_SIZE
    if verbose > 0:
        print(f"Downloading pretrained model to {coco_model_path} ...")
    download_file(url, coco_model_path, expected_size=expected_size, sha256=sha256,
                  progress=verbose > 0)
    if verbose > 0:
        print("... done downloading pretrained model!")
    return coco_model_path


def download_imagenet_weights(cache_dir=None):
    """Download Keras' ImageNet ResNet-50 weights (no top) into ``cache_dir``
    (default `get_cache_dir`), checking their MD5. Returns the file's path."""
    cache_dir = cache_dir if cache_dir is not None else get_cache_dir()
    dest = os.path.join(cache_dir, IMAGENET_RESNET50_URL.rsplit("/", 1)[-1])
    return download_file(IMAGENET_RESNET50_URL, dest, md5=IMAGENET_RESNET50_MD5)
