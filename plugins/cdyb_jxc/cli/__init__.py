"""The ``cdyb-jxc`` command (SPEC §8). Heavy imports happen inside the sub-commands."""

from __future__ import annotations

import argparse
import os
import select
import sys

from cdyb_jxc import __version__
from cdyb_jxc.cli import audit as audit_cli
from cdyb_jxc.cli import scaffold as scaffold_cli
from cdyb_jxc.cli import simulator as simulator_cli
from cdyb_jxc.cli import upload as upload_cli
from cdyb_jxc.cli import validate as validate_cli
from cdyb_jxc.exceptions import CdybJxcError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cdyb-jxc",
        description="Chengdu medical-insurance 药品进销存 uploads: client and local simulator",
    )
    parser.add_argument("--version", action="version", version=f"cdyb-jxc {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    simulator_cli.add_parser(sub)
    upload_cli.add_parser(sub)
    scaffold_cli.add_parser(sub)
    validate_cli.add_parser(sub)
    audit_cli.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except CdybJxcError as err:  # a bad profile for the simulator, say: one line, the status SPEC §8 names
        print(f"cdyb-jxc: {err}", file=sys.stderr)
        return upload_cli.exit_status(err)
    except BrokenPipeError:
        if not _stdout_broken():
            raise  # not our output's reader going away: an error to show
        _stdout_discarded()  # the reader went away (`simulator dump | head`): nothing of ours to show
        return 1


def _stdout_broken() -> bool:
    """Whether stdout's reader has gone: what is left in its buffer cannot be written, or the pipe says so."""
    try:
        sys.stdout.flush()
        fd = sys.stdout.fileno()
    except BrokenPipeError:
        return True
    except (OSError, ValueError):  # io.UnsupportedOperation is both
        return False
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return any(events & select.POLLERR for _, events in poller.poll(0))


def _stdout_discarded() -> None:
    """Point stdout at the null device, so the interpreter's last flush of what is left does not fail too."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass  # no file behind stdout (captured): nothing will be flushed to a pipe


if __name__ == "__main__":
    sys.exit(main())
