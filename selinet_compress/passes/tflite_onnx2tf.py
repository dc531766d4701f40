"""ONNX -> TFLite with onnx2tf (TensorFlow converter backend), cached, atomic, in a subprocess.

Two stages, each cached by content hash so the same (source, recipe) is never converted twice:

1. ``onnx_to_savedmodel``: onnx2tf turns the ONNX file into a TensorFlow SavedModel (NHWC) plus
   its own fp32 and fp16 .tflite files. ~2-4 minutes for SeLiNet; shared by every recipe.
2. ``savedmodel_to_tflite``: one ``tf.lite.TFLiteConverter`` run per precision on that
   SavedModel (seconds): fp32 / fp16 reuse stage 1's files, int8_dynamic is dynamic-range
   quantization, int8_static is full-integer quantization calibrated on NHWC arrays.

Why these choices (measured here, see DESIGN §6 and the TFLite notes in the README):

* ``-tb tf_converter``: onnx2tf's default ``flatbuffer_direct`` backend wrote quantized files
  that failed or were wrong; the TF converter's files are correct.
* onnx2tf overwrites its input in place, so it always gets a private copy.
* HardSwish is written as ``x * relu6(x + 3) * 0.16666666`` (onnx2tf's "pseudo" HardSwish):
  XNNPACK does not delegate an int8 HARD_SWISH op, so each one fell back to TFLite's reference
  kernel and split the graph into ~30 partitions (20 of them: 1.8 ms of 6.9 ms in a per-op
  profile). The converter fuses ``* 0.16666667`` back into HARD_SWISH, ``* 0.16666666`` not.
* HardSigmoid (squeeze-excitation gates) is rewritten to ``clip(x + 3, 0, 6) / 6`` before
  onnx2tf: written as ``min(max(x/6 + 0.5, 0), 1)`` the converter makes RELU_0_TO_1, which
  XNNPACK delegates neither in fp32 nor in int8 (8 extra partitions).
* onnx2tf and TensorFlow run in a child process: onnx2tf calls ``sys.exit`` on errors and TF
  holds ~1 GB after import; a failure becomes a :class:`ConversionError` with the log's tail.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from selinet_compress.errors import UserError

PRECISIONS = ("fp32", "fp16", "int8_dynamic", "int8_static")
IoDtype = Literal["float32", "int8", "uint8"]
LOG_TAIL_LINES = 12
REWRITES_VERSION = 2  # bump when the ONNX rewrites below change (part of the stage-1 cache key)
CONVERTER_VERSION = 2  # bump when _convert_savedmodel changes (part of the stage-2 cache key)


class ConversionError(UserError):
    """A converter failed or wrote an unusable file; nothing was left under the final name."""


@dataclass(frozen=True)
class Onnx2tfSettings:
    """How stage 1 runs onnx2tf (part of its cache key)."""

    pseudo_hardswish: bool = True  # ADD/RELU6/MUL/MUL instead of HARD_SWISH (XNNPACK int8)
    rewrite_hardsigmoid: bool = True  # clip(x+3, 0, 6)/6 instead of RELU_0_TO_1 (XNNPACK)
    batch_size: int = 1  # TFLite files have a fixed batch; the runner loops over larger ones


@dataclass(frozen=True)
class TFLiteSettings:
    """What stage 2 writes (part of its cache key)."""

    precision: str
    per_channel: bool = True  # per-channel int8 weights (per-tensor loses accuracy on depthwise convs)
    io_dtype: IoDtype = "float32"  # int8_static: type of the model's inputs / outputs
    # int8_static: TFLite op types kept in float (e.g. SOFTMAX, BATCH_MATMUL, which XNNPACK does
    # not run in int8); DEQUANTIZE / QUANTIZE go around them.
    float_ops: tuple[str, ...] = ()
    # int8_static: the model's output layers (the ops writing its outputs) kept in float, as the
    # ONNX target's keep_outputs_float: 8-bit output scores tie, and ties cost AP.
    float_outputs: bool = False

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown TFLite precision '{self.precision}'; known: {', '.join(PRECISIONS)}")
        if self.io_dtype != "float32" and self.precision != "int8_static":
            raise ValueError(f"io_dtype {self.io_dtype} needs a full-integer (int8_static) file")
        if self.float_ops and self.precision != "int8_static":
            raise ValueError("float_ops applies to int8_static files only")
        if self.float_outputs and self.precision != "int8_static":
            raise ValueError("float_outputs applies to int8_static files only")


def default_cache_dir() -> Path:
    """``$SELINET_COMPRESS_CACHE`` or ``~/.cache/selinet-compress``."""
    root = os.environ.get("SELINET_COMPRESS_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "selinet-compress"


def tool_versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    versions: dict[str, str | None] = {}
    for name in ("onnx2tf", "tensorflow", "onnx", "ai-edge-litert"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return versions


def arrays_sha256(arrays: dict[str, np.ndarray]) -> str:
    """Content hash of named arrays (calibration data) for cache keys."""
    import hashlib

    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{array.dtype}:{array.shape};".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# ONNX rewrites applied to onnx2tf's private copy


def fix_batch(model, batch: int = 1) -> list[str]:
    """Pin a symbolic batch axis (our export's ``batch``) to ``batch``, in place.

    onnx2tf loses track of NCHW->NHWC on some convolutions when the batch is symbolic (its
    ``batch_size`` option does not help here: "Depth of input (56) is not a multiple of input
    depth of filter (24)"); TFLite files have a fixed batch anyway. Intermediate shape
    annotations are dropped so shape inference recomputes them with the fixed batch.
    """
    from onnx import numpy_helper

    pinned = []
    for value in [*model.graph.input, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            pinned.append(f"{value.name}:{dims[0].dim_param or '?'}")
            dims[0].Clear()
            dims[0].dim_value = batch
    # Reshape targets written as [-1, ...] for the symbolic batch: made explicit as well (with
    # the -1 left in, onnx2tf still mis-tracks the layout).
    shapes = {node.input[1] for node in model.graph.node if node.op_type == "Reshape" and len(node.input) > 1}
    for index, init in enumerate(model.graph.initializer):
        if init.name in shapes:
            target = numpy_helper.to_array(init).copy()
            if target.ndim == 1 and len(target) > 1 and target[0] == -1 and (target[1:] > 0).all():
                target[0] = batch
                model.graph.initializer[index].CopyFrom(numpy_helper.from_array(target, init.name))
                pinned.append(f"reshape {init.name}")
    del model.graph.value_info[:]
    return pinned


def rewrite_hardsigmoid(model) -> int:
    """HardSigmoid(x; a, b) -> Mul(Clip(Add(x, b/a), 0, 1/a), a), in place; returns the count.

    Same function (clip(a*x + b, 0, 1) = a * clip(x + b/a, 0, 1/a) for a > 0), but the converter
    lowers it to ADD(+RELU6 when 1/a = 6) and MUL, which XNNPACK runs, instead of RELU_0_TO_1.
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    nodes = []
    count = 0
    for node in graph.node:
        attrs = {a.name: a.f for a in node.attribute}
        alpha, beta = attrs.get("alpha", 0.2), attrs.get("beta", 0.5)
        if node.op_type != "HardSigmoid" or alpha <= 0:
            nodes.append(node)
            continue
        count += 1
        out = node.output[0]
        constants = {"offset": beta / alpha, "low": 0.0, "high": 1.0 / alpha, "scale": alpha}
        for key, value in constants.items():
            graph.initializer.append(numpy_helper.from_array(np.array(value, np.float32), f"{out}__{key}"))
        nodes += [
            helper.make_node(
                "Add", [node.input[0], f"{out}__offset"], [f"{out}__shifted"], name=f"{node.name}__add"
            ),
            helper.make_node(
                "Clip",
                [f"{out}__shifted", f"{out}__low", f"{out}__high"],
                [f"{out}__clipped"],
                name=f"{node.name}__clip",
            ),
            helper.make_node("Mul", [f"{out}__clipped", f"{out}__scale"], [out], name=f"{node.name}__mul"),
        ]
    del graph.node[:]
    graph.node.extend(nodes)
    return count


# ---------------------------------------------------------------------------------------------
# Child-process driver


def _run_worker(spec: dict[str, Any], log_path: Path, what: str, progress: bool) -> dict[str, Any]:
    """Run :func:`_worker_main` on ``spec`` in a child Python; show a ticking bar; return its result."""
    from tqdm import tqdm

    spec_path = log_path.with_suffix(".spec.json")
    result_path = log_path.with_suffix(".result.json")
    spec_path.write_text(json.dumps({**spec, "result": str(result_path)}), encoding="utf-8")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
    # -P: never import a different selinet_compress from the working directory
    command = [sys.executable, "-P", "-m", "selinet_compress.passes.tflite_onnx2tf", str(spec_path)]
    start = time.monotonic()
    with (
        open(log_path, "w", encoding="utf-8") as log,
        tqdm(
            desc=what, bar_format="{desc}: {elapsed}", disable=not progress, file=sys.stderr, leave=False
        ) as bar,
    ):
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            while child.poll() is None:
                time.sleep(0.5)
                bar.refresh()
        except BaseException:
            child.kill()
            child.wait()
            raise
    seconds = time.monotonic() - start
    if child.returncode != 0 or not result_path.is_file():
        lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        useful = [ln for ln in lines if ln.strip() and "WARNING" not in ln][-LOG_TAIL_LINES:]
        # The exception line says more than the last line (often a call-argument dump).
        errors = [ln for ln in lines if re.match(r"^\s*[\w.]*(Error|Exception)\b.*:", ln)]
        last = (errors or useful or [f"exit code {child.returncode}"])[-1].strip()[:300]
        raise ConversionError(f"{what} failed after {seconds:.0f} s: {last} (full log: {log_path})")
    result = json.loads(result_path.read_text(encoding="utf-8"))
    result["seconds"] = round(seconds, 1)
    return result


def _worker_main(spec_path: str) -> None:
    """Entry point of the child process (``python -m selinet_compress.passes.tflite_onnx2tf SPEC``)."""
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    action = spec["action"]
    if action == "onnx2tf":
        import onnx2tf

        onnx2tf.convert(
            input_onnx_file_path=spec["onnx"],
            output_folder_path=spec["out_dir"],
            tflite_backend="tf_converter",
            output_signaturedefs=True,
            copy_onnx_input_output_names_to_tflite=True,
            non_verbose=True,
            batch_size=spec["batch_size"],
            replace_to_pseudo_operators=spec["pseudo"],
        )
        result = {"files": sorted(p.name for p in Path(spec["out_dir"]).iterdir())}
    elif action == "convert":
        result = _convert_savedmodel(spec)
    else:  # pragma: no cover - the parent writes the spec
        raise SystemExit(f"unknown action {action}")
    Path(spec["result"]).write_text(json.dumps(result), encoding="utf-8")


def _convert_savedmodel(spec: dict[str, Any]) -> dict[str, Any]:
    """TFLiteConverter on the SavedModel: dynamic-range or full-integer quantization."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(spec["saved_model"])
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter._experimental_disable_per_channel = not spec["per_channel"]
    if spec["precision"] == "int8_static":
        data = np.load(spec["calibration"])
        names = list(data.files)
        count = data[names[0]].shape[0]

        def representative():
            for i in range(count):  # batch 1: the SavedModel's fixed input shape
                yield {name: data[name][i : i + 1] for name in names}

        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        io = {"float32": tf.float32, "int8": tf.int8, "uint8": tf.uint8}[spec["io_dtype"]]
        converter.inference_input_type = io
        converter.inference_output_type = io
        if spec.get("float_ops") or spec.get("float_outputs"):
            # TF's documented way to keep ops float in a calibrated file: the quantization
            # debugger's denylist (float kernels must then be allowed next to the int8 ones).
            converter.target_spec.supported_ops = [
                tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
                tf.lite.OpsSet.TFLITE_BUILTINS,
            ]
            nodes = _output_tensor_names(spec["saved_model"]) if spec.get("float_outputs") else []
            options = tf.lite.experimental.QuantizationDebugOptions(
                denylisted_ops=list(spec.get("float_ops") or []) or None, denylisted_nodes=nodes or None
            )
            debugger = tf.lite.experimental.QuantizationDebugger(
                converter=converter, debug_dataset=representative, debug_options=options
            )
            Path(spec["out"]).write_bytes(debugger.get_nondebug_quantized_model())
            return {
                "converter": "tf.lite.QuantizationDebugger (denylisted ops / nodes)",
                "float_nodes": nodes,
                "tensorflow": tf.__version__,
            }
    Path(spec["out"]).write_bytes(converter.convert())
    return {"converter": "tf.lite.TFLiteConverter", "tensorflow": tf.__version__}


def _output_tensor_names(saved_model: str) -> list[str]:
    """Names of the model's output tensors as the TFLite converter writes them (e.g.
    ``PartitionedCall:0``): the debugger's denylist names nodes by their output tensor."""
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    plain = tf.lite.TFLiteConverter.from_saved_model(saved_model).convert()
    return [d["name"] for d in Interpreter(model_content=plain).get_output_details()]


# ---------------------------------------------------------------------------------------------
# Stage 1


def onnx_to_savedmodel(
    onnx_path: str | os.PathLike,
    cache_dir: str | os.PathLike | None = None,
    settings: Onnx2tfSettings = Onnx2tfSettings(),
    progress: bool = True,
    log=print,
) -> tuple[Path, dict[str, Any]]:
    """onnx2tf on a private copy of ``onnx_path``; returns (folder, record). The folder holds the
    SavedModel and onnx2tf's ``*_float32.tflite`` / ``*_float16.tflite``; it is moved into the
    cache only when complete, so a failed or interrupted run leaves nothing behind."""
    import onnx

    from selinet_compress.io import sha256_file, sha256_json

    onnx_path = Path(onnx_path)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = sha256_json(
        {
            "onnx": sha256_file(onnx_path),
            "settings": asdict(settings),
            "rewrites": REWRITES_VERSION,
            "versions": tool_versions(),
        }
    )[:24]
    folder = cache / "onnx2tf" / key
    record: dict[str, Any] = {
        "pass": "onnx2tf",
        "cache_key": key,
        "settings": asdict(settings),
        "tool_versions": tool_versions(),
        "folder": str(folder),
    }
    if (folder / "saved_model.pb").is_file():
        log(f"onnx2tf: reusing {folder}")
        meta = json.loads((folder / "record.json").read_text(encoding="utf-8"))
        return folder, {**meta, "cached": True}
    folder.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=folder.parent))
    try:
        model = onnx.load(str(onnx_path))
        rewrites: dict[str, Any] = {"batch pinned": fix_batch(model, settings.batch_size)}
        if settings.rewrite_hardsigmoid:
            rewrites["HardSigmoid -> Add/Clip/Mul"] = rewrite_hardsigmoid(model)
        model = onnx.shape_inference.infer_shapes(model)
        copy = work / "model.onnx"  # onnx2tf overwrites its input: never give it the user's file
        onnx.save(model, str(copy))
        log("onnx2tf: ONNX -> TensorFlow SavedModel (tf_converter backend; takes minutes) ...")
        result = _run_worker(
            {
                "action": "onnx2tf",
                "onnx": str(copy),
                "out_dir": str(work / "out"),
                "batch_size": settings.batch_size,
                "pseudo": ["hardswish"] if settings.pseudo_hardswish else [],
            },
            work / "onnx2tf.log",
            "onnx2tf",
            progress,
        )
        out = work / "out"
        shutil.move(str(work / "onnx2tf.log"), out / "onnx2tf.log")
        record.update(
            {
                "onnx_rewrites": rewrites,
                "seconds": result["seconds"],
                "files": result["files"],
                "source_onnx_sha256": sha256_file(onnx_path),
            }
        )
        (out / "record.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
        os.replace(out, folder)  # atomic: the folder appears complete or not at all
    except ConversionError as exc:
        kept = folder.parent / f"failed-{key}.log"
        log_file = work / "onnx2tf.log"
        if log_file.is_file():
            shutil.copyfile(log_file, kept)
        raise ConversionError(str(exc).replace(str(log_file), str(kept))) from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return folder, {**record, "cached": False}


def _float_file(folder: Path, kind: str) -> Path:
    hits = sorted(folder.glob(f"*_{kind}.tflite"))
    if not hits:
        raise ConversionError(f"onnx2tf wrote no *_{kind}.tflite in {folder}")
    return hits[0]


# ---------------------------------------------------------------------------------------------
# Stage 2


def savedmodel_to_tflite(
    folder: Path,
    stage1_key: str,
    settings: TFLiteSettings,
    calibration_nhwc: dict[str, np.ndarray] | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    log=print,
) -> tuple[Path, dict[str, Any]]:
    """The raw .tflite for ``settings`` from a stage-1 folder, cached under ``cache/tflite/``."""
    from selinet_compress.io import atomic_path, sha256_json

    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if settings.precision == "int8_static" and not calibration_nhwc:
        raise ValueError("int8_static needs calibration arrays (NHWC)")
    calibration_hash = arrays_sha256(calibration_nhwc) if settings.precision == "int8_static" else None
    key = sha256_json(
        {
            "stage1": stage1_key,
            "converter": CONVERTER_VERSION,
            "settings": asdict(settings),
            "calibration": calibration_hash,
            "versions": tool_versions(),
        }
    )[:24]
    target = cache / "tflite" / f"{key}.tflite"
    record: dict[str, Any] = {
        "pass": "tflite_converter",
        "cache_key": key,
        "settings": asdict(settings),
        "calibration_sha256": calibration_hash,
    }
    if target.is_file():
        log(f"tflite: reusing {target}")
        return target, {**record, "cached": True}
    target.parent.mkdir(parents=True, exist_ok=True)
    if settings.precision in ("fp32", "fp16"):
        # onnx2tf's own files (from the Keras model); the same converter, no second run needed.
        source = _float_file(folder, {"fp32": "float32", "fp16": "float16"}[settings.precision])
        with atomic_path(target) as tmp:
            shutil.copyfile(source, tmp)
        return target, {**record, "source": source.name, "cached": False}
    with tempfile.TemporaryDirectory(prefix="selinet-tflite-") as tmp_dir:
        tmp = Path(tmp_dir)
        spec: dict[str, Any] = {
            "action": "convert",
            "saved_model": str(folder),
            "precision": settings.precision,
            "per_channel": settings.per_channel,
            "io_dtype": settings.io_dtype,
            "float_ops": list(settings.float_ops),
            "float_outputs": settings.float_outputs,
            "out": str(tmp / "model.tflite"),
        }
        if calibration_nhwc:
            np.savez(tmp / "calibration.npz", **calibration_nhwc)
            spec["calibration"] = str(tmp / "calibration.npz")
        what = {
            "int8_dynamic": "dynamic-range quantization",
            "int8_static": f"full-integer quantization on {_count(calibration_nhwc)} samples",
        }
        log(f"tflite: {what[settings.precision]} ...")
        result = _run_worker(spec, tmp / "convert.log", f"tflite {settings.precision}", progress)
        with atomic_path(target) as out:
            shutil.copyfile(tmp / "model.tflite", out)
    return target, {**record, **result, "cached": False}


def _count(arrays: dict[str, np.ndarray] | None) -> int:
    return int(next(iter(arrays.values())).shape[0]) if arrays else 0


def convert_onnx_to_tflite(
    onnx_path: str | os.PathLike,
    out_path: str | os.PathLike,
    settings: TFLiteSettings,
    calibration_nhwc: dict[str, np.ndarray] | None = None,
    cache_dir: str | os.PathLike | None = None,
    onnx2tf_settings: Onnx2tfSettings = Onnx2tfSettings(),
    progress: bool = True,
    log=print,
) -> tuple[Path, list[dict[str, Any]]]:
    """ONNX -> ``out_path`` (.tflite, written atomically); returns (path, pass records).

    ``calibration_nhwc``: the calibration samples as NHWC float32 arrays named like the ONNX
    inputs (needed for int8_static). Both stages are cached in ``cache_dir``.
    """
    from selinet_compress.io import atomic_path

    folder, stage1 = onnx_to_savedmodel(onnx_path, cache_dir, onnx2tf_settings, progress, log)
    raw, stage2 = savedmodel_to_tflite(
        folder, stage1["cache_key"], settings, calibration_nhwc, cache_dir, progress, log
    )
    with atomic_path(out_path) as tmp:
        shutil.copyfile(raw, tmp)
    return Path(out_path), [stage1, stage2]


if __name__ == "__main__":  # the child process of _run_worker
    _worker_main(sys.argv[1])
