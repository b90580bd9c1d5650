"""``cdyb-jxc upload``: a CSV through the same hook, ledger and batching as the operators (SPEC §8).

A connection in ``AIRFLOW_CONN_<ID>`` is read without importing Airflow (the hook's own path, the
:class:`~cdyb_jxc.upload.session.CentreSession`, minus Airflow's lookup); any other connection source is
searched through the hook, which loads Airflow.
"""

from __future__ import annotations

import argparse
import gc
import logging
import sys
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from cdyb_jxc.exceptions import CdybJxcError
from cdyb_jxc.wire.profile import TRANSACTIONS

if TYPE_CHECKING:
    from cdyb_jxc.hooks.cdyb_jxc import CdybJxcHook
    from cdyb_jxc.upload.result import UploadResult
    from cdyb_jxc.upload.session import CentreSession

EXIT_OK, EXIT_REJECTS, EXIT_USAGE = 0, 1, 2


def exit_status(err: CdybJxcError) -> int:
    """SPEC §8's exit status for ``err``: 1 when running the same command again can resume (some rows are
    not accepted yet), 2 when it cannot (usage error, refused source or connection, rejected call).

    :param err: what the command raised
    """
    return EXIT_REJECTS if err.retryable else EXIT_USAGE


def error_line(err: CdybJxcError) -> str:
    """What the CLI prints for ``err`` (after ``cdyb-jxc:``).

    :param err: what the command raised
    """
    if not err.headline:
        return str(err)
    if err.retryable:
        return f"{err.headline}, run the same command again to resume: {err}"
    return f"{err.headline}: {err}"


def add_parser(subparsers: Any) -> None:
    up = subparsers.add_parser("upload", help="upload a CSV of one transaction (header = logical names)")
    up.add_argument("--transaction", required=True, choices=TRANSACTIONS)
    up.add_argument("--file", required=True, help="CSV (UTF-8, header row), Parquet or Excel file")
    up.add_argument(
        "--encoding",
        default=None,
        help="text encoding of a CSV, e.g. gb18030 (default UTF-8, with or without BOM)",
    )
    up.add_argument(
        "--sheet", default=None, help="Excel sheet to upload (default: the only sheet holding data)"
    )
    up.add_argument(
        "--conn-id", default="cdyb_jxc_default", help="Airflow connection id (default cdyb_jxc_default)"
    )
    up.add_argument(
        "--ledger", default=None, help="ledger SQLAlchemy URL (default $CDYB_JXC_LEDGER_URL or SQLite)"
    )
    up.add_argument(
        "--mapping", default=None, help="CSV copy of the 对码 registry for holding back unmapped rows"
    )
    up.add_argument("--chunk-size", type=int, default=5000)
    up.add_argument(
        "--max-in-flight",
        type=in_flight,
        default=None,
        metavar="K",
        help="batches out at once, 1 to 8 (default: the connection's max_in_flight extra, else 2)",
    )
    up.add_argument("--no-progress", action="store_true", help="no progress bar")
    up.set_defaults(func=run_upload)


def in_flight(text: str) -> int:
    """``--max-in-flight``'s value: a whole number from 1 to 8 (else argparse's usage error, exit 2).

    :param text: as typed
    """
    from cdyb_jxc.exceptions import ConnectionConfigError
    from cdyb_jxc.wire.connection import MAX_IN_FLIGHT, check_max_in_flight

    try:
        return check_max_in_flight(int(text), "--max-in-flight", "K")
    except (ValueError, ConnectionConfigError) as err:
        raise argparse.ArgumentTypeError(
            f"must be a whole number from 1 to {MAX_IN_FLIGHT}, not {text!r}"
        ) from err


def run_upload(args: argparse.Namespace) -> int:
    from cdyb_jxc.ledger import ACCEPTED_STATES

    with _escaped_logging():
        centre = None
        try:
            centre = open_centre(args.conn_id)
            result = _upload(centre, args)
        except CdybJxcError as err:
            _error(error_line(err))
            return exit_status(err)
        finally:
            if centre is not None:
                centre.close()
    not_accepted = sum(n for s, n in result.states.items() if s not in ACCEPTED_STATES)
    # source rows that could not be sent (no 流水号, repeated, …) make it not a clean run either
    return EXIT_OK if not_accepted == 0 and not result.source_issues else EXIT_REJECTS


def open_centre(conn_id: str) -> CentreSession | CdybJxcHook:
    """The centre behind connection ``conn_id``: from ``AIRFLOW_CONN_<ID>`` without Airflow when Airflow would
    take it from there, else through the hook, from any of Airflow's connection sources.

    :param conn_id: the connection
    :raises ConnectionConfigError: Airflow has no such connection, or one whose fields are not valid
    """
    from cdyb_jxc.config import env_connection

    fields = env_connection(conn_id)
    if fields is None:
        from cdyb_jxc.hooks.cdyb_jxc import command_line_hook

        return command_line_hook(conn_id)
    from cdyb_jxc.upload.session import CentreSession

    return CentreSession(conn_id, lambda: fields)


def _upload(centre: CentreSession | CdybJxcHook, args: argparse.Namespace) -> UploadResult:
    """Upload ``args.file`` with a progress bar; the counts are printed even when the upload raises."""
    from cdyb_jxc.ledger import Ledger
    from cdyb_jxc.upload.source_issues import file_source
    from cdyb_jxc.upload.sources import iter_file_chunks

    txn = centre.profile.transaction(args.transaction)
    ledger = Ledger(args.ledger)
    with _progress(args, f"{txn.code} rows sent") as progress:
        uploader = centre.uploader(
            args.transaction,
            ledger,
            mapping_file=args.mapping,
            max_in_flight=args.max_in_flight,  # None: the connection's
            progress=progress,
            source=file_source(args.file, sheet=args.sheet, encoding=args.encoding),  # kept apart
        )
        try:
            with _own_process_tuned():
                chunks = iter_file_chunks(
                    args.file, txn, args.chunk_size, sheet=args.sheet, encoding=args.encoding
                )
                return uploader.run(chunks)
        finally:
            _print_states(uploader.result.states, uploader.result.as_dict())


@contextmanager
def _own_process_tuned() -> Iterator[None]:
    """While the command's upload runs (the process is the command's own, so its settings are too): the
    objects of the imports and the set-up are left out of garbage collection, which would otherwise walk
    them again at every full collection. (The engine sets the GIL's switch interval itself: see
    :mod:`cdyb_jxc.upload.switching`.)"""
    freeze = gc.get_freeze_count() == 0  # else not ours to undo after
    if freeze:
        gc.freeze()
    try:
        yield
    finally:
        if freeze:
            gc.unfreeze()


@contextmanager
def _progress(args: argparse.Namespace, description: str) -> Iterator[Callable[[int], None] | None]:
    """A progress bar on a terminal's stderr, advanced by the callable given; none (and rich not even
    imported) with ``--no-progress`` or when stderr is not a terminal."""
    if args.no_progress or not sys.stderr.isatty():
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task(description, total=None)
        yield lambda n: bar.advance(task, n)


@contextmanager
def _escaped_logging() -> Iterator[None]:
    """Log lines escaped like the rest of the output while the upload runs."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    handlers = list(logging.getLogger().handlers)  # ours, or the ones Airflow's import installed
    for handler in handlers:
        handler.addFilter(_TERMINAL_FILTER)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(_TERMINAL_FILTER)


def _print_states(states: Any, summary: dict[str, Any]) -> None:
    from cdyb_jxc.ledger import STATES

    _out(
        f"{summary['transaction']}: read {summary['rows_read']} rows, sent {summary['rows_sent']} "
        f"in {summary['batches']} requests, held back {summary['held_back']}"
    )
    for state in STATES:
        if states.get(state):
            _out(f"  {state:<20} {states[state]}")
    if summary["source_issues"]:
        _out(f"  {'SOURCE_ISSUE':<20} {summary['source_issues']} (not sent: see the reject list below)")
    for reject in summary["rejects_sample"][:10]:
        who = reject.get("serial_no") or f"source row {reject.get('row')}"
        _out(f"  rejected {who}: 【{reject.get('category')}】{reject.get('detail')}")


# Characters that move the cursor, recolour or rewrite what a terminal shows (ESC, CR, BS, bidi overrides,
# line separators): printed escaped, so a source value cannot fake or hide a line of the output.
_UNSAFE = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})


def terminal_safe(text: str) -> str:
    """``text`` with control, format and separator characters written as ``\\xNN`` / ``\\uNNNN`` escapes.

    :param text: anything that came from a source file, the ledger or the centre
    """
    if text.isprintable():
        return text
    return "".join(_escaped(ch) if unicodedata.category(ch) in _UNSAFE else ch for ch in text)


def _escaped(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _out(line: str) -> None:
    print(terminal_safe(line))


def _error(line: str) -> None:
    print("cdyb-jxc: " + terminal_safe(line), file=sys.stderr)


class _TerminalFilter(logging.Filter):
    """Log lines on the terminal carry source values (流水号, column names): escaped like the rest."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = terminal_safe(record.getMessage()), ()
        return True


_TERMINAL_FILTER = _TerminalFilter()
