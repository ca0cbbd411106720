"""Deployment: ONNX export (fp32, int8) with sherpa-onnx metadata, and decoding through sherpa-onnx."""

from speechtl.export.onnx import ExportConfig, OnnxExport, export_onnx

__all__ = ["ExportConfig", "OnnxExport", "export_onnx"]
