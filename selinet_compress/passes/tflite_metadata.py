"""Finish a converted .tflite: canonical I/O names and the SeLiNetConfig inside the file.

Converters name tensors as they please (``serving_default_body:0``, ``PartitionedCall:1``,
``serving_default_args_0``) and order outputs differently from file to file. After this pass the
inputs are ``body`` / ``context`` and the outputs ``emotions`` / ``sentiments`` (tensor names and
signature keys), mapped by name where the converter kept one and by shape otherwise (26 vs 3
columns, 128 vs 224 pixels) -- never by position. The config JSON goes into the model's
metadata under ``selinet_config`` so the file is self-describing even without its sidecar.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from selinet_compress.errors import UserError
from selinet_compress.model.selinet import SeLiNetConfig
from selinet_compress.runtimes.tflite_runner import CONFIG_METADATA_KEY, _match_by_name, _spatial


def _io_mapping(
    names: list[str], shapes: list[list[int]], wanted: list[str], by_shape: dict[str, Any], what: str
) -> dict[str, int]:
    mapping = _match_by_name(names, wanted)
    if mapping is not None:
        return mapping
    mapping = {}
    for want in wanted:
        hits = [i for i, shape in enumerate(shapes) if by_shape[want](shape)]
        if len(hits) != 1:
            raise UserError(
                f"cannot tell which {what} is '{want}' among {list(zip(names, shapes, strict=True))}"
            )
        mapping[want] = hits[0]
    return mapping


def finalize_tflite(
    source: str | os.PathLike,
    dest: str | os.PathLike,
    config: SeLiNetConfig,
    extra_metadata: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Write ``dest`` = ``source`` with canonical I/O names and embedded config; returns the
    mapping applied (original name -> canonical name)."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(source))
    graph = model.subgraphs[0]
    inputs = ["body", "context"] if config.use_aesthetics else ["body"]
    outputs = ["emotions", "sentiments"] if config.use_sentiment else ["emotions"]
    signature = model.signatureDefs[0] if model.signatureDefs else None

    def names_of(indices: list[int], entries) -> list[str]:
        # Signature keys are what the converter kept of the original names; tensor names otherwise.
        keys = {entry.tensorIndex: entry.name.decode() for entry in entries or []}
        return [keys.get(i) or graph.tensors[i].name.decode() for i in indices]

    input_ids = list(graph.inputs)
    output_ids = list(graph.outputs)
    sizes = {"body": config.body_size, "context": config.context_size}
    widths = {"emotions": len(config.categories), "sentiments": len(config.sentiments)}
    in_map = _io_mapping(
        names_of(input_ids, signature.inputs if signature else None),
        [list(graph.tensors[i].shape) for i in input_ids],
        inputs,
        {n: (lambda s, n=n: _spatial(s) == sizes[n]) for n in inputs},
        "input",
    )
    out_map = _io_mapping(
        names_of(output_ids, signature.outputs if signature else None),
        [list(graph.tensors[i].shape) for i in output_ids],
        outputs,
        {n: (lambda s, n=n: int(s[-1]) == widths[n]) for n in outputs},
        "output",
    )
    renamed: dict[str, str] = {}
    for canonical, position in {
        **{k: input_ids[v] for k, v in in_map.items()},
        **{k: output_ids[v] for k, v in out_map.items()},
    }.items():
        tensor = graph.tensors[position]
        renamed[tensor.name.decode()] = canonical
        tensor.name = canonical.encode()
        if signature is not None:
            for entry in [*(signature.inputs or []), *(signature.outputs or [])]:
                if entry.tensorIndex == position:
                    entry.name = canonical.encode()

    entries = {CONFIG_METADATA_KEY: json.dumps(config.to_dict(), sort_keys=True), **(extra_metadata or {})}
    model.metadata = [m for m in (model.metadata or []) if m.name.decode() not in entries]
    for name, text in entries.items():
        buffer = schema.BufferT()
        buffer.data = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
        model.buffers.append(buffer)
        meta = schema.MetadataT()
        meta.name = name.encode()
        meta.buffer = len(model.buffers) - 1
        model.metadata.append(meta)
    Path(dest).write_bytes(bytes(flatbuffer_utils.convert_object_to_bytearray(model)))
    return renamed
