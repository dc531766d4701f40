"""Audits of exported files: what precision each op really runs in and how many bytes of weights
each data type holds, read from the file itself (not from what the recipe asked for).

One module per format (``onnx_audit``, ``tflite_audit``); each returns a plain dict with at least
``kind``, ``nodes``, ``node_counts``, ``weights`` (dtype -> tensors, bytes), ``weight_bytes``,
``precision_counts`` and ``float_ops`` (op type -> count of ops left in float).
"""
