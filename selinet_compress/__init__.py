"""selinet-compress: turn a SeLiNet checkpoint into int8 ONNX / TFLite with measured AP, size and speed."""

__version__ = "0.1.0"
