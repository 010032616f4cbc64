"""`make build_api`'s first step: the export to bake into the API image, staged inside the build context.

    python -m bert_in_a_flask.tools.stage_export [--model-dir models/demo/trained_model] --to build/api-export

The export is the one `make start_api` would serve: `--model-dir` (an export, or a folder of them,
anywhere on disk), else the newest under models/. The API image runs onnxruntime without TensorFlow,
so only what that needs is staged, as <to>/<timestamp>/: saved_model.pb (what marks an export),
assets.extra/ (labels, vocab, config) and the verified ONNX file (and its accepted int8 copy). The
SavedModel's variables stay out (BACKEND=tf cannot run in the image). An export without a verified
ONNX file is refused with one line naming `make onnx`; nothing is deleted before every check passed.
"""
import os
import shutil
import sys

from ..serving.backends import int8_unusable, onnx_unusable
from ..shared.cli import ArgumentParser
from ..shared.errors import UserError, run_cli
from ..shared.export_contract import ASSETS_EXTRA, ONNX_FILE, ONNX_INT8_FILE, newest_export, read_assets, resolve_export
from . import REPO_ROOT


def parse_args(argv=None):
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("--model-dir", default="",
                        help="an export, or a folder of them (default: newest under models/)")
    parser.add_argument("--to", required=True, help="the staging folder inside the build context (emptied first)")
    return parser.parse_args(argv)


def files_to_stage(export_dir):
    """The export's files the TensorFlow-free image serves with, after checking they may serve."""
    _, _, config = read_assets(export_dir)
    why = onnx_unusable(export_dir, config.onnx)
    if why is not None:
        raise UserError("the API image serves the verified ONNX file without TensorFlow, but %s" % why)
    names = ["saved_model.pb", ASSETS_EXTRA, ONNX_FILE]
    if int8_unusable(export_dir, config.onnx) is None:
        names.append(ONNX_INT8_FILE)
    return names


def stage(model_dir, target):
    export_dir = resolve_export(model_dir) if model_dir else newest_export(REPO_ROOT)
    names = files_to_stage(export_dir)
    staged = os.path.join(target, os.path.basename(export_dir))
    shutil.rmtree(target, ignore_errors=True)
    os.makedirs(staged)
    for name in names:
        source = os.path.join(export_dir, name)
        (shutil.copytree if os.path.isdir(source) else shutil.copy2)(source, os.path.join(staged, name))
    size = sum(os.path.getsize(os.path.join(folder, f)) for folder, _, files in os.walk(staged) for f in files)
    print("staged %s -> %s (%.0f MB: %s)" % (export_dir, staged, size / 1e6, ", ".join(names)))
    return staged


def main(argv=None):
    args = parse_args(argv)
    return run_cli(lambda: stage(args.model_dir, args.to))


if __name__ == "__main__":
    sys.exit(main())
