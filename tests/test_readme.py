"""Every code block of README.md and of the guides it links (`DOCUMENTS`) runs, as written,
with small settings.

The fenced blocks are extracted and run in order, README.md's first, in one temporary working
directory (later blocks use what earlier ones wrote: the demo's run, the exported model):

* ``python`` blocks are executed with ``exec``;
* ``bash`` blocks are split into command lines (backslash continuations joined, ``#`` comments
  dropped); a line starting with ``mrcnn`` runs in this process through ``mrcnn.cli.main``, and
  every other line must match one of `SKIPPED_COMMANDS`, which says why it is not run;
* ``json`` blocks are settings files: read by ``read_config_file`` and their configuration
  built;
* blocks without a language are directory layouts: they must hold no command.

A block of any other language, or a bash line no rule covers, fails the test, so a new block
cannot go unrun unnoticed. The working directory holds what the README's own-data commands
assume: ``DATASET`` (a generated VIA data set) and ``photos/``; ``mask_rcnn_coco.h5``'s download
is replaced by a copy of a local file written with ``save_weights`` from a model of the
architecture that loads it (no network).

Small settings are forced from outside the blocks: the ``standard`` preset and ``Config``'s
defaults become the ``tiny`` preset with ``BACKBONE = "resnet101"`` (``--weights coco`` insists on
the COCO weights' backbone), and that ResNet-101 is cut to one bottleneck block per stage
(`SHORT_RESNET101`: the same layer names as far as they go, a tenth of the graph to build); the
default stages train one epoch each, ``MaskRCNN.train`` trains at most one epoch per call, and
the demo's plan is shrunk to a few images and steps. tests/test_model.py checks the real
ResNet-101 against the COCO weights' layer names.
"""

import json
import os
import re
import shlex
import shutil
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
#: The pages whose blocks run, in this order: the README, then the guides it links for the
#: details it leaves out (docs/cpu-speed.md has no block).
DOCUMENTS = ["README.md", "docs/deployment.md", "docs/training.md"]

#: Bash command lines that are not run: (regular expression, reason).
SKIPPED_COMMANDS = [
    (r"python -m pip install ", "installs the package this suite already runs in"),
    (r"python -m pytest\b", "runs this suite"),
    (r"docker run ", "needs Docker and the TF Serving image"),
    (r"curl ", "needs the TF Serving container of the line before"),
    (r"python samples/coco\.py ", "needs MS COCO in /data/coco; tests/test_coco_sample.py runs "
                                  "the sample on a generated COCO-format set"),
    (r"'?TF_CONFIG=.* python train\.py$", "needs two machines; tests/test_multiworker.py runs "
                                          "two workers on 127.0.0.1"),
]

#: The demo's plan while the README runs: a few images and steps (tests/test_cli.py and the
#: benchmarks cover the real plan).
SMALL_DEMO_PLAN = {"n_train": 4, "n_val": 2, "steps": 2, "stage1_epochs": 1,
                   "stage2_epochs": 1, "warmup": 2}


# pycocotools' decoder trips NumPy 2's __array__(copy=...) deprecation; not ours to fix.
pytestmark = [pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning"),
              pytest.mark.repository]


def read_blocks(path=README):
    """``[(language, text, first line number)]`` of the fenced blocks of a Markdown file
    (fences may be indented, as in list items)."""
    blocks, current = [], None
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            stripped = line.strip()
            if current is None:
                match = re.match(r"^(\s*)```\s*([\w+-]*)\s*$", line)
                if match:
                    current = (match.group(2).lower(), [], number + 1, len(match.group(1)))
            elif stripped == "```":
                language, lines, first, _ = current
                blocks.append((language, "".join(lines), first))
                current = None
            else:
                indent = current[3]
                current[1].append(line[indent:] if line[:indent].strip() == "" else line)
    assert current is None, f"{path}: unclosed code block from line {current[2]}"
    return blocks


def bash_commands(text):
    """The command lines of a bash block: continuations joined, comments and blanks dropped."""
    commands, pending = [], ""
    for line in text.splitlines():
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        line = pending + line
        pending = ""
        words = shlex.split(line, comments=True)
        if words:
            commands.append(" ".join(shlex.quote(w) for w in words))
    assert not pending, f"dangling continuation: {pending!r}"
    return commands


def skip_reason(command):
    """Why a bash command line is not run, or None when it runs (an ``mrcnn`` line)."""
    if command.split()[0] == "mrcnn":
        return None
    for pattern, reason in SKIPPED_COMMANDS:
        if re.match(pattern, command):
            return reason
    raise AssertionError(f"bash line {command!r} (README.md or a guide) is neither an `mrcnn` "
                         f"command nor "
                         f"covered by SKIPPED_COMMANDS in {__file__}: run it or add a rule "
                         f"with the reason")


#: ``(language, text, "document:line")`` of every block of `DOCUMENTS`, in running order.
BLOCKS = [(language, text, f"{document}:{line}")
          for document in DOCUMENTS
          for language, text, line in read_blocks(os.path.join(ROOT, document))]


def _block_id(index):
    language, _, where = BLOCKS[index]
    document, line = where.split(":")
    page = "" if document == "README.md" else os.path.splitext(os.path.basename(document))[0] + "-"
    return f"{page}{language or 'layout'}-line{line}"


def test_readme_blocks_are_known_kinds():
    for document in DOCUMENTS:
        assert any(where.startswith(document + ":") for _, _, where in BLOCKS), \
            f"no code block found in {document}"
    for language, text, where in BLOCKS:
        assert language in ("python", "bash", "json", ""), \
            f"{where}: a ```{language} block; test_readme.py runs python, bash " \
            f"and json blocks (untagged blocks are directory layouts)"
        if language == "bash":
            assert bash_commands(text), f"{where}: an empty bash block"
            for command in bash_commands(text):
                skip_reason(command)  # raises for a line no rule covers
        elif language == "":
            for row in text.splitlines():
                assert not re.match(r"\s*(\$ |mrcnn |python |pip )", row), \
                    f"{where}: a command in an untagged block; tag it ```bash"


def test_skip_rules_are_all_used():
    """A rule that no longer matches any README line is stale: remove it."""
    commands = [c for lang, text, _ in BLOCKS if lang == "bash" for c in bash_commands(text)]
    for pattern, _ in SKIPPED_COMMANDS:
        assert any(re.match(pattern, c) for c in commands), f"unused skip rule {pattern!r}"


# ---------------------------------------------------------------------------------------------
# Running the blocks


#: Blocks per stage of "resnet101" while the README runs (the real one: 3, 4, 23, 3).
SHORT_RESNET101 = ((1, 1, 1, 1), True)


def _small_settings():
    from mrcnn.workflow.presets import PRESETS

    return dict(PRESETS["tiny"], BACKBONE="resnet101")


#: Known bugs outside this file that a README block hits: (block's first words, error text,
#: what to fix). The block's test is an expected failure while the bug stands.
KNOWN_BUGS = []


def _write_coco_standin(path, logs):
    """A stand-in for mask_rcnn_coco.h5: the weights of an 81-class model of the small
    architecture, in the same HDF5 layout, written by save_weights."""
    from mrcnn import model as modellib
    from mrcnn.config import Config

    class StandIn(Config):
        NAME = "coco"
        NUM_CLASSES = 81

    for key, value in _small_settings().items():
        setattr(StandIn, key, value)
    StandIn.IMAGES_PER_GPU = 1
    modellib.MaskRCNN("inference", StandIn(), model_dir=logs).save_weights(path)


def _run_python(text, results):
    namespace = {"__name__": "__readme__"}
    exec(compile(text, "README.md or a guide", "exec"), namespace)
    results["namespaces"].append(namespace)


def _run_bash(text, results):
    from mrcnn import cli

    ran = []
    for command in bash_commands(text):
        if skip_reason(command) is not None:
            continue
        status = cli.main(shlex.split(command)[1:])
        assert status == 0, f"`{command}` exited with {status}"
        ran.append(command)
    results["commands"].extend(ran)
    return ran


def _check_json(text, workdir):
    from mrcnn.workflow.presets import make_config
    from mrcnn.workflow.settings import read_config_file
    from mrcnn.workflow.stages import parse_stages

    path = os.path.join(workdir, "run.json")
    with open(path, "w") as f:
        f.write(text)
    settings = read_config_file(path)
    assert parse_stages(settings["stages"])
    make_config(settings.get("preset", "standard"), settings.get("overrides"), ["a", "b"])


@pytest.fixture(scope="module")
def readme_run(tmp_path_factory):
    """Runs every block in README order; returns ``{"status": {index: "ran" | "skipped" |
    exception}, "commands": [...], "namespaces": [...], "workdir": ..., "seconds": ...}``."""
    import matplotlib

    matplotlib.use("Agg")
    import keras

    import mrcnn.config
    from mrcnn import download
    from mrcnn import model as modellib
    from mrcnn.backbone import resnet
    from mrcnn.datasets.synthetic import write_via_dataset
    from mrcnn.workflow import demo, presets, settings
    from mrcnn.workflow.stages import FINE_TUNE, Stage

    t0 = time.time()
    workdir = str(tmp_path_factory.mktemp("readme"))
    mp = pytest.MonkeyPatch()
    try:
        mp.chdir(workdir)
        mp.setenv("MRCNN_HOME", os.path.join(workdir, "mrcnn_home"))  # the weights cache
        # What the README's own-data commands assume exists.
        write_via_dataset("DATASET", n_train=4, n_val=2, image_size=(128, 128),
                          scene="facemask", seed=5)
        os.makedirs("photos")
        for name in sorted(os.listdir(os.path.join("DATASET", "val")))[:2]:
            if name.endswith(".jpg"):
                shutil.copy(os.path.join("DATASET", "val", name), "photos")

        # Small settings.
        mp.setitem(resnet.RESNET_BLOCKS, "resnet101", SHORT_RESNET101)
        small = _small_settings()
        mp.setitem(presets.PRESETS, "standard", small)
        mp.setitem(presets.PRESETS, "light", dict(presets.PRESETS["light"], IMAGES_PER_GPU=2,
                                                  VALIDATION_STEPS=1))  # the demo's

        class SmallConfig(mrcnn.config.Config):
            pass

        for key, value in small.items():
            setattr(SmallConfig, key, value)
        mp.setattr(mrcnn.config, "Config", SmallConfig)
        mp.setitem(settings.DEFAULTS, "stages",
                   [Stage(s.layers, s.learning_rate, 1).to_dict() for s in FINE_TUNE])
        mp.setitem(demo.DEMO_PLAN, "full", SMALL_DEMO_PLAN)
        mp.setitem(demo.DEMO_PLAN, "fast", SMALL_DEMO_PLAN)
        original_train = modellib.MaskRCNN.train

        def train_one_epoch(self, train_dataset, val_dataset, learning_rate, epochs, layers,
                            *args, **kwargs):
            return original_train(self, train_dataset, val_dataset, learning_rate,
                                  min(epochs, self.epoch + 1), layers, *args, **kwargs)

        mp.setattr(modellib.MaskRCNN, "train", train_one_epoch)

        # The COCO weights: a local file instead of the download.
        standin = os.path.join(workdir, "standin", "mask_rcnn_coco.h5")
        downloads = []

        def fake_download(url, dest, **kwargs):
            assert url == download.COCO_MODEL_URL, url
            if not os.path.exists(standin):
                os.makedirs(os.path.dirname(standin), exist_ok=True)
                _write_coco_standin(standin, os.path.dirname(standin))
            os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
            shutil.copy(standin, dest)
            downloads.append(dest)
            return str(dest)

        mp.setattr(download, "download_file", fake_download)
        keras.utils.set_random_seed(0)

        results = {"status": {}, "commands": [], "namespaces": [], "workdir": workdir,
                   "downloads": downloads, "block_seconds": {}}
        for index, (language, text, _) in enumerate(BLOCKS):
            started = time.time()
            try:
                if language == "python":
                    _run_python(text, results)
                    results["status"][index] = "ran"
                elif language == "bash":
                    results["status"][index] = "ran" if _run_bash(text, results) else "skipped"
                elif language == "json":
                    _check_json(text, workdir)
                    results["status"][index] = "ran"
                else:
                    results["status"][index] = "skipped"
            except Exception as e:  # reported by test_block for this block
                results["status"][index] = e
            results["block_seconds"][index] = round(time.time() - started, 1)
        results["seconds"] = time.time() - t0
        print(f"\nREADME blocks run in {results['seconds']:.0f} s:",
              {_block_id(i): s for i, s in results["block_seconds"].items()})
        yield results
    finally:
        mp.undo()


@pytest.mark.parametrize("index", range(len(BLOCKS)), ids=_block_id)
def test_block(readme_run, index):
    language, text, line = BLOCKS[index]
    status = readme_run["status"][index]
    if isinstance(status, Exception):
        for start, error, fix in KNOWN_BUGS:
            if text.startswith(start) and error in str(status):
                pytest.xfail(f"known bug: {fix}")
        raise AssertionError(f"the block at {line} ({language}) failed: "
                             f"{type(status).__name__}: {status}") from status
    if language == "bash" and status == "skipped":
        # Only blocks whose every line has a skip rule may go unrun.
        assert all(skip_reason(c) for c in bash_commands(text))
    elif language in ("python", "json"):
        assert status == "ran"


def test_every_block_was_run_or_is_skipped_by_rule(readme_run):
    skipped = {i for i, s in readme_run["status"].items() if s == "skipped"}
    expected = {i for i, (lang, text, _) in enumerate(BLOCKS)
                if lang == "" or (lang == "bash" and all(skip_reason(c)
                                                         for c in bash_commands(text)))}
    assert skipped == expected
    assert len(readme_run["status"]) == len(BLOCKS)


def test_what_the_blocks_did(readme_run):
    """The blocks produced what the README says they do."""
    workdir = readme_run["workdir"]
    commands = readme_run["commands"]
    assert commands[0] == "mrcnn demo"
    for name in ("detections.png", "training_curves.png", "metrics.json"):
        assert os.path.isfile(os.path.join(workdir, "out", "demo", name)), name
    # The demo's next commands are the README's and ran after it.
    from mrcnn.workflow.demo import next_commands

    for line in next_commands(os.path.join("out", "demo")):
        assert line in commands, line
    assert any(n.endswith(".json") for n in os.listdir(os.path.join(workdir, "detections")))
    assert os.path.isfile(os.path.join(workdir, "exported", "facemask", "saved_model.pb"))
    # The COCO weights came from the local stand-in, into the cache and the Python example's
    # working directory.
    assert os.path.join(workdir, "mrcnn_home", "mask_rcnn_coco.h5") in readme_run["downloads"]
    assert "mask_rcnn_coco.h5" in readme_run["downloads"]
    names = {}
    for namespace in readme_run["namespaces"]:
        names.update(namespace)
    r = names["r"]
    assert set(r) >= {"rois", "class_ids", "scores", "masks"}
    assert names["result"]["mAP@0.5"] is not None
    with open(os.path.join(workdir, "metrics.json")) as f:
        assert "mAP@0.5" in json.load(f)
    if "out" in names:  # see KNOWN_BUGS
        assert names["out"]["masks"].dtype.name == "bool"
        assert list(names["names"])[0] == "BG"
    assert names["FastConfig"]().PRECISION == "mixed_bfloat16"
