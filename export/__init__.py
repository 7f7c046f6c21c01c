"""Export side: PyTorch definitions of the GHOST nets, official-format loaders, ONNX export.

Importing this package does not import torch; the modules that need it do.
"""
