"""Developer tools for vae-edge that are not part of the installed runtime (fuzzing, benchmarks)."""
