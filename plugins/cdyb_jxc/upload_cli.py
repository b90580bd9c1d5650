"""``cdyb-jxc upload``: a CSV through the same hook, ledger and batching as the operators (SPEC §8)."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from cdyb_jxc.exceptions import (
    CallRejectedError,
    CdybJxcError,
    ConnectionConfigError,
    InDoubtError,
    ProfileError,
    SourceDataError,
    TransportError,
    UploadBusyError,
)
from cdyb_jxc.ledger import ACCEPTED_STATES, STATES
from cdyb_jxc.profile import TRANSACTIONS

EXIT_OK, EXIT_REJECTS, EXIT_USAGE = 0, 1, 2


def add_parser(subparsers: Any) -> None:
    up = subparsers.add_parser("upload", help="upload a CSV of one transaction (header = logical names)")
    up.add_argument("--transaction", required=True, choices=TRANSACTIONS)
    up.add_argument("--file", required=True, help="CSV (UTF-8, header row), Parquet or Excel file")
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
    up.add_argument("--no-progress", action="store_true", help="no progress bar")
    up.set_defaults(func=run_upload)


def run_upload(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from cdyb_jxc.hooks.cdyb_jxc import CdybJxcHook
    from cdyb_jxc.ledger import Ledger
    from cdyb_jxc.sources import iter_file_chunks

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    hook = CdybJxcHook(args.conn_id)
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        disable=args.no_progress or not sys.stderr.isatty(),
        transient=False,
    )
    try:
        profile = hook.profile
        txn = profile.transaction(args.transaction)
        ledger = Ledger(args.ledger)
        with progress:
            task = progress.add_task(f"{txn.code} rows sent", total=None)
            uploader = hook.uploader(
                args.transaction,
                ledger,
                mapping_file=args.mapping,
                progress=lambda n: progress.advance(task, n),
            )
            result = None
            try:
                result = uploader.run(iter_file_chunks(args.file, txn, args.chunk_size))
            finally:
                _print_states(uploader.result.states, uploader.result.as_dict())
    except (ConnectionConfigError, ProfileError, SourceDataError) as err:
        print(f"cdyb-jxc: {err}", file=sys.stderr)
        return EXIT_USAGE
    except CallRejectedError as err:
        print(f"cdyb-jxc: the centre rejected the whole call: {err}", file=sys.stderr)
        return EXIT_USAGE
    except (TransportError, InDoubtError) as err:
        print(f"cdyb-jxc: transport fault, run the same command again to resume: {err}", file=sys.stderr)
        return EXIT_REJECTS
    except UploadBusyError as err:
        print(f"cdyb-jxc: {err}", file=sys.stderr)
        return EXIT_REJECTS
    except CdybJxcError as err:
        print(f"cdyb-jxc: {err}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        hook.close()
    states = result.states
    not_accepted = sum(n for s, n in states.items() if s not in ACCEPTED_STATES)
    # source rows that could not be sent (no 流水号, repeated, …) make it not a clean run either
    return EXIT_OK if not_accepted == 0 and not result.source_issues else EXIT_REJECTS


def _print_states(states: Any, summary: dict[str, Any]) -> None:
    print(
        f"{summary['transaction']}: read {summary['rows_read']} rows, sent {summary['rows_sent']} "
        f"in {summary['batches']} requests, held back {summary['held_back']}"
    )
    for state in STATES:
        if states.get(state):
            print(f"  {state:<20} {states[state]}")
    if summary["source_issues"]:
        print(f"  {'SOURCE_ISSUE':<20} {summary['source_issues']} (not sent: see the reject list below)")
    for reject in summary["rejects_sample"][:10]:
        who = reject.get("serial_no") or f"source row {reject.get('row')}"
        print(f"  rejected {who}: 【{reject.get('category')}】{reject.get('detail')}")
