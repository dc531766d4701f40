"""Pass: SeLiNet (PyTorch) -> one ONNX file, through torch's current exporter (torch.export, dynamo).

The exported graph has a dynamic batch axis, inputs ``body`` / ``context`` and outputs
``emotions`` / ``sentiments``, all weights inside the one file, and the model's SeLiNetConfig as
JSON in ``metadata_props['selinet_config']`` so a runner needs nothing but the file. The exporter
annotates every node with its PyTorch module path; :func:`node_scopes` reads those (they let a
recipe keep a module in float by name) before :func:`strip_node_metadata` drops them from shipped
files (they also hold stack traces with local file paths, ~0.6 MB on SeLiNet).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import onnx

    from selinet_compress.model.selinet import SeLiNet, SeLiNetConfig

OPSET = 18  # the torch.export-based exporter needs >= 18
CONFIG_KEY = "selinet_config"
SCOPES_KEY = "pkg.torch.onnx.name_scopes"
MAX_BATCH = 4096


@contextlib.contextmanager
def _quiet_exporter(verbose: bool) -> Iterator[None]:
    """The exporter prints progress on stdout and warns about torchvision ops we do not use;
    stdout belongs to the CLI's result, so send the chatter to stderr (or nowhere)."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    sink = sys.stderr if verbose else io.StringIO()
    try:
        with contextlib.redirect_stdout(sink), warnings.catch_warnings():
            # Deprecation notices from torch internals and the note that the batch axis name is
            # shared by both inputs (it is, on purpose).
            warnings.simplefilter("ignore", FutureWarning)
            warnings.filterwarnings("ignore", message=".*axis name.*", category=UserWarning)
            yield
    finally:
        logger.setLevel(level)


def export_onnx(
    model: SeLiNet, path: str | os.PathLike, opset: int = OPSET, verbose: bool = False
) -> dict[str, Any]:
    """Export ``model`` (eval mode) to ``path``; returns what was done, for the sidecar."""
    import torch

    model = model.eval()
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    # Trace with batch 2: a batch of 1 lets torch.export specialise the batch axis to a constant.
    example = model.example_inputs(2)
    started = time.perf_counter()
    with _quiet_exporter(verbose), torch.no_grad():
        program = torch.onnx.export(
            model,
            example,
            dynamo=True,
            external_data=False,
            opset_version=opset,
            verbose=False,
            input_names=model.input_names,
            output_names=model.output_names,
            dynamic_shapes={name: {0: batch} for name in model.input_names},
        )
        program.save(str(path))
    return {
        "exporter": "torch.onnx.export(dynamo=True)",
        "opset": opset,
        "dynamic_axes": {name: {0: "batch"} for name in model.input_names},
        "inputs": model.input_names,
        "outputs": model.output_names,
        "seconds": round(time.perf_counter() - started, 2),
    }


def node_scopes(model: onnx.ModelProto) -> dict[str, str]:
    """ONNX node name -> PyTorch module path (``body.features.3.block.1``; '' for the root),
    from the exporter's per-node annotations. Nodes without annotations are left out."""
    scopes: dict[str, str] = {}
    for node in model.graph.node:
        for prop in node.metadata_props:
            if prop.key == SCOPES_KEY and node.name:
                try:
                    path = json.loads(prop.value.replace("'", '"'))
                except json.JSONDecodeError:
                    continue
                # [..., module, op]: the last entry names the op, the one before it the module.
                scopes[node.name] = path[-2] if len(path) >= 2 else ""
    return scopes


def strip_node_metadata(model: onnx.ModelProto) -> None:
    """Drop the exporter's per-node annotations (module paths, stack traces) in place."""
    for node in model.graph.node:
        del node.metadata_props[:]


def set_metadata(model: onnx.ModelProto, entries: dict[str, str]) -> None:
    """Set model-level ``metadata_props`` entries in place (replacing keys already present)."""
    keep = [(p.key, p.value) for p in model.metadata_props if p.key not in entries]
    del model.metadata_props[:]
    for key, value in [*keep, *entries.items()]:
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value


def get_metadata(model: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def config_metadata(config: SeLiNetConfig) -> dict[str, str]:
    """The metadata entry that makes an ONNX file self-describing for the runner."""
    return {CONFIG_KEY: json.dumps(config.to_dict(), separators=(",", ":"))}


def load_onnx(path: str | os.PathLike) -> onnx.ModelProto:
    """``onnx.load`` with a one-line UserError for files that are not (complete) ONNX models."""
    import onnx

    from selinet_compress.errors import UserError

    path = Path(path)
    if not path.is_file():
        raise UserError(f"no such file: {path}")
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf DecodeError, onnx errors, OSError
        raise UserError(
            f"{path} is not a readable ONNX model (truncated or corrupt?): "
            f"{str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__}"
        ) from None
    if not model.graph.node:
        raise UserError(f"{path} is not a readable ONNX model (no graph; truncated or not ONNX?)")
    return model
