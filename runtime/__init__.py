"""vae-edge runtime: TensorFlow-free prior sampling and decoding of exported VAE decoders."""
