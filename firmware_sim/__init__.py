"""vae-edge firmware_sim: the int8 decoder on a simulated microcontroller (TFLite Micro as the reference)."""
