"""ONNX Runtime runner (CPU): any ONNX file the toolkit writes (fp32, fp16, int8 QDQ / dynamic).

Takes the same normalised NCHW float32 ``body`` / ``context`` dicts as the PyTorch runner (our
fp16 and int8 files keep float32 inputs and outputs) and returns ``emotions`` / ``sentiments``.
The SeLiNetConfig (preprocessing, categories, boost) comes from the file's metadata
(``selinet_config``), else from the JSON sidecar's ``model_config``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from selinet_compress.errors import UserError
from selinet_compress.runtimes.base import RUNTIMES, Runner


def read_config(path: Path, metadata: dict[str, str]):
    """The SeLiNetConfig stored in the file, else in its sidecar; a UserError when neither has one."""
    from selinet_compress.io import read_sidecar
    from selinet_compress.model.selinet import SeLiNetConfig
    from selinet_compress.passes.onnx_export import CONFIG_KEY

    if CONFIG_KEY in metadata:
        try:
            data = json.loads(metadata[CONFIG_KEY])
        except json.JSONDecodeError:
            raise UserError(f"{path}: metadata '{CONFIG_KEY}' is not valid JSON") from None
        return SeLiNetConfig.from_dict(data, f"'{CONFIG_KEY}' in {path}")
    sidecar = read_sidecar(path) or {}
    if "model_config" in sidecar:
        return SeLiNetConfig.from_dict(sidecar["model_config"], f"model_config in {path}.json")
    raise UserError(
        f"{path} carries no SeLiNet config (metadata '{CONFIG_KEY}' or sidecar model_config); "
        "export it with `selinet-compress quantize` or add the sidecar"
    )


@RUNTIMES.register("onnx", suffixes=(".onnx",))
class OnnxRunner(Runner):
    target = "onnx"

    def __init__(self, path: Path, session, config, threads: int | None) -> None:
        super().__init__(path, config, threads)
        self.session = session
        self._inputs = [i.name for i in session.get_inputs()]
        self._outputs = [o.name for o in session.get_outputs()]
        missing = [n for n in self.input_names if n not in self._inputs]
        if missing:
            raise UserError(f"{path}: model inputs are {self._inputs}, expected {self.input_names}")

    @classmethod
    def open(cls, path: Path, threads: int | None = None, **_: object) -> OnnxRunner:
        import onnxruntime as ort

        path = Path(path)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: ORT's warnings are not the user's business
        try:
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own Fail / InvalidProtobuf / InvalidGraph types
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(
                f"{path} is not a loadable ONNX model (truncated or corrupt?): {first[:200]}"
            ) from None
        metadata = dict(session.get_modelmeta().custom_metadata_map)
        return cls(path, session, read_config(path, metadata), threads)

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feed = {name: np.ascontiguousarray(inputs[name], dtype=np.float32) for name in self.input_names}
        outputs = self.session.run(None, feed)
        result = dict(zip(self._outputs, outputs, strict=True))
        expected = ["emotions", "sentiments"] if self.has_sentiment else ["emotions"]
        if all(name in result for name in expected):
            return {name: np.asarray(result[name], dtype=np.float32) for name in expected}
        # Files from other exporters may name outputs differently: map them by width.
        widths = {len(self.config.categories): "emotions", len(self.config.sentiments): "sentiments"}
        mapped = {
            widths[v.shape[-1]]: np.asarray(v, dtype=np.float32) for v in outputs if v.shape[-1] in widths
        }
        if not all(name in mapped for name in expected):
            raise UserError(f"{self.path}: outputs {self._outputs} cannot be matched to {expected}")
        return {name: mapped[name] for name in expected}

    def describe(self) -> dict:
        import onnxruntime as ort

        return {
            **super().describe(),
            "runtime": "onnxruntime",
            "version": ort.__version__,
            "providers": self.session.get_providers(),
        }
