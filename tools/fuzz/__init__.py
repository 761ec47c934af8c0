"""Fuzz the runtime with mutated models, manifests, inputs and MNIST files; count how each attempt ends.

    python -m tools.fuzz --artifacts artifacts --reports reports        # make fuzz: the full run
    from tools.fuzz.harness import FuzzConfig, run_fuzz                  # tests/test_fuzz.py: small counts

Each attempt runs in a worker process, so a segfault or a hang is counted (and the worker restarted), never
fatal. Outcomes: ``refused`` (a one-line VaeEdgeError: the clean ending), ``crash`` (the worker died by a
signal), ``hang``, ``traceback`` (any other exception), ``silent_diff_io_detectable`` / ``silent_diff_io_same``
(a mutated model ran and its output differs from the unmutated model's; the first kind has input/output
tensors that differ from its manifest entry, which the runtime's I/O check exists to catch), ``same_output``
(the mutation did not change the output) and ``accepted`` (a mutated manifest, input or .npz that is still
valid).
"""
