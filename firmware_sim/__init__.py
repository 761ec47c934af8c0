"""vae-edge firmware_sim: the int8 decoder on a simulated microcontroller (TFLite Micro as the reference)."""

# The TFLite Micro whose bits the numpy reference and the generated C reproduce: requirements.txt pins this
# wheel (a test keeps the two equal and checks the installed one); README names it.
TFLM_VERSION = "0.dev20261023182759"
