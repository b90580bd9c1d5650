"""Exception hierarchy of cdyb-jxc.

Three kinds matter to a caller deciding what to do next:

* :class:`TransportError` — the request did not reach the centre or no reply came back before anything could
  have been stored; safe to retry.
* :class:`CallRejectedError` — the centre refused the whole call (credentials, batch limit, schema); retrying
  the same call cannot succeed.
* :class:`InDoubtError` — the request may have been stored but the reply was lost or unreadable; resend the
  same batch unchanged and reconcile duplicate answers.

:class:`UploadBusyError` (another upload of the same transaction holds the ledger's lock) is retryable too.

Every class says so in :attr:`CdybJxcError.retryable`: the operators fail a task without retries on an error
that is not retryable and let Airflow retry the others; the CLI exits 2 or 1 from the same flag.
"""

from __future__ import annotations

from typing import ClassVar


class CdybJxcError(Exception):
    """Base class of every error raised by cdyb-jxc."""

    #: whether running the same thing again can succeed (the next try resumes from the ledger)
    retryable: ClassVar[bool] = False
    #: the few words the operators and the CLI put before the message (empty: the message alone)
    headline: ClassVar[str] = ""


class ProfileError(CdybJxcError):
    """The interface profile is malformed; the message names the bad key."""


class CodecError(CdybJxcError):
    """A request could not be built or a reply could not be read."""


class UnsafeXmlError(CodecError):
    """XML carrying a DOCTYPE, entity declaration or other construct we refuse to parse."""


class ConnectionConfigError(CdybJxcError):
    """The connection's settings are unusable (missing endpoint, institution code, bad extra value)."""


class DeploymentConfigError(CdybJxcError):
    """The deployment file (``cdyb_jxc.yaml``) is unusable; the message names each bad key by its path.

    :param message: every problem, with the file's path
    :param problems: the problems one by one (``institutions[1].conn_id: missing``)
    """

    def __init__(self, message: str, *, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]


class SourceDataError(CdybJxcError):
    """The source data cannot be uploaded as given (missing columns, unreadable file)."""


class TransportError(CdybJxcError):
    """Network-level failure before the centre could have stored anything: retryable."""

    retryable = True
    headline = "transport fault"


class CallRejectedError(CdybJxcError):
    """The centre rejected the whole call (retcode -1 without row errors): not retryable.

    :param message: the centre's ``retmsg``
    :param category: the bracketed category of ``retmsg`` when present
    """

    headline = "the centre rejected the whole call"

    def __init__(self, message: str, category: str | None = None) -> None:
        super().__init__(message)
        self.category = category


class InDoubtError(CdybJxcError):
    """The reply was lost or unreadable after the request was sent: outcome unknown.

    :param message: what happened, 验证码 redacted
    :param reply_text: what came back, for the batch's audit: 验证码 redacted and capped by whoever raises
        (``None``: nothing came back)
    """

    retryable = True
    headline = "transport fault"

    def __init__(self, message: str, *, reply_text: str | None = None) -> None:
        super().__init__(message)
        self.reply_text = reply_text


class SerialTakenError(CdybJxcError):
    """A row about to go into the ledger as its batch leaves is there already: another upload (of another
    transaction) inserted its 流水号 meanwhile. The upload looks the 流水号 up and sends the batch without
    it; not retryable as such."""


class UploadBusyError(CdybJxcError):
    """Another upload of the same institution and transaction is running on this ledger: retry later."""

    retryable = True
