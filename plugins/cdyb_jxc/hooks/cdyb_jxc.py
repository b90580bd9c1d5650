"""Hook for the Chengdu insurance centre's data-collection WebService, and the Airflow lookups
:mod:`cdyb_jxc.config` is given: a ledger named by a connection, a centre connection's extras."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException

from cdyb_jxc.config import CENTRE_CONN_TYPE, DEFAULT_CONN_ID, resolve_ledger_url, resolve_profile
from cdyb_jxc.exceptions import CdybJxcError, ConnectionConfigError
from cdyb_jxc.wire.connection import CentreSettings, build_settings

if TYPE_CHECKING:
    from sqlalchemy import URL

    from cdyb_jxc.ledger import Ledger
    from cdyb_jxc.upload.engine import Uploader
    from cdyb_jxc.wire.client import CentreClient, Exchange
    from cdyb_jxc.wire.profile import Profile


class CdybJxcHook(BaseHook):
    """Sends batches of one transaction to the centre and returns typed replies.

    :param cdyb_jxc_conn_id: connection of type ``cdyb_jxc``: host = endpoint URL, login = 交易访问用户,
        password = 交易访问验证码, extras ``institution_code``, ``environment`` and optional ``profile``,
        ``timeout``, ``batch_limit``, ``verify``
    :param profile_path: interface profile overriding the connection's ``profile`` extra
    """

    conn_name_attr = "cdyb_jxc_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = CENTRE_CONN_TYPE
    hook_name = "成都医保进销存 (cdyb-jxc)"

    def __init__(self, cdyb_jxc_conn_id: str = default_conn_name, *, profile_path: str | None = None) -> None:
        super().__init__()
        self.cdyb_jxc_conn_id = cdyb_jxc_conn_id
        self.profile_path = profile_path

    @cached_property
    def settings(self) -> CentreSettings:
        from cdyb_jxc.safety.redaction import register_secret

        conn = defined_connection(self.cdyb_jxc_conn_id)
        settings = build_settings(
            conn_id=self.cdyb_jxc_conn_id,
            host=conn.host,
            login=conn.login,
            password=conn.password,
            extra=conn.extra_dejson,
            conn_type=self.conn_type,
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

    def get_conn(self) -> CentreClient:
        return self.client

    @property
    def batch_limit(self) -> int:
        return min(self.settings.batch_limit or self.profile.batch_limit, self.profile.batch_limit)

    def send(self, txn_key: str, rows: Sequence[Mapping[str, str | None]]) -> Exchange:
        """Send one batch (wire rows of transaction ``txn_key``) and return the exchange."""
        self.log.debug(
            "sending %d %s rows to %s",
            len(rows),
            self.profile.transaction(txn_key).code,
            self.settings.endpoint,
        )
        return self.client.send(txn_key, rows)

    def uploader(
        self, txn_key: str, ledger: Ledger, *, mapping_file: str | None = None, **kwargs: Any
    ) -> Uploader:
        """An :class:`~cdyb_jxc.upload.engine.Uploader` sending through this hook.

        Operators and the CLI share this path.

        :param txn_key: ``init``, ``inbound``, ``outbound`` or ``stock``
        :param ledger: the ledger
        :param mapping_file: CSV copy of the 对码 registry for hold-back
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
            **kwargs,
        )

    def close(self) -> None:
        if "client" in self.__dict__:
            self.client.close()

    def test_connection(self) -> tuple[bool, str]:
        """Check endpoint and credentials with a call the centre must refuse for having no rows.

        The centre checks credentials before the row count, so 【明细条数不符】 proves the
        credentials work, and nothing can be stored.
        """
        from cdyb_jxc.safety.redaction import REDACTOR
        from cdyb_jxc.wire.codec import build_request, parse_reply

        try:
            profile, client = self.profile, self.client
            txn = profile.transaction("stock")
            empty = build_request(
                profile,
                txn,
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


def defined_connection(conn_id: str) -> Any:
    """Airflow connection ``conn_id``; a missing one is a configuration error (not retried; CLI exit 2).

    :param conn_id: the connection
    :raises ConnectionConfigError: no connection of that id in any of Airflow's connection sources
    """
    try:
        return BaseHook.get_connection(conn_id)
    except AirflowNotFoundException as err:
        env = "AIRFLOW_CONN_" + conn_id.upper()
        raise ConnectionConfigError(
            f"connection {conn_id!r} is not defined: add it in Airflow (UI, `airflow connections add`, "
            f"a secrets backend) or as the environment variable {env}"
        ) from err


def connection_url(conn_id: str) -> URL:
    """The database URL of Airflow connection ``conn_id`` (a ledger), password kept.

    :param conn_id: a connection whose hook speaks SQL (e.g. ``postgres``)
    """
    from sqlalchemy import make_url

    hook = defined_connection(conn_id).get_hook()
    return make_url(getattr(hook, "sqlalchemy_url", None) or hook.get_uri())


def connection_extra(conn_id: str) -> dict[str, Any] | None:
    """The extras of Airflow connection ``conn_id``, or None when there is no such connection.

    :param conn_id: the connection
    """
    try:
        return BaseHook.get_connection(conn_id).extra_dejson
    except AirflowNotFoundException:
        return None


def make_ledger(ledger_url: str | None = None, ledger_conn_id: str | None = None) -> Ledger:
    """The ledger from an Airflow connection (e.g. PostgreSQL), a SQLAlchemy URL, or the default.

    :param ledger_url: a SQLAlchemy URL (default: ``$CDYB_JXC_LEDGER_URL``, else SQLite in ``$AIRFLOW_HOME``)
    :param ledger_conn_id: an Airflow connection instead of ``ledger_url``
    """
    from sqlalchemy import create_engine

    from cdyb_jxc.ledger import Ledger

    url = resolve_ledger_url(ledger_url, ledger_conn_id, get_connection=connection_url)
    if ledger_conn_id:
        # a connection's database is opened as the connection spells it (a SQLite path is not resolved)
        return Ledger(engine=create_engine(url, pool_pre_ping=True))
    return Ledger(url)
