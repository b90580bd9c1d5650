"""An in-process centre for engine unit tests: no SOAP, no simulator; replies shaped as the client returns.

It stores what it accepts, answers 【数据重复上传】 for a 流水号 it holds, refuses the rows it is told to, and
plays one fault per call from a script: ``"transport"`` (nothing reached it), ``"lose_reply"`` (stored, reply
lost), ``"kill"`` (stored, then the worker dies before the reply is recorded).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cdyb_jxc.exceptions import InDoubtError, TransportError
from cdyb_jxc.wire.client import Exchange
from cdyb_jxc.wire.codec import FAILURE, PARTIAL, SUCCESS, BatchReply, RowFailure
from cdyb_jxc.wire.profile import Profile

LOST_REPLY_TEXT = "<html>502 Bad Gateway</html>"


class WorkerKilled(BaseException):
    """The worker process dies mid-request (SIGKILL): nothing after the send runs."""


class FakeCentre:
    """:param profile: the interface profile (codes and categories of the replies)"""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.stored: dict[str, dict[str, str | None]] = {}
        self.refuse: dict[str, str] = {}  # 流水号 → the row's errmsg, 【category】detail
        self.faults: list[str | None] = []  # one per call, in order; then every call is answered
        self.requests: list[list[str]] = []  # the 流水号 of each call

    def send(self, txn_key: str, rows: Sequence[Mapping[str, str | None]]) -> Exchange:
        serials = [str(r["serial_no"]) for r in rows]
        self.requests.append(serials)
        fault = self.faults.pop(0) if self.faults else None
        if fault == "transport":
            raise TransportError("could not reach the centre: ConnectionRefusedError")
        failures = tuple(self._answer(row) for row in rows)
        if fault == "lose_reply":
            raise InDoubtError("reply lost from the centre: ReadTimeout", reply_text=LOST_REPLY_TEXT)
        if fault == "kill":
            raise WorkerKilled
        return self._exchange(len(rows), tuple(f for f in failures if f is not None))

    def _answer(self, row: Mapping[str, str | None]) -> RowFailure | None:
        serial = str(row["serial_no"])
        if serial in self.refuse:
            return RowFailure(serial, self.refuse[serial])
        if serial in self.stored:
            return RowFailure(serial, f"【{self.profile.category('duplicate')}】流水号{serial}已上传")
        self.stored[serial] = dict(row)
        return None

    def _exchange(self, n: int, failures: tuple[RowFailure, ...]) -> Exchange:
        status = SUCCESS if not failures else FAILURE if len(failures) == n else PARTIAL
        reply = BatchReply(
            status=status,
            retcode=self.profile.return_codes[status],
            retmsg="成功" if status == SUCCESS else "部分或全部明细上传失败",
            succnum=n - len(failures),
            failnum=len(failures),
            failures=failures,
        )
        return Exchange(
            request="<redacted request/>", reply_text=f"<return>{status}</return>", reply=reply, seconds=0.0
        )
