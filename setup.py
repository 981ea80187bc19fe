"""Package metadata for the Gradient Remedy ESPnet overlay.

``tools/setup.sh`` is the supported way to set up: it creates ``tools/venv``,
installs the pins of ``tools/requirements.txt`` and puts this repository first
on the venv's ``sys.path`` (the overlay). ``pip install -e .`` is an
alternative for an existing environment; it reads the same pins.

No file is ever installed at ``site-packages/espnet2/__init__.py``: this
distribution declares no packages, because its ``espnet2/`` overlay must not
overwrite ESPnet's own files. It is used in place (the ``.pth`` line written by
``tools/setup.sh``, or an editable install).
"""

from pathlib import Path

from setuptools import setup

_PINS = Path(__file__).parent / "tools" / "requirements.txt"


def _read_pins():
    """Return {group: [requirement, ...]} from tools/requirements.txt.

    Lines belong to the group named by the last ``# [group]`` header above
    them; lines before any header are core requirements.
    """
    groups = {"core": []}
    group = "core"
    for line in _PINS.read_text().splitlines():
        line = line.strip()
        if line.startswith("# [") and line.endswith("]"):
            group = line[3:-1]
            groups.setdefault(group, [])
        elif line and not line.startswith("#"):
            groups[group].append(line)
    return groups


_groups = _read_pins()

setup(
    name="espnet-gradient-remedy",
    version="0.1.0",
    description="Noise-robust ASR with a jointly trained SE front-end and Gradient Remedy, on ESPnet",
    long_description=(Path(__file__).parent / "README.md").read_text(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires="==3.11.*",
    packages=[],
    install_requires=_groups["core"],
    extras_require={k: v for k, v in _groups.items() if k != "core"},
)
