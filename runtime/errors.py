"""Error types shared by every vae-edge stage.

Every CLI catches :class:`VaeEdgeError` and prints its message as one line (``error: ...``) and exits 2,
so a message must name the problem *and* the fix.
"""


class VaeEdgeError(Exception):
    """A user-facing error: bad input, missing file, broken artifact. The message names the fix."""


class InvalidInputError(VaeEdgeError, ValueError):
    """Bad values handed to an API (wrong shape, dtype, NaN latents, non-SPD covariance)."""
