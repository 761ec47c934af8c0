"""vae-edge runtime: TensorFlow-free prior sampling and decoding of exported VAE decoders.

    from runtime import load_manifest, Decoder
    m = load_manifest("artifacts/vae2d_corr/export")
    images = Decoder.from_manifest(m, precision="int8").decode(m.prior.sample(16, seed=0))

Needs numpy and ai-edge-litert (onnxruntime for ONNX artifacts); never imports TensorFlow or Keras.
"""

from .backends import ModelLoadError
from .errors import InvalidInputError, VaeEdgeError
from .manifest import Manifest, ManifestError, find_manifests, load_manifest
from .models import Classifier, Decoder, Encoder
from .prior import Prior

__all__ = [
    "Classifier",
    "Decoder",
    "Encoder",
    "InvalidInputError",
    "Manifest",
    "ManifestError",
    "ModelLoadError",
    "Prior",
    "VaeEdgeError",
    "find_manifests",
    "load_manifest",
]
