"""Regenerate constraints/colab.txt from a ``pip freeze`` of Google Colab's runtime.

    python constraints/update_colab.py pip-freeze.gpu.txt --python 3.13 [--set numpy==2.1.3]

FREEZE is Colab's ``pip freeze`` (github.com/googlecolab/backend-info publishes the GPU
image's as pip-freeze.gpu.txt, and its Python version in os-info-gpu.txt). The constraints keep
the versions of mrcnn's dependencies as pyproject.toml lists them (the required ones and the
``augment`` extra), plus the packages below whose versions TensorFlow and Keras are sensitive to;
everything else Colab holds does not touch mrcnn. ``--python`` is written into the file's
``# python:`` line, which .ci/run reads to pick the interpreter of its Colab leg.

``--set NAME==VERSION`` overrides the freeze for one package, for a version known from Colab's
release notes before a freeze of that image is at hand; the header records every override.

Stops with an error naming the package when one of mrcnn's dependencies is not in the freeze.
"""

import argparse
import datetime
import os
import re
import shlex
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PYPROJECT = os.path.join(os.path.dirname(HERE), "pyproject.toml")
OUTPUT = os.path.join(HERE, "colab.txt")

#: Not listed by mrcnn, but fixed by Colab and read by TensorFlow and Keras at import: a pip
#: install that moved them would test another combination than Colab's.
TRANSITIVE = ("tensorboard", "ml_dtypes", "protobuf")


def normalize(name):
    """A distribution name as the package index compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_names(pyproject_text, extras=("augment",)):
    """The distribution names of ``[project] dependencies`` and the given optional extras."""
    try:
        import tomllib
    except ImportError:      # Python 3.10
        return _requirement_names_310(pyproject_text, extras)
    project = tomllib.loads(pyproject_text)["project"]
    optional = project.get("optional-dependencies", {})
    missing = [extra for extra in extras if extra not in optional]
    if missing:
        raise SystemExit("%s: no optional dependency group %r" % (PYPROJECT, missing[0]))
    items = list(project["dependencies"]) + [item for extra in extras for item in optional[extra]]
    return [re.match(r"\s*([A-Za-z0-9_.\-]+)", item).group(1) for item in items]


def _requirement_names_310(pyproject_text, extras):
    """`requirement_names` without tomllib: the two lists as pyproject.toml writes them, one
    quoted requirement per line, the closing bracket on a line of its own."""
    names = []

    def names_in(block):
        return [re.match(r"\s*([A-Za-z0-9_.\-]+)", item).group(1)
                for item in re.findall(r'"([^"]+)"', re.sub(r"#[^\n]*", "", block))]

    deps = re.search(r"^dependencies\s*=\s*\[(.*?)^\]", pyproject_text, re.S | re.M)
    if deps is None:
        raise SystemExit("%s: no [project] dependencies list found" % PYPROJECT)
    names += names_in(deps.group(1))
    for extra in extras:
        block = re.search(r"^%s\s*=\s*\[(.*?)\]\s*$" % re.escape(extra), pyproject_text,
                          re.M | re.S)
        if block is None:
            raise SystemExit("%s: no optional dependency group %r" % (PYPROJECT, extra))
        names += names_in(block.group(1))
    return names


def read_freeze(path):
    """``{normalized name: (name as written, version)}`` of the ``name==version`` lines."""
    pins = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = re.match(r"\s*([A-Za-z0-9_.\-]+)\s*==\s*([^\s;#]+)", line)
            if m:
                pins[normalize(m.group(1))] = (m.group(1), m.group(2))
    if not pins:
        raise SystemExit("%s: no name==version lines; give the output of pip freeze" % path)
    return pins


def constraints(pins, names, python, source, overrides=()):
    """The text of colab.txt; ``overrides`` are ``NAME==VERSION`` strings that replace the
    freeze's pins, each for a package the constraints keep."""
    kept = {normalize(name) for name in list(names) + list(TRANSITIVE)}
    for item in overrides:
        name, version = item.split("==")
        if normalize(name) not in kept:
            raise SystemExit("--set %s: %s is not one of the packages the constraints keep (%s)"
                             % (item, name, ", ".join(sorted(kept))))
        pins[normalize(name)] = (name, version)
    lines = [
        "# Google Colab's versions of mrcnn's dependencies, written by",
        "#   python constraints/update_colab.py FREEZE --python %s%s --source %s"
        % (python, "".join(" --set " + item for item in overrides), shlex.quote(source)),
        "# from %s (%s)." % (source, datetime.date.today().isoformat()),
        "# A `pip install` of mrcnn in Colab keeps these, since they satisfy pyproject.toml's",
        "# ranges, so .ci/run tests the library against them, on this Python:",
        "# python: %s" % python,
    ]
    seen = set()
    for name in list(names) + list(TRANSITIVE):
        key = normalize(name)
        if key in seen:
            continue
        seen.add(key)
        if key not in pins:
            if name in TRANSITIVE:
                continue
            raise SystemExit("the freeze has no %s, which mrcnn needs (pyproject.toml); is it "
                             "Colab's full pip freeze?" % name)
        lines.append("%s==%s" % (name, pins[key][1]))
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("freeze", help="Colab's pip freeze (pip-freeze.gpu.txt)")
    parser.add_argument("--python", required=True,
                        help="the runtime's Python, major.minor (os-info-gpu.txt), e.g. 3.13")
    parser.add_argument("--source", default=None,
                        help="where the freeze came from, for the header (default: its path)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME==VERSION",
                        help="override the freeze's version of one package (repeatable)")
    parser.add_argument("--output", default=OUTPUT, help="default: constraints/colab.txt")
    args = parser.parse_args(argv)
    if not re.fullmatch(r"3\.\d+", args.python):
        parser.error("--python %s: give major.minor, e.g. 3.13" % args.python)
    for item in args.set:
        if not re.fullmatch(r"[A-Za-z0-9_.\-]+==[^\s=]+", item):
            parser.error("--set %s: give NAME==VERSION, e.g. numpy==2.1.3" % item)
    with open(PYPROJECT, encoding="utf-8") as f:
        names = requirement_names(f.read())
    text = constraints(read_freeze(args.freeze), names, args.python,
                       args.source or os.path.basename(args.freeze), args.set)
    tmp = args.output + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, args.output)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
