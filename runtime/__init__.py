"""vae-edge runtime: TensorFlow-free prior sampling and decoding of exported VAE decoders.

Two roles. It is what a device installs (``pip install ./runtime`` on a Raspberry Pi: exactly the files its
pyproject.toml lists under ``[tool.vae-edge] ships``), and it is the numpy-only core every other stage imports
(train/, export/, firmware_sim/ and tools/ take their vocabulary from :mod:`runtime.vocab`, their CLI wrapper
from :mod:`runtime.cli`, atomic writes from :mod:`runtime.fileio`, MNIST loading and the prior from here), so
nothing in it may import TensorFlow, Keras or host-only tooling.

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
