"""Sending batches and recording the centre's answers: the half of the upload engine that talks to the
centre (no Airflow). :class:`~cdyb_jxc.upload.engine.Uploader` plans the rows and owns a :class:`BatchSender`.

One batch: check the lock → in one ledger transaction, the audit row (with the request as it will go out,
验证码 redacted) and the rows IN_FLIGHT (inserted so, for rows new to the ledger: see
:mod:`cdyb_jxc.upload.unwritten`) → send → in one transaction, each row's answer (ACCEPTED, REJECTED,
… or the batch back to PENDING / IN_DOUBT) and the audit row closed. A transport fault or a lost reply
sends the batch again unchanged; rows a self-contradicting reply left in doubt go again too.

Up to ``max_in_flight`` batches are out at once: only the call and the parsing of its reply run on worker
threads; this (the calling) thread alone writes the ledger, and applies each reply as it comes.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from dataclasses import replace
from typing import Any, NoReturn

from cdyb_jxc.exceptions import (
    CallRejectedError,
    CdybJxcError,
    InDoubtError,
    SerialTakenError,
)
from cdyb_jxc.ledger import Ledger, LedgerEntry
from cdyb_jxc.ledger.batch_store import compress, utcnow
from cdyb_jxc.ledger.lock import UploadLock
from cdyb_jxc.safety.textcap import PART_MAX, REQUEST_MAX, cap
from cdyb_jxc.upload.batch_writes import BatchWrites
from cdyb_jxc.upload.batches import (
    Exchange,
    Flight,
    Planned,
    Preparing,
    ReplyRecorder,
    Sender,
    call_executor,
)
from cdyb_jxc.upload.result import RunInfo, UploadResult
from cdyb_jxc.upload.unwritten import Unwritten
from cdyb_jxc.wire.codec import build_request
from cdyb_jxc.wire.connection import check_max_in_flight
from cdyb_jxc.wire.profile import Profile

__all__ = ["BatchSender", "Exchange", "Flight", "Planned", "Preparing", "Sender"]

log = logging.getLogger(__name__)

# Batches built ahead of a free slot. While the engine plans the next rows it polls between rows, and these
# go out as replies free their slots, so the centre is not left idle; nothing of them is sent until they
# leave. Bounded so memory stays flat: each holds one request (≤ the profile's row limit).
WAITING_MAX = 16
# Seconds the sender waits for a reply before it writes the rows still unwritten as planned (PENDING): a reply
# due at once lets them go in IN_FLIGHT as their batch leaves; a longer wait is spent writing them.
UNWRITTEN_WAIT = 0.01


class BatchSender:
    """Sends planned rows in batches and records every answer in the ledger (IN_FLIGHT first).

    :param ledger: the ledger
    :param profile: the interface profile
    :param txn_key: ``init``, ``inbound``, ``outbound`` or ``stock``
    :param institution_code: 定点机构编码
    :param centre: the centre (see :class:`Sender`; a :class:`Preparing` one builds each request once)
    :param result: the run's result (counts, timings, reject sample)
    :param run: who is uploading
    :param batch_limit: rows per request
    :param resend_attempts: in-run resends of a batch after a transport fault or lost reply
    :param backoff: seconds before the first resend, doubled each time
    :param sleep: how to wait before a resend
    :param progress: called with the number of rows answered after each batch
    :param max_in_flight: batches out at once (1 to 8)
    :param taken: told of a row new to the ledger that another upload inserted before this one wrote it
        (it is not sent; the engine records it as a source issue)
    """

    def __init__(
        self,
        *,
        ledger: Ledger,
        profile: Profile,
        txn_key: str,
        institution_code: str,
        centre: Sender,
        result: UploadResult,
        run: RunInfo,
        batch_limit: int,
        resend_attempts: int,
        backoff: float,
        sleep: Callable[[float], None],
        progress: Callable[[int], None] | None,
        max_in_flight: int = 1,
        taken: Callable[[Planned, LedgerEntry], None],
    ) -> None:
        self.ledger = ledger
        self.profile = profile
        self.txn_key = txn_key
        self.txn = profile.transaction(txn_key)
        self.institution = institution_code
        self.centre = centre
        self.result = result
        self.run = run
        self.batch_limit = batch_limit
        self.resend_attempts = resend_attempts
        self.backoff = backoff
        self.sleep = sleep
        self.progress = progress
        self.max_in_flight = check_max_in_flight(max_in_flight, f"{self.txn.code} upload", "max_in_flight")
        self.left_in_doubt = 0  # rows still IN_DOUBT after self-contradicting replies (the run raises)
        self.lock: UploadLock | None = None  # the run's lock, checked before each batch leaves
        self.replies = ReplyRecorder(
            ledger=ledger, profile=profile, txn_key=txn_key, institution_code=institution_code, result=result
        )
        self.unwritten = Unwritten(ledger, institution_code, taken)  # new rows, written as their batch leaves
        self.writes = BatchWrites(
            ledger=ledger,
            institution_code=institution_code,
            txn_code=self.txn.code,
            run=run,
            replies=self.replies,
            unwritten=self.unwritten,
        )
        self._prepares = isinstance(centre, Preparing)
        self._flying: dict[Future[Exchange], Flight] = {}
        self._waiting: deque[Flight] = deque()  # built, waiting for a slot
        self._pool: Executor | None = None
        self._stopping = False  # an error ends the run: nothing more goes out, what is out is recorded

    # -- public ----------------------------------------------------------------------------------------------
    def send_all(self, rows: Sequence[Planned]) -> None:
        """Send ``rows`` in batches of at most :attr:`batch_limit` and wait for every answer."""
        self.submit_all(rows)
        self.drain()

    def submit_all(self, rows: Sequence[Planned]) -> None:
        """Send ``rows`` in batches of at most :attr:`batch_limit`, as slots come free; returns with up to
        :attr:`max_in_flight` batches out and up to :data:`WAITING_MAX` built and waiting for a slot
        (:meth:`poll` and :meth:`drain` send those)."""
        for start in range(0, len(rows), self.batch_limit):
            self._waiting.append(self._flight(list(rows[start : start + self.batch_limit])))
            self.poll()  # a batch back frees its slot only once applied: building the next must not wait
            while len(self._waiting) > WAITING_MAX:
                self._settle_next()
                self._fill()
        self.poll()

    def poll(self) -> None:
        """Record the answers already back and send waiting batches into the slots they free; never waits
        for the centre (the engine calls it between the steps of planning a chunk)."""
        while True:
            done = [f for f in self._flying if f.done()]
            self._apply(done)
            sent = self._fill()
            if not done and not sent:
                return

    def send_batch(self, batch: list[Planned]) -> None:
        """Send one batch and wait for its answer; resend it unchanged after a transport fault or lost reply
        (``resend_attempts`` times, then raise), and resend the rows a self-contradicting reply left in
        doubt (then give up on them for this run: :attr:`left_in_doubt`, raised by the caller once every
        batch went out)."""
        self._waiting.append(self._flight(batch))
        self.drain()

    def drain(self) -> None:
        """Send the waiting batches, wait for every batch out and record its answer (resends included).
        Raises what stops the run (a refused call, resends used up), once every batch that was out is
        recorded."""
        try:
            while self._waiting or self._flying:
                self._fill()
                if self._flying:
                    self._settle_next()
        finally:
            self._shut_down()

    def close(self) -> None:
        """Record the answers of the batches still out, sending and resending none and raising nothing: for
        a run that stops on an error of its own (the source, the ledger), so every row ends in a ledger
        state (a waiting batch's rows stay as planned)."""
        self._stopping = True
        self._waiting.clear()
        try:
            while self._flying:
                try:
                    self._settle_next()
                except _Recorded:
                    continue
                except Exception:
                    log.exception("%s: recording a batch that was out failed", self.txn.code)
        finally:
            self._stopping = False
            self._shut_down()
            self.unwritten.keep_as_planned()

    # -- sending ---------------------------------------------------------------------------------------------
    def _flight(self, batch: list[Planned], attempt: int = 0) -> Flight:
        """The batch's first (or next) request, built and compressed once, ready to go."""
        request, audit = self._request(batch)
        return Flight(batch, attempt, request, audit, compress(audit, REQUEST_MAX))

    def _fill(self) -> bool:
        """Send waiting batches while a slot is free; whether any went."""
        sent = False
        while self._waiting and len(self._flying) < self.max_in_flight and not self._stopping:
            self._launch(self._waiting.popleft())
            sent = True
        return sent

    def _request(self, batch: list[Planned]) -> tuple[Any, str]:
        """What goes out, and the audit's copy of it (验证码 redacted)."""
        wire = [p.wire for p in batch]
        if self._prepares:
            prepared = self.centre.prepare(self.txn_key, wire)  # type: ignore[attr-defined]
            return prepared, prepared.audit
        # a plain Sender builds its own: the audit keeps this copy until the exchange names the one sent
        redacted = build_request(
            self.profile,
            self.txn,
            wire,
            user="-",
            verification_code="******",
            institution_code=self.institution,
        )
        return wire, redacted

    def _launch(self, flight: Flight) -> None:
        """Check the lock, commit the audit row and IN_FLIGHT (one transaction), hand the call to a worker."""
        if self._stopping:
            return  # the rows stay as planned (PENDING or IN_DOUBT): nothing went out
        try:
            if self.lock is not None:
                self.lock.check()
        except CdybJxcError as err:
            self.ledger.forget_written()  # without the lock, another upload may write these rows too
            self._failed(flight, err, in_doubt=False)
            return
        if self.unwritten.has_gone(flight.batch):
            self._without_taken(flight, None)
            return
        batch, now = flight.batch, utcnow()
        try:
            self.writes.launch(flight, now)
        except SerialTakenError as err:
            self._without_taken(flight, err)
            return
        except Exception as err:
            self._stop(err)
        flight.started_at = now
        self.result.batches += 1
        self.result.rows_sent += len(batch)
        if self._pool is None:
            self._pool = call_executor(self.max_in_flight)
        self._flying[self._pool.submit(self._call, flight)] = flight

    def _without_taken(self, flight: Flight, err: SerialTakenError | None) -> None:
        """Another upload inserted some of the batch's new rows since they were planned (nothing of this
        batch was written): the batch goes without them (the engine hears of each)."""
        taken = self.unwritten.taken(flight.batch)
        if not taken and err is not None:
            self._stop(err.__cause__ or err)  # not a 流水号 taken meanwhile: the database's own error
        rest = [p for p in flight.batch if p.serial not in taken]
        if rest:
            self._launch(self._flight(rest, flight.attempt))

    def _call(self, flight: Flight) -> Exchange:
        """The call and the parsing of its reply (on a worker thread: nothing here touches the ledger). The
        reply is compressed for the audit here too: zlib lets the calling thread run meanwhile."""
        started, flight.reply_gz = time.perf_counter(), None
        try:
            if self._prepares:
                exchange: Exchange = self.centre.send_request(flight.request)  # type: ignore[attr-defined]
            else:
                exchange = self.centre.send(self.txn_key, flight.request)
        finally:
            flight.seconds, flight.finished_at = time.perf_counter() - started, utcnow()
        flight.reply_gz = compress(exchange.reply_text)
        return exchange

    def _shut_down(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    # -- answers ---------------------------------------------------------------------------------------------
    def _settle_next(self) -> None:
        """Wait for the next batch to come back and apply its answer (those back together in batch order).
        Rows still waiting to be written go in first, as planned (see :mod:`cdyb_jxc.upload.unwritten`)."""
        flying = list(self._flying)
        done = wait(flying, UNWRITTEN_WAIT, FIRST_COMPLETED)[0] if self.unwritten else set()
        if not done:  # written while the centre keeps this thread waiting
            if self._stopping:
                self.unwritten.keep_as_planned()  # never raises: the batches out must still be recorded
            else:
                self.unwritten.write_planned()
            done = wait(flying, return_when=FIRST_COMPLETED)[0]
        self._apply(done)

    def _apply(self, done: Iterable[Future[Exchange]]) -> None:
        ordered = sorted(done, key=lambda f: self._flying[f].batch_id)
        if ordered and all(map(_routine, ordered)):
            # plain answers: the waiting batches take the slots before these are written, so the centre is
            # not left idle for a ledger transaction (a stop, a refused call, a fault are applied first)
            answered = deque((self._flying.pop(f), f) for f in ordered)
            try:
                self._fill()
                while answered:
                    self._settle(*answered.popleft())
            except BaseException:
                # a launch or an earlier answer stopped the run: the answers still back are out of _flying,
                # so nothing else would record them
                self._record_stopped(list(answered))
                raise
            return
        for future in ordered:
            if future in self._flying:  # a stop while applying an earlier one has applied it already
                self._settle(self._flying.pop(future), future)

    def _record_stopped(self, answered: list[tuple[Flight, Future[Exchange]]]) -> None:
        """Record answers that were back when the run stopped (nothing is sent again for them)."""
        self._stopping = True
        try:
            for flight, future in answered:
                try:
                    self._settle(flight, future)
                except Exception:  # the error that stopped the run is the one raised
                    log.exception(
                        "%s: recording a batch that was back when the run stopped failed", self.txn.code
                    )
        finally:
            self._stopping = False

    def _settle(self, flight: Flight, future: Future[Exchange]) -> None:
        self.result.send_seconds += flight.seconds
        try:
            exchange = future.result()
        except CdybJxcError as err:
            self.writes.failed(flight, err)
            self._failed(flight, err, in_doubt=isinstance(err, InDoubtError))
            return
        except Exception as err:
            # not an answer of the centre (a fault of this client): the rows stay IN_FLIGHT, their audit row
            # open, and the next run treats them as in doubt
            self._stop(err)
        self._answered(flight, exchange)

    def _answered(self, flight: Flight, exchange: Exchange) -> None:
        """Record a reply's answer for each row and close the audit row, in one transaction."""
        reply = exchange.reply
        if reply.whole_call_rejected:
            self.writes.call_rejected(flight, exchange)
            self._stop(CallRejectedError(cap(reply.retmsg, PART_MAX), reply.category))
        doubtful = self.writes.answered(flight, exchange)
        if self.progress:
            self.progress(len(flight.batch) - len(doubtful))
        if doubtful:
            self._doubtful(flight, doubtful)

    # -- resends and stops -----------------------------------------------------------------------------------
    def _failed(self, flight: Flight, err: CdybJxcError, *, in_doubt: bool) -> None:
        """After a failed attempt: the batch again, unchanged, once the back-off has passed — asked again only
        when the error says so (the request never arrived, or its fate is unknown) — else the run stops."""
        if self._stopping or not err.retryable or flight.attempt >= self.resend_attempts:
            self._stop(err)
        self._before_resend(flight.batch, str(err), flight.attempt, in_doubt=in_doubt)
        self._launch(replace(flight, attempt=flight.attempt + 1))

    def _doubtful(self, flight: Flight, doubtful: list[Planned]) -> None:
        """Rows a self-contradicting reply left in doubt: sent again, or given up for this run."""
        if self._stopping or flight.attempt >= self.resend_attempts:
            self._give_up(doubtful)
            return
        self._before_resend(doubtful, "reply contradicts itself", flight.attempt, in_doubt=True)
        self._launch(self._flight(doubtful, flight.attempt + 1))

    def _stop(self, err: BaseException) -> NoReturn:
        """Send nothing more; wait for the batches still out and record them; then raise ``err``. While
        stopping already, ``err`` is logged and the first error is the one raised."""
        if self._stopping:
            log.warning("%s: a batch still out when the run stopped failed too: %s", self.txn.code, err)
            raise _Recorded
        self._stopping = True
        self._waiting.clear()  # their rows stay as planned: nothing of them went out
        self.unwritten.keep_as_planned()
        try:
            while self._flying:
                try:
                    self._settle_next()
                except _Recorded:
                    continue
                except Exception:  # the first error stays the one raised; the other batches still settle
                    log.exception("%s: recording a batch that was out failed", self.txn.code)
        finally:
            self._stopping = False
            self._shut_down()
        raise err

    def _give_up(self, doubtful: list[Planned]) -> None:
        self.left_in_doubt += len(doubtful)
        log.error(
            "%s: %d rows stay IN_DOUBT after replies that contradict themselves; the run goes on "
            "and they go out again on the next try",
            self.txn.code,
            len(doubtful),
        )

    def _before_resend(self, batch: list[Planned], why: str, attempt: int, *, in_doubt: bool) -> None:
        delay, why = self.backoff * (2**attempt), cap(why, PART_MAX)  # why may quote the centre at length
        log.warning(
            "%s batch of %d rows: %s; resending unchanged in %.1fs (%d/%d)",
            self.txn.code,
            len(batch),
            why,
            delay,
            attempt + 1,
            self.resend_attempts,
        )
        self.unwritten.write_planned()  # not left out of the ledger while this thread sleeps
        self.sleep(delay)
        if in_doubt:
            # the rows may have been stored: a duplicate answer now reconciles them
            for plan in batch:
                plan.now_in_doubt()


def _routine(future: Future[Exchange]) -> bool:
    """Whether a finished call came back with an answer that does not stop the run."""
    if future.exception() is not None:
        return False
    return not future.result().reply.whole_call_rejected


class _Recorded(Exception):
    """A batch's failure while the run stops: recorded, and the error that stopped the run is raised."""
