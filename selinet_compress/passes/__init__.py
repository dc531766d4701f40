"""Transformations, one file per pass: export (``onnx_export``), checks against PyTorch
(``onnx_validate``, ``agreement``), fp16 conversion (``onnx_fp16``), onnxruntime pre-processing,
calibration and quantization (``ort_quantize``, ``ort_calibrate``), TFLite conversion, QAT.

A pass takes an artifact (a model in memory or a file) and returns a new one; it never changes its
input. Passes import their toolchain inside their functions. Targets
(:mod:`selinet_compress.targets`) compose passes and write the sidecar.
"""
