"""Example edge apps built on the runtime."""
