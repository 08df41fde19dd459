"""ESPCN models. This package's top level stays torch-free so ONNX-only inference never imports torch."""

SUPPORTED_SCALES = (2, 3, 4)
