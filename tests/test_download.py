import hashlib
import io
import os
import sys

import pytest

from mrcnn import download
from mrcnn.download import (
    COCO_MODEL_SIZE,
    COCO_MODEL_URL,
    DownloadError,
    download_file,
    download_imagenet_weights,
    download_trained_weights,
    get_cache_dir,
)

PAYLOAD = bytes(range(256)) * 9000  # 2.3 MB: several 1 MiB chunks


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "src" / "weights.h5"
    path.parent.mkdir()
    path.write_bytes(PAYLOAD)
    return path.as_uri(), path


def test_constants():
    assert COCO_MODEL_URL.endswith("/v2.0/mask_rcnn_coco.h5")
    assert COCO_MODEL_SIZE == 257557808
    assert download.IMAGENET_RESNET50_MD5 == "a268eb855778b3df3c7506639542a6af"


def test_download_success_with_checks(source, tmp_path):
    url, _ = source
    dest = tmp_path / "cache" / "sub" / "w.h5"
    out = download_file(url, str(dest), expected_size=len(PAYLOAD),
                        sha256=hashlib.sha256(PAYLOAD).hexdigest(),
                        md5=hashlib.md5(PAYLOAD).hexdigest().upper(), progress=False)
    assert out == str(dest)
    assert dest.read_bytes() == PAYLOAD
    assert not os.path.exists(str(dest) + ".part")


def test_cache_hit_does_not_download_again(source, tmp_path, monkeypatch):
    url, _ = source
    dest = tmp_path / "w.h5"
    download_file(url, dest, expected_size=len(PAYLOAD), progress=False)
    os.utime(dest, (1_000_000, 1_000_000))

    def fail(*args, **kwargs):
        raise AssertionError("urlopen called for a valid cached file")

    monkeypatch.setattr(download.urllib.request, "urlopen", fail)
    download_file(url, dest, expected_size=len(PAYLOAD),
                  sha256=hashlib.sha256(PAYLOAD).hexdigest(), progress=False)
    assert os.stat(dest).st_mtime == 1_000_000


def test_invalid_cached_file_is_replaced(source, tmp_path):
    url, _ = source
    dest = tmp_path / "w.h5"
    dest.write_bytes(b"stale")
    download_file(url, dest, expected_size=len(PAYLOAD), progress=False)
    assert dest.read_bytes() == PAYLOAD


def test_wrong_size_leaves_no_file(source, tmp_path):
    url, _ = source
    dest = tmp_path / "w.h5"
    with pytest.raises(DownloadError) as info:
        download_file(url, dest, expected_size=len(PAYLOAD) + 1, progress=False)
    message = str(info.value)
    assert url in message and str(len(PAYLOAD) + 1) in message and str(len(PAYLOAD)) in message
    assert not dest.exists() and not os.path.exists(str(dest) + ".part")


def test_wrong_sha256_leaves_no_file(source, tmp_path):
    url, _ = source
    dest = tmp_path / "w.h5"
    wrong = "0" * 64
    with pytest.raises(DownloadError) as info:
        download_file(url, dest, sha256=wrong, progress=False)
    message = str(info.value)
    assert url in message and wrong in message
    assert hashlib.sha256(PAYLOAD).hexdigest() in message
    assert not dest.exists() and not os.path.exists(str(dest) + ".part")


class _BrokenResponse(io.BytesIO):
    """Yields one chunk, then fails like a dropped connection (or a Ctrl-C)."""

    def __init__(self, error):
        super().__init__(PAYLOAD)
        self.headers = {"Content-Length": str(len(PAYLOAD))}
        self._error = error
        self._calls = 0

    def read(self, n=-1):
        self._calls += 1
        if self._calls > 1:
            raise self._error
        return super().read(n)


@pytest.mark.parametrize("error, expected", [(ConnectionResetError("reset"), DownloadError),
                                             (KeyboardInterrupt(), KeyboardInterrupt)])
def test_interrupted_download_leaves_no_file(tmp_path, monkeypatch, error, expected):
    monkeypatch.setattr(download.urllib.request, "urlopen",
                        lambda url, timeout=None: _BrokenResponse(error))
    dest = tmp_path / "w.h5"
    with pytest.raises(expected):
        download_file("https://example.invalid/w.h5", dest, progress=False)
    assert not dest.exists() and not os.path.exists(str(dest) + ".part")


def test_unreachable_url_names_it(tmp_path):
    url = (tmp_path / "does-not-exist.h5").as_uri()
    with pytest.raises(DownloadError, match="does-not-exist.h5"):
        download_file(url, tmp_path / "w.h5", progress=False)
    assert not (tmp_path / "w.h5").exists()


def test_download_trained_weights(source, tmp_path, capsys, monkeypatch):
    url, _ = source
    dest = tmp_path / "mask_rcnn_coco.h5"
    assert download_trained_weights(str(dest), verbose=1, url=url) == str(dest)
    assert dest.read_bytes() == PAYLOAD
    assert "Downloading pretrained model" in capsys.readouterr().out
    # The COCO URL implies the COCO size check.
    calls = []
    monkeypatch.setattr(download, "download_file",
                        lambda url, dest, **kw: calls.append((url, kw)) or dest)
    download_trained_weights(str(dest), verbose=0)
    assert calls[0][0] == COCO_MODEL_URL
    assert calls[0][1]["expected_size"] == COCO_MODEL_SIZE
    assert calls[0][1]["progress"] is False


def test_cache_dir_and_imagenet(tmp_path, monkeypatch):
    monkeypatch.setenv("MRCNN_HOME", str(tmp_path / "home"))
    assert get_cache_dir() == str(tmp_path / "home")
    monkeypatch.delenv("MRCNN_HOME")
    assert get_cache_dir() == os.path.expanduser(os.path.join("~", ".mrcnn"))

    calls = []
    monkeypatch.setattr(download, "download_file",
                        lambda url, dest, **kw: calls.append((url, dest, kw)) or dest)
    path = download_imagenet_weights(cache_dir=str(tmp_path))
    assert path == str(tmp_path / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5")
    assert calls[0][0] == download.IMAGENET_RESNET50_URL
    assert calls[0][2]["md5"] == "a268eb855778b3df3c7506639542a6af"


def test_utils_facade_does_not_import_tensorflow():
    import subprocess
    code = ("import sys, mrcnn.utils as u; "
            "assert u.Dataset and u.resize_image and u.compute_ap and u.download_trained_weights; "
            "assert u.COCO_MODEL_URL and u.compose_image_meta and u.batch_slice; "
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
    subprocess.run([sys.executable, "-c", code], check=True,
                   cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
