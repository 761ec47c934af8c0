"""vae-edge training: MNIST VAEs (isotropic and correlated priors) and the digit classifier that judges them."""
