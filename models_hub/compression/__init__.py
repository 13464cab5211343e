"""Pure model compression engine (torch, onnx, onnxruntime; no Django). See issue 4."""
