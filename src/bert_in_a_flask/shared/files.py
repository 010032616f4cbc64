"""Small file helpers: JSON in and out, written atomically (temp name, then rename)."""
import hashlib
import json
import os


def save_json(data, path):
    tmp = "%s.tmp-%d" % (path, os.getpid())
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1, sort_keys=True, ensure_ascii=False, default=float)
    os.replace(tmp, path)


def load_json(path):
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def file_sha256(path):
    """sha256 of a file's bytes: which data a cache or export came from, which ONNX file was verified."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
