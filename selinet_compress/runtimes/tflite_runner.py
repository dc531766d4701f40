"""LiteRT (TFLite) runner: the ``ai_edge_litert`` interpreter, XNNPACK on or off, N threads.

Callers feed the same normalised NCHW float32 dict as on every runtime. The runner does what
differs per file, so that no caller has to know which converter wrote it:

* layout: onnx2tf files take NHWC, litert-torch files keep NCHW -> transposed only when needed;
* names: inputs/outputs are found by name (``body``/``context``, ``emotions``/``sentiments``,
  also inside converter-made names such as ``serving_default_body:0``), else by shape -- never
  by position, because converters reorder them (the int8 onnx2tf file lists sentiments first);
* int8/uint8 I/O: quantised with the tensor's own scale / zero point, outputs dequantised;
* batch: the files have a fixed batch of 1, so a batch of N is run sample by sample.

The SeLiNetConfig comes from the JSON sidecar (``model_config``), else from the
``selinet_config`` metadata entry our conversion passes embed in the file, else defaults
inferred from the input shapes (with a warning: labels and normalisation may then be wrong).
"""

from __future__ import annotations

import json
import re
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from selinet_compress.errors import UserError
from selinet_compress.model.selinet import SeLiNetConfig
from selinet_compress.runtimes.base import RUNTIMES, Runner

TFLITE_IDENTIFIER = b"TFL3"  # flatbuffer file identifier, bytes 4..8 of every .tflite file
CONFIG_METADATA_KEY = "selinet_config"
_INT_IO = (np.int8, np.uint8, np.int16)


def check_flatbuffer(path: Path) -> None:
    """Refuse files that are not TFLite flatbuffers with a one-line message (the interpreter
    would otherwise abort with a C++ error or a segfault-prone message)."""
    if not path.is_file():
        raise UserError(f"no such file: {path}")
    with open(path, "rb") as handle:
        head = handle.read(8)
    if len(head) < 8 or head[4:8] != TFLITE_IDENTIFIER:
        raise UserError(
            f"{path} is not a TFLite flatbuffer (no 'TFL3' identifier); is it truncated or another format?"
        )


def read_embedded_config(path: Path) -> dict | None:
    """The SeLiNetConfig JSON our passes store in the model's metadata, if present."""
    try:
        from ai_edge_litert import schema_py_generated as schema

        buf = path.read_bytes()
        model = schema.Model.GetRootAs(buf, 0)
        for i in range(model.MetadataLength()):
            meta = model.Metadata(i)
            if (meta.Name() or b"").decode() == CONFIG_METADATA_KEY:
                data = model.Buffers(meta.Buffer()).DataAsNumpy()
                if isinstance(data, np.ndarray):
                    return json.loads(data.tobytes().decode("utf-8"))
                # Large models store buffers by offset/size outside the table.
                b = model.Buffers(meta.Buffer())
                return json.loads(buf[b.Offset() : b.Offset() + b.Size()].decode("utf-8"))
    except Exception:  # metadata is optional: a foreign file simply has none
        return None
    return None


def _clean_name(name: str) -> str:
    """'serving_default_body:0' -> 'body'; lower case."""
    name = re.sub(r":\d+$", "", name.lower())
    return re.sub(r"^serving_default_", "", name)


def _match_by_name(names: list[str], wanted: list[str]) -> dict[str, int] | None:
    """Map each wanted name to the index of the one tensor whose cleaned name equals it, or
    else contains it; None if any is missing or ambiguous."""
    cleaned = [_clean_name(n) for n in names]
    found: dict[str, int] = {}
    for want in wanted:
        exact = [i for i, n in enumerate(cleaned) if n == want]
        partial = [i for i, n in enumerate(cleaned) if want in n]
        hits = exact or partial
        if len(hits) != 1:
            return None
        found[want] = hits[0]
    return found if len(set(found.values())) == len(found) else None


def _config_from_shapes(inputs: list[dict], outputs: list[dict]) -> SeLiNetConfig:
    """Defaults for a file without our config: sizes from the image inputs, heads from outputs."""
    sizes = sorted({_spatial(d["shape"]) for d in inputs if _spatial(d["shape"])})
    base = SeLiNetConfig()
    changes: dict[str, Any] = {"use_aesthetics": len(inputs) >= 2, "use_sentiment": len(outputs) >= 2}
    if len(sizes) >= 1:
        changes["body_size"] = sizes[0]
    if len(sizes) >= 2:
        changes["context_size"] = sizes[-1]
    return base.replace(**changes)


def _spatial(shape) -> int | None:
    """H of a square image tensor in NHWC or NCHW layout, else None."""
    shape = [int(s) for s in shape]
    if len(shape) != 4:
        return None
    if shape[-1] == 3 and shape[1] == shape[2]:
        return shape[1]
    if shape[1] == 3 and shape[2] == shape[3]:
        return shape[2]
    return None


@RUNTIMES.register("tflite", suffixes=(".tflite",))
class LiteRTRunner(Runner):
    """A .tflite file on the LiteRT interpreter (XNNPACK by default)."""

    target = "tflite"

    def __init__(
        self,
        path: Path,
        config: SeLiNetConfig,
        threads: int | None,
        interpreter,
        xnnpack: bool,
        load_seconds: float,
        config_source: str,
    ) -> None:
        super().__init__(path, config, threads)
        self.interpreter = interpreter
        self.xnnpack = xnnpack
        self.load_seconds = load_seconds
        self.config_source = config_source
        self._inputs = interpreter.get_input_details()
        self._outputs = interpreter.get_output_details()
        self._input_map = self._map_inputs()
        self._output_map = self._map_outputs()

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(
        cls, path: str | Path, threads: int | None = None, xnnpack: bool = True, **_: object
    ) -> LiteRTRunner:
        """Load ``path``; ``xnnpack=False`` runs TFLite's builtin kernels only (for comparison)."""
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        from selinet_compress.io import read_sidecar

        path = Path(path)
        check_flatbuffer(path)
        resolver = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        start = time.perf_counter()
        try:
            interpreter = Interpreter(
                model_path=str(path), num_threads=threads or 1, experimental_op_resolver_type=resolver
            )
            interpreter.allocate_tensors()  # applies XNNPACK: part of the load cost
        except (ValueError, RuntimeError) as exc:
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise UserError(f"{path}: LiteRT cannot load this model: {first}") from None
        load_seconds = time.perf_counter() - start

        sidecar = read_sidecar(path) or {}
        if isinstance(sidecar.get("model_config"), dict):
            config, source = SeLiNetConfig.from_dict(sidecar["model_config"], f"{path} sidecar"), "sidecar"
        elif (embedded := read_embedded_config(path)) is not None:
            config, source = SeLiNetConfig.from_dict(embedded, f"{path} metadata"), "metadata"
        else:
            config = _config_from_shapes(interpreter.get_input_details(), interpreter.get_output_details())
            source = "defaults"
            warnings.warn(
                f"{path}: no SeLiNet config in a sidecar or the file's metadata; using defaults "
                "(categories, normalisation, boost settings may not match the trained model)",
                stacklevel=2,
            )
        return cls(path, config, threads, interpreter, xnnpack, load_seconds, source)

    # ------------------------------------------------------------------ name / shape mapping

    def _expected_input_shape(self, name: str) -> tuple[int, int]:
        size = self.config.body_size if name == "body" else self.config.context_size
        return size, size

    def _map_inputs(self) -> dict[str, dict]:
        wanted = self.input_names
        details = self._inputs
        described = ", ".join(f"{d['name']} {list(d['shape'])}" for d in details)
        if len(details) != len(wanted):
            raise UserError(
                f"{self.path}: model has {len(details)} input(s) ({described}) but this SeLiNet "
                f"config needs {len(wanted)} ({', '.join(wanted)})"
            )
        by_name = _match_by_name([d["name"] for d in details], wanted)
        if by_name is None:  # foreign names: the two images differ in size, so shape decides
            by_name = {}
            for want in wanted:
                size = self._expected_input_shape(want)[0]
                hits = [i for i, d in enumerate(details) if _spatial(d["shape"]) == size]
                if len(hits) != 1:
                    raise UserError(
                        f"{self.path}: cannot tell which input is '{want}' ({described}); "
                        f"expected a {size}x{size} RGB image"
                    )
                by_name[want] = hits[0]
        mapping: dict[str, dict] = {}
        for want, i in by_name.items():
            detail = details[i]
            shape = [int(s) for s in detail["shape"]]
            size = self._expected_input_shape(want)
            if len(shape) == 4 and shape[-1] == 3 and tuple(shape[1:3]) == size:
                layout = "NHWC"
            elif len(shape) == 4 and shape[1] == 3 and tuple(shape[2:4]) == size:
                layout = "NCHW"
            else:
                raise UserError(
                    f"{self.path}: input '{detail['name']}' has shape {shape}; SeLiNet's "
                    f"'{want}' is 1x3x{size[0]}x{size[1]} (NCHW) or 1x{size[0]}x{size[1]}x3 (NHWC)"
                )
            mapping[want] = {**detail, "layout": layout}
        return mapping

    def _map_outputs(self) -> dict[str, dict]:
        wanted = ["emotions", "sentiments"] if self.has_sentiment else ["emotions"]
        details = self._outputs
        widths = {"emotions": len(self.config.categories), "sentiments": len(self.config.sentiments)}
        described = ", ".join(f"{d['name']} {list(d['shape'])}" for d in details)
        if len(details) != len(wanted):
            raise UserError(
                f"{self.path}: model has {len(details)} output(s) ({described}); this SeLiNet "
                f"config expects {', '.join(wanted)}"
            )
        by_name = _match_by_name([d["name"] for d in details], wanted)
        if by_name is None:
            by_name = {}
            for want in wanted:
                hits = [i for i, d in enumerate(details) if int(d["shape"][-1]) == widths[want]]
                if len(hits) != 1:
                    raise UserError(f"{self.path}: cannot tell which output is '{want}' ({described})")
                by_name[want] = hits[0]
        for want, i in by_name.items():
            if int(details[i]["shape"][-1]) != widths[want]:
                raise UserError(
                    f"{self.path}: output '{details[i]['name']}' has shape "
                    f"{list(details[i]['shape'])}; '{want}' needs {widths[want]} columns"
                )
        return {want: details[i] for want, i in by_name.items()}

    # ------------------------------------------------------------------ running

    @property
    def io_dtypes(self) -> dict[str, str]:
        """dtype of each model-side input/output tensor (float32, int8, ...)."""
        return {
            name: np.dtype(d["dtype"]).name for name, d in {**self._input_map, **self._output_map}.items()
        }

    def _to_model(self, name: str, sample: np.ndarray) -> np.ndarray:
        detail = self._input_map[name]
        x = sample[None] if sample.ndim == 3 else sample
        if detail["layout"] == "NHWC":
            x = x.transpose(0, 2, 3, 1)
        dtype = np.dtype(detail["dtype"])
        if dtype.type in _INT_IO:
            scale, zero = detail["quantization"]
            info = np.iinfo(dtype)
            x = np.clip(np.round(x / scale + zero), info.min, info.max)
        return np.ascontiguousarray(x, dtype=dtype)

    def _from_model(self, name: str, value: np.ndarray) -> np.ndarray:
        detail = self._output_map[name]
        if np.dtype(detail["dtype"]).type in _INT_IO:
            scale, zero = detail["quantization"]
            return ((value.astype(np.float32) - zero) * scale).astype(np.float32)
        return value.astype(np.float32, copy=False)

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = [n for n in self.input_names if n not in inputs]
        if missing:
            raise UserError(f"missing input(s) {missing}; this model takes {self.input_names}")
        arrays = {n: np.asarray(inputs[n], dtype=np.float32) for n in self.input_names}
        batch = {a.shape[0] for a in arrays.values()}
        if len(batch) != 1:
            raise UserError(f"inputs have different batch sizes: { {n: a.shape for n, a in arrays.items()} }")
        outputs: dict[str, list[np.ndarray]] = {n: [] for n in self._output_map}
        for i in range(batch.pop()):
            for name, array in arrays.items():
                self.interpreter.set_tensor(self._input_map[name]["index"], self._to_model(name, array[i]))
            self.interpreter.invoke()
            for name, detail in self._output_map.items():
                outputs[name].append(self._from_model(name, self.interpreter.get_tensor(detail["index"])))
        return {name: np.concatenate(values, axis=0) for name, values in outputs.items()}

    def invoke_once(self) -> None:
        """One forward pass on whatever the input tensors hold (latency benchmarks: no copies)."""
        self.interpreter.invoke()

    def describe(self) -> dict:
        from importlib.metadata import version

        return {
            **super().describe(),
            "runtime": "ai-edge-litert",
            "version": version("ai-edge-litert"),
            "xnnpack": self.xnnpack,
            "load_seconds": round(self.load_seconds, 4),
            "config_source": self.config_source,
            "io_dtypes": self.io_dtypes,
            "input_layout": {n: d["layout"] for n, d in self._input_map.items()},
        }
