"""Train vae-edge's models on MNIST: ``python -m train --help``.

    python -m train --model all --data ../shared/data/mnist.npz          # all four, defaults (make train)
    python -m train --model vae3d --resume                                 # continue an interrupted run
    python -m train --model vae4d --latent-dim 4                           # a new model, any name

The flags and their checks are in train/flags.py (``python -m train.results --train-flags`` reads the same
ones); the training is ``train.pipeline.train_models``. Prints each model's scalar metrics as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from runtime.cli import cli_main  # noqa: E402

from .flags import parse_args, train_options  # noqa: E402


@cli_main
def main(args: argparse.Namespace) -> int:
    from .pipeline import train_models

    trained = train_models(**train_options(args))
    print(json.dumps({t.name: t.scalars() for t in trained}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
