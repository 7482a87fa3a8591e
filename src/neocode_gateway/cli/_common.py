"""Argument parsing shared by every sub-command: one-line usage errors, value checks.

Standard library only, and not even :mod:`logging` until the daemon configures
it: the quick client commands import this module, and their start-up is the
interpreter's plus a socket (``tests/unit/test_import_discipline.py``).
"""

from __future__ import annotations

import argparse
import math
import os
import sys

from neocode_gateway.client._local import (
    ADDRESS_ENV,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_REQUEST_TIMEOUT,
    default_address,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_ALREADY_RUNNING = 3
EXIT_ERROR_FRAME = 1
EXIT_UNREACHABLE = 3
EXIT_TIMEOUT = 4
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141

EXIT_CODES_HELP = (
    "exit codes: 0 ok, 1 an error frame came back (or the gateway broke the protocol),\n"
    "            2 usage error, 3 no gateway reachable, 4 timeout, 130 interrupted"
)

#: The values of :mod:`logging`'s levels, without importing it.
LOG_LEVELS = {
    "debug": 10,
    "info": 20,
    "warn": 30,
    "warning": 30,
    "error": 40,
}


class Formatter(argparse.RawDescriptionHelpFormatter):
    """argparse's formatter, sized without :mod:`shutil`.

    argparse builds a formatter for every ``add_argument`` (to check the
    metavar), and the stock one imports :mod:`shutil` (1.5 ms with what it
    pulls in) only to read the terminal width: a quick command parses flags
    but prints no help. Same rule as ``shutil.get_terminal_size``: ``$COLUMNS``,
    else the terminal's, else 80; minus 2, as argparse does.
    """

    def __init__(
        self,
        prog: str,
        indent_increment: int = 2,
        max_help_position: int = 24,
        width: int | None = None,
    ) -> None:
        if width is None:
            width = _columns() - 2
        super().__init__(prog, indent_increment, max_help_position, width)


def _columns() -> int:
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr and exit 2."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _integer(text: str, minimum: int, expected: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1."""
    return _integer(text, 1, "a positive integer")


def non_negative_int(text: str) -> int:
    """An integer >= 0."""
    return _integer(text, 0, "an integer >= 0")


def non_negative_seconds(text: str) -> float:
    """A finite number of seconds >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds >= 0, got {text!r}") from None
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"expected seconds >= 0, got {text!r}")
    return value


def positive_seconds(text: str) -> float:
    """A finite number of seconds > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a positive number of seconds, got {text!r}"
        ) from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def log_level(text: str) -> int:
    """One of debug, info, warn (or warning), error; any case."""
    try:
        return LOG_LEVELS[text.lower()]
    except KeyError:
        raise argparse.ArgumentTypeError(
            f"expected one of {', '.join(LOG_LEVELS)}, got {text!r}"
        ) from None


def non_empty(text: str) -> str:
    """A non-blank string."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def fail(prog: str, message: str, code: int = EXIT_FAILURE) -> int:
    """Print ``prog: error: message`` on stderr and return ``code``."""
    sys.stderr.write(f"{prog}: error: {message}\n")
    return code


# -- what every client command shares -------------------------------------------------------


def add_address_flags(parser: argparse.ArgumentParser) -> None:
    """``--listen``, ``--trust-any-uid``, ``--timeout`` and ``--log-level``."""
    parser.add_argument(
        "--listen",
        metavar="ADDRESS",
        type=non_empty,
        default=None,
        help=f"socket path or pipe name of the gateway (default: ${ADDRESS_ENV}, "
        f"else {default_address()})",
    )
    parser.add_argument(
        "--trust-any-uid",
        action="store_true",
        help="talk to a gateway even if it runs as another user (it would see your requests)",
    )
    parser.add_argument(
        "--timeout",
        metavar="S",
        type=positive_seconds,
        default=None,
        help=f"seconds to wait for the connection and for each response (default: "
        f"{DEFAULT_CONNECT_TIMEOUT:g} to connect, {DEFAULT_REQUEST_TIMEOUT:g} per request)",
    )
    parser.add_argument(
        "--log-level",
        metavar="LEVEL",
        type=log_level,
        default=LOG_LEVELS["warn"],
        help="debug adds the gateway's error codes to error messages (default: warn)",
    )


def describe(parser: argparse.ArgumentParser, examples: str) -> None:
    """Examples and the exit codes, below the flags in ``--help``."""
    parser.epilog = f"examples:\n{examples}\n\n{EXIT_CODES_HELP}"


def out(line: str) -> None:
    """One line on stdout, flushed now so that pipes see each line as it happens."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def out_json(value: dict[str, Any]) -> None:
    """One JSON object as one line on stdout."""
    import json

    out(json.dumps(value))


def silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail again."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, ValueError, OSError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def styled() -> bool:
    """Whether stdout gets a terminal's styles: a terminal, and no ``NO_COLOR`` (any value).

    ``NO_COLOR`` turns off every style (bold, dim, live regions, spinners), not
    only colours: the output is then what a pipe gets.
    """
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


_UNITS: dict[str, float] = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def duration(text: str) -> float:
    """``30s``, ``30m``, ``2h``, ``1d`` (or plain seconds) -> seconds, for argparse."""
    value = text.strip().lower()
    unit = _UNITS.get(value[-1:]) if value else None
    number = value[:-1] if unit is not None else value
    try:
        seconds = float(number) * (unit or 1.0)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a duration: {text!r} (examples: 30s, 30m, 2h, 1d)"
        ) from None
    if not 0 < seconds <= 366 * 86400:
        raise argparse.ArgumentTypeError(f"a duration between 1s and 366d, not {text!r}")
    return seconds
