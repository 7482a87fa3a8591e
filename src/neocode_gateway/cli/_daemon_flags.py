"""The daemon's flags: parsed before anything heavy is imported (see :mod:`._early`)."""

from __future__ import annotations

import argparse
import logging

from neocode_gateway.cli._common import (
    log_level,
    non_empty,
    non_negative_int,
    positive_int,
    positive_seconds,
)
from neocode_gateway.cli._logging import LOG_FILE_NAME
from neocode_gateway.limits import (
    DEFAULT_DATA_DIR,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_FRAME_BYTES,
    DEFAULT_PERMISSION_TIMEOUT,
    DEFAULT_READ_TIMEOUT,
    DEFAULT_RETENTION_DAYS,
    DEFAULT_WRITE_TIMEOUT,
)
from neocode_gateway.transport import default_address


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The daemon's flags (also accepted with no sub-command)."""
    parser.add_argument(
        "--listen",
        metavar="ADDRESS",
        type=non_empty,
        default=None,
        help=f"socket path or pipe name to listen on (default: {default_address()})",
    )
    parser.add_argument(
        "--log-level",
        metavar="LEVEL",
        type=log_level,
        default=logging.INFO,
        help="debug, info, warn or error (default: info)",
    )
    parser.add_argument(
        "--log-file",
        metavar="PATH",
        type=non_empty,
        default=None,
        help=f"also log to this file, rotated at 5 MiB (default: {LOG_FILE_NAME} in the data "
        "directory; none: stderr only)",
    )
    parser.add_argument(
        "--max-connections",
        metavar="N",
        type=positive_int,
        default=DEFAULT_MAX_CONNECTIONS,
        help=f"concurrent connections; extra ones are closed at once "
        f"(default: {DEFAULT_MAX_CONNECTIONS})",
    )
    parser.add_argument(
        "--read-timeout",
        metavar="SECONDS",
        type=positive_seconds,
        default=DEFAULT_READ_TIMEOUT,
        help=f"a whole frame must arrive within this time (default: {DEFAULT_READ_TIMEOUT:g})",
    )
    parser.add_argument(
        "--write-timeout",
        metavar="SECONDS",
        type=positive_seconds,
        default=DEFAULT_WRITE_TIMEOUT,
        help=f"a client that does not read its responses for this long is dropped "
        f"(default: {DEFAULT_WRITE_TIMEOUT:g})",
    )
    parser.add_argument(
        "--max-frame-bytes",
        metavar="N",
        type=positive_int,
        default=DEFAULT_MAX_FRAME_BYTES,
        help=f"largest frame accepted, without its newline (default: {DEFAULT_MAX_FRAME_BYTES})",
    )
    parser.add_argument(
        "--insecure-skip-peer-check",
        action="store_true",
        help="accept connections even where the peer's credentials cannot be read (unsafe)",
    )
    parser.add_argument(
        "--loop",
        choices=("auto", "asyncio", "uvloop"),
        default="auto",
        help="event loop implementation (default: auto = uvloop where available)",
    )

    from neocode_gateway.cli._agents import add_config_flags

    add_config_flags(parser)
    parser.add_argument(
        "--runtime",
        metavar="NAME",
        type=non_empty,
        default=None,
        help="the default runtime (agent) of new sessions: echo (the built-in demo), the name of "
        "a configured agent, or none (exactly contract v1: no sessions) (default: echo)",
    )
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        type=non_empty,
        default=None,
        help=f"where the event log (SQLite) lives (default: {DEFAULT_DATA_DIR})",
    )
    parser.add_argument(
        "--workdir",
        metavar="DIR",
        type=non_empty,
        default=None,
        help="working directory of new sessions that name none (default: the current directory)",
    )
    parser.add_argument(
        "--permission-timeout",
        metavar="SECONDS",
        type=positive_seconds,
        default=None,
        help="a permission request nobody answers is rejected after this long "
        f"(default: {DEFAULT_PERMISSION_TIMEOUT:g})",
    )
    parser.add_argument(
        "--event-retention-days",
        metavar="N",
        type=non_negative_int,
        default=None,
        help="events older than this are deleted; 0 keeps them forever "
        f"(default: {DEFAULT_RETENTION_DAYS})",
    )
