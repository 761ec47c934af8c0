"""Developer tools that are not part of the shipped runtime (nothing here is installed on a Pi)."""
