"""The overlay: this repository's ``espnet2/`` merges with the installed ESPnet.

These tests protect what every recipe relies on: from any working directory,
the venv resolves our modules from the repository and ESPnet's from
site-packages, and ESPnet's installed files are exactly what pip installed.
"""

import base64
import hashlib
import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_overlay_and_installed_modules_import_from_root_directory():
    # Run from "/" so that neither the current directory nor pytest's rootdir
    # insertion can put the repository on sys.path: only the venv's .pth may.
    code = (
        "import espnet2.train.trainer_gradient_remedy as ours, espnet2.tasks.asr as theirs;"
        "print(ours.__file__); print(theirs.__file__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd="/", capture_output=True, text=True, check=True
    ).stdout.split("\n")
    ours, theirs = Path(out[-3]), Path(out[-2])
    assert ours == REPO / "espnet2" / "train" / "trainer_gradient_remedy.py"
    assert "site-packages" in theirs.parts, theirs


def test_overlay_init_files_extend_the_installed_package_path():
    # Every overlay level that exists in the installed espnet2 must list both
    # directories, ours first; otherwise one of them shadows the other.
    import espnet2

    installed_root = Path(importlib.metadata.distribution("espnet").locate_file("espnet2"))
    for init in sorted((REPO / "espnet2").rglob("__init__.py")):
        rel = init.parent.relative_to(REPO)
        installed = installed_root.parent / rel
        if not installed.is_dir():
            continue
        module = __import__(".".join(rel.parts), fromlist=["__path__"])
        paths = [Path(p).resolve() for p in module.__path__]
        assert paths[0] == init.parent, (rel, paths)
        assert installed.resolve() in paths, (rel, paths)
    assert Path(espnet2.__path__[0]) == REPO / "espnet2"


def test_installed_espnet_files_match_their_recorded_hashes():
    # pip's RECORD lists a sha256 for every installed file; a mismatch means
    # something (for example an install of this project) overwrote ESPnet.
    dist = importlib.metadata.distribution("espnet")
    checked = 0
    for f in dist.files:
        if f.hash is None:  # RECORD itself, and files written after install (*.pyc)
            continue
        assert f.hash.mode == "sha256", f
        digest = hashlib.sha256(Path(f.locate()).read_bytes()).digest()
        encoded = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        assert encoded == f.hash.value, f"ESPnet file modified: {f}"
        checked += 1
    init = [f for f in dist.files if str(f) == "espnet2/__init__.py"]
    assert init and init[0].hash is not None, "espnet2/__init__.py must be ESPnet's own"
    assert checked > 1000, checked


def test_setup_py_wheel_installs_no_espnet2_files(tmp_path):
    # setup.py must never own site-packages/espnet2/__init__.py (or any
    # espnet2 file): installing it would overwrite ESPnet's package.
    import zipfile

    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "-q", "-w", str(tmp_path), str(REPO)],
        check=True, capture_output=True, cwd=tmp_path,
    )
    (wheel,) = tmp_path.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert not [n for n in names if n.startswith("espnet2/")], names
    (metadata_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
    metadata = zipfile.ZipFile(wheel).read(metadata_name).decode()
    # The same pins as tools/requirements.txt: every line of it is a requirement
    # of the wheel (core ones unconditionally, grouped ones under their extra).
    # Compared in a canonical form: setuptools versions write "torch ==2.11.0"
    # or "torch==2.11.0", and "mir_eval" or "mir-eval" (PEP 503 names).
    def canonical(requirement: str) -> str:
        name, version = requirement.replace(" ", "").split("==")
        return re.sub(r"[-_.]+", "-", name).lower() + "==" + version

    requires = {
        canonical(line.split(":", 1)[1].split(";")[0])
        for line in metadata.splitlines()
        if line.startswith("Requires-Dist:")
    }
    pins = {
        canonical(line.strip())
        for line in (REPO / "tools" / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {"torch==2.11.0", "espnet==202511"} <= pins
    assert pins == requires, pins ^ requires
