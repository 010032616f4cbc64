"""The `onnx` record in an export's model_config.json: what the ONNX copy is, how it was checked, and
whether serving may use it (backends.py reads it)."""
import dataclasses
import os

from ..shared.export_contract import ASSETS_EXTRA, MODEL_CONFIG_FILE, read_assets


def write_record(export_dir, record):
    """Put the `onnx` record into the export's model_config.json (atomically)."""
    _, _, config = read_assets(export_dir)
    dataclasses.replace(config, onnx=record).write(os.path.join(export_dir, ASSETS_EXTRA, MODEL_CONFIG_FILE))
