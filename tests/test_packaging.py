"""The package as installed: its version in one place, and the Colab constraints script."""

import importlib.metadata
import os
import re
import subprocess
import sys

import pytest

from conftest import REPO

SCRIPT = os.path.join(REPO, "constraints", "update_colab.py")


def test_version_is_the_installed_distribution_version():
    import mrcnn
    assert re.fullmatch(r"\d+\.\d+\.\d+([ab]\d+|rc\d+|\.dev\d+)?", mrcnn.__version__)
    assert importlib.metadata.version("mrcnn-keras") == mrcnn.__version__
    # The console script belongs to the distribution mrcnn-keras.
    scripts = importlib.metadata.distribution("mrcnn-keras").entry_points
    assert [e.value for e in scripts if e.name == "mrcnn"] == ["mrcnn.cli:run"]


@pytest.mark.repository
def test_version_lives_in_the_package_only():
    with open(os.path.join(REPO, "pyproject.toml")) as f:
        text = f.read()
    project = text.split("[project]", 1)[1].split("\n[", 1)[0]
    assert not re.search(r"^version\s*=", project, re.M), "a second version in pyproject.toml"
    assert 'dynamic = ["version"]' in project
    assert 'version = {attr = "mrcnn.__version__"}' in text


def _update(tmp_path, freeze_lines, *args):
    freeze = tmp_path / "freeze.txt"
    freeze.write_text("\n".join(freeze_lines) + "\n")
    out = tmp_path / "colab.txt"
    proc = subprocess.run([sys.executable, SCRIPT, str(freeze), "--output", str(out), *args],
                          capture_output=True, text=True, timeout=60)
    return proc, out


#: A freeze holding every package mrcnn needs, plus some it does not.
FREEZE = ["absl-py==1.4.0", "albumentations==2.0.8", "h5py==3.16.0", "keras==3.13.2",
          "matplotlib==3.10.0", "ml_dtypes==0.5.4", "numpy==2.0.2", "protobuf==5.29.6",
          "pycocotools==2.0.11", "scikit-image==0.25.2", "scipy==1.16.3",
          "tensorboard==2.20.0", "tensorflow==2.20.0", "threadpoolctl==3.6.0", "tqdm==4.67.3",
          "torch==2.11.0+cu128", "cudf-cu12 @ https://example.invalid/cudf.whl"]


@pytest.mark.repository
def test_update_colab_keeps_mrcnns_dependencies(tmp_path):
    proc, out = _update(tmp_path, FREEZE, "--python", "3.13", "--set", "numpy==2.1.3")
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    pins = dict(line.split("==") for line in text.splitlines() if not line.startswith("#"))
    # What the installed distribution requires (its metadata, not pyproject.toml's text): the
    # required packages and the augment extra's.
    required = {re.match(r"[A-Za-z0-9_.\-]+", r).group(0)
                for r in importlib.metadata.requires("mrcnn-keras")
                if "extra ==" not in r or 'extra == "augment"' in r}
    assert "tensorflow" in required and "albumentations" in required
    assert required == set(pins) - {"ml_dtypes", "protobuf"}, required ^ set(pins)
    assert pins["numpy"] == "2.1.3" and pins["tensorflow"] == "2.20.0"
    assert "torch" not in pins and "absl-py" not in pins
    assert "# python: 3.13" in text.splitlines()
    assert "--set numpy==2.1.3" in text


@pytest.mark.repository
def test_update_colab_names_a_missing_package(tmp_path):
    proc, out = _update(tmp_path, [line for line in FREEZE if not line.startswith("scipy")],
                        "--python", "3.13")
    assert proc.returncode != 0 and "scipy" in proc.stderr
    assert not out.exists()
    proc, _ = _update(tmp_path, FREEZE, "--python", "3")
    assert proc.returncode != 0 and "--python 3" in proc.stderr
    proc, _ = _update(tmp_path, FREEZE, "--python", "3.13", "--set", "torch==2.0")
    assert proc.returncode != 0 and "--set torch==2.0" in proc.stderr
    assert not out.exists()


@pytest.mark.repository
def test_ci_colab_python_is_the_constraints_python():
    """.ci/run reads the interpreter of its Colab leg from constraints/colab.txt."""
    with open(os.path.join(REPO, "constraints", "colab.txt")) as f:
        lines = f.read().splitlines()
    assert len([line for line in lines if line.startswith("# python: ")]) == 1
    with open(os.path.join(REPO, ".ci", "run")) as f:
        assert "sed -n 's/^# python: *//p' constraints/colab.txt" in f.read()
