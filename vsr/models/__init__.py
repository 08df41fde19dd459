"""ESPCN models. This package's top level stays torch-free so ONNX-only inference never imports torch."""

SUPPORTED_SCALES = (2, 3, 4)
#: How many numbers ``reparam.codec_statistics`` gives per picture: here, torch-free, because the
#: registry counts a context's parameters with it.
CODEC_STATS = 6
