"""What every vae-edge command line shares: the error wrapper and argparse types that refuse bad numbers.

Each CLI is ``parse_args(argv) -> Namespace`` and ``main(args) -> int``; ``main`` is decorated with
:func:`cli_main`, so a user error is one ``error: ...`` line and exit code 2, wherever it is raised:

    @cli_main
    def main(args) -> int: ...

    if __name__ == "__main__":
        sys.exit(main(parse_args()))

Numeric flags take their type from here (``type=positive_int``): argparse then rejects ``--epochs 0`` or
``--batch-size -1`` at parse time with exit code 2 and one line naming the flag, before anything is written.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable, Sequence

from .errors import VaeEdgeError, os_error_line


def cli_main(main: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Wrap a CLI's ``main``: VaeEdgeError and OSError become one ``error:`` line on stderr and exit code 2."""

    @functools.wraps(main)
    def wrapper(args: argparse.Namespace) -> int:
        try:
            return main(args)
        except VaeEdgeError as exc:
            message = str(exc)
        except OSError as exc:
            message = os_error_line(exc)
        except KeyboardInterrupt:
            print("interrupted; completed files are kept, partial ones were never published", file=sys.stderr)
            return 130
        print(f"error: {' '.join(message.split())}", file=sys.stderr)  # one line, whatever the message held
        return 2

    return wrapper


def _number(
    kind: type, minimum: float, what: str, maximum: float | None = None
) -> Callable[[str], int | float]:
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if value != value or value < minimum or (maximum is not None and value > maximum):  # NaN too
            raise argparse.ArgumentTypeError(f"{text} is not {what}")
        return value

    parse.__name__ = what  # argparse names the type in its messages
    return parse


def int_at_least(minimum: int, why: str = "") -> Callable[[str], int]:
    """An integer flag with a lower bound; ``why`` says what the bound protects."""
    return _number(int, minimum, f"an integer >= {minimum}" + (f" ({why})" if why else ""))


def int_between(minimum: int, maximum: int, why: str = "") -> Callable[[str], int]:
    """An integer flag with both bounds (``--port``: 65536 would only fail later, deep in the socket call)."""
    return _number(
        int, minimum, f"an integer from {minimum} to {maximum}" + (f" ({why})" if why else ""), maximum
    )


positive_int = int_at_least(1)
nonnegative_int = int_at_least(0)
nonnegative_float = _number(float, 0.0, "a non-negative number")


def comma_list(item: Callable[[str], object], choices: Sequence[str] | None = None) -> Callable[[str], list]:
    """``--threads 1,2`` or ``--formats tflite,onnx``: each item parsed by ``item`` (and within ``choices``)."""

    def parse(text: str) -> list:
        parts = [p.strip() for p in text.split(",")]
        if not parts or any(not p for p in parts):
            raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list")
        values = [item(p) for p in parts]
        if choices is not None:
            unknown = [p for p in parts if p not in choices]
            if unknown:
                raise argparse.ArgumentTypeError(
                    f"unknown {', '.join(map(repr, unknown))}; choose from {', '.join(choices)}"
                )
        return values

    parse.__name__ = "comma-separated list"
    return parse


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad flag is one ``error:`` line (exit code 2) instead of the usage block plus a line."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def parser(prog: str, doc: str) -> OneLineParser:
    """A parser whose description is the module docstring's first paragraph and the rest its epilog."""
    head, _, rest = doc.strip().partition("\n\n")
    return OneLineParser(
        prog=prog, description=head, epilog=rest, formatter_class=argparse.RawDescriptionHelpFormatter
    )
