"""vae-edge export: trained Keras models -> TFLite / ONNX artifacts, validated, with a manifest and a C array."""
