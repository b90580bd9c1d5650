"""One centre connection turned into what an upload needs: settings, profile, client and uploaders.

No Airflow here: the caller says how to get the connection's fields. The hook reads them from Airflow (any
of its connection sources); the CLI reads ``AIRFLOW_CONN_<ID>`` itself
(:func:`cdyb_jxc.config.env_connection`) and so starts without importing Airflow. Both then upload through
this one path.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from cdyb_jxc.config import CENTRE_CONN_TYPE, ConnectionFields, resolve_profile
from cdyb_jxc.exceptions import CdybJxcError
from cdyb_jxc.wire.connection import CentreSettings, build_settings

if TYPE_CHECKING:
    from cdyb_jxc.ledger import Ledger
    from cdyb_jxc.upload.engine import Uploader
    from cdyb_jxc.wire.client import CentreClient, Exchange, Request
    from cdyb_jxc.wire.profile import Profile

log = logging.getLogger(__name__)


class CentreSession:
    """The centre behind connection ``conn_id``; nothing is looked up or built until it is used.

    :param conn_id: the connection's id (named in every error about its fields)
    :param lookup: returns the connection's fields; called once, when the settings are first needed
    :param profile_path: interface profile overriding the connection's ``profile`` extra
    :param institution_code: the 定点机构编码 this connection must be for (see
        :func:`~cdyb_jxc.wire.connection.build_settings`)
    """

    def __init__(
        self,
        conn_id: str,
        lookup: Callable[[], ConnectionFields],
        *,
        profile_path: str | None = None,
        institution_code: str | None = None,
    ) -> None:
        self.conn_id = conn_id
        self.profile_path = profile_path
        self.institution_code = institution_code
        self._lookup = lookup

    @cached_property
    def settings(self) -> CentreSettings:
        from cdyb_jxc.safety.redaction import register_secret

        conn = self._lookup()
        settings = build_settings(
            conn_id=self.conn_id,
            host=conn.host,
            login=conn.login,
            password=conn.password,
            extra=conn.extra,
            conn_type=CENTRE_CONN_TYPE,
            institution_code=self.institution_code,
        )
        # from here on the 验证码 is cut from every log record and every reply, in every form it may take
        register_secret(settings.verification_code)
        return settings

    @cached_property
    def profile(self) -> Profile:
        return resolve_profile(self.profile_path, connection=self.settings.profile)

    @cached_property
    def client(self) -> CentreClient:
        from cdyb_jxc.wire.client import CentreClient

        s = self.settings
        return CentreClient(
            self.profile,
            endpoint=s.endpoint,
            user=s.user,
            verification_code=s.verification_code,
            institution_code=s.institution_code,
            timeout=s.timeout,
            verify=s.verify,
        )

    @property
    def batch_limit(self) -> int:
        return min(self.settings.batch_limit or self.profile.batch_limit, self.profile.batch_limit)

    def send(self, txn_key: str, rows: Sequence[Mapping[str, str | None]]) -> Exchange:
        """Send one batch (wire rows of transaction ``txn_key``) and return the exchange."""
        code, endpoint = self.profile.transaction(txn_key).code, self.settings.endpoint
        log.debug("sending %d %s rows to %s", len(rows), code, endpoint)
        return self.client.send(txn_key, rows)

    def prepare(self, txn_key: str, rows: Sequence[Mapping[str, str | None]]) -> Request:
        """Build one batch's request, once (:meth:`~cdyb_jxc.wire.client.CentreClient.prepare`)."""
        return self.client.prepare(txn_key, rows)

    def send_request(self, request: Request) -> Exchange:
        """Send a request :meth:`prepare` built; safe from several threads at once."""
        return self.client.send_request(request)

    def uploader(
        self,
        txn_key: str,
        ledger: Ledger,
        *,
        mapping_file: str | None = None,
        max_in_flight: int | None = None,
        **kwargs: Any,
    ) -> Uploader:
        """An :class:`~cdyb_jxc.upload.engine.Uploader` sending through this session.

        :param txn_key: ``init``, ``inbound``, ``outbound`` or ``stock``
        :param ledger: the ledger
        :param mapping_file: CSV copy of the 对码 registry for hold-back
        :param max_in_flight: batches out at once (default: the connection's ``max_in_flight``)
        :param kwargs: further :class:`~cdyb_jxc.upload.engine.Uploader` arguments
        """
        from cdyb_jxc.upload.engine import Uploader
        from cdyb_jxc.upload.registry import load_registry

        ledger.bind_environment(self.settings.institution_code, self.settings.environment)
        return Uploader(
            profile=self.profile,
            txn_key=txn_key,
            institution_code=self.settings.institution_code,
            sender=self,
            ledger=ledger,
            batch_limit=self.batch_limit,
            registry=load_registry(mapping_file) if mapping_file else None,
            max_in_flight=self.settings.max_in_flight if max_in_flight is None else max_in_flight,
            **kwargs,
        )

    def close(self) -> None:
        if "client" in self.__dict__:
            self.client.close()

    def test_connection(self) -> tuple[bool, str]:
        """Check endpoint and credentials with a call the centre must refuse for having no rows.

        The centre checks credentials before the row count, so 【明细条数不符】 proves the
        credentials work, and nothing can be stored. Never raises, never shows the 验证码.
        """
        from cdyb_jxc.safety.redaction import REDACTOR
        from cdyb_jxc.wire.codec import build_request, parse_reply

        try:
            profile, client = self.profile, self.client
            empty = build_request(
                profile,
                profile.transaction("stock"),
                [],
                user=client.user,
                verification_code=self.settings.verification_code,
                institution_code=client.institution_code,
            )
            reply = parse_reply(profile, client.call(empty))
        except CdybJxcError as err:
            return False, REDACTOR.text(str(err))
        except Exception as err:  # test_connection reports, never raises (and shows no 验证码)
            return False, REDACTOR.text(f"{type(err).__name__}: {err}")
        if reply.category == profile.category("count_mismatch"):
            return (
                True,
                f"connected to {self.settings.endpoint} as {client.user} for {client.institution_code}",
            )
        return False, REDACTOR.text(reply.retmsg) or f"unexpected reply retcode {reply.retcode}"
