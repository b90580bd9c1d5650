"""Hook for the Chengdu insurance centre's data-collection WebService, and the Airflow lookups
:mod:`cdyb_jxc.config` is given: a ledger named by a connection, a centre connection's extras.

The hook reads the connection from Airflow and hands it to a :class:`~cdyb_jxc.upload.session.CentreSession`,
which does the rest; the CLI builds the same session straight from ``AIRFLOW_CONN_<ID>`` when it can.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException

from cdyb_jxc.config import CENTRE_CONN_TYPE, DEFAULT_CONN_ID, ConnectionFields, resolve_ledger_url
from cdyb_jxc.exceptions import ConnectionConfigError
from cdyb_jxc.upload.session import CentreSession

if TYPE_CHECKING:
    from sqlalchemy import URL

    from cdyb_jxc.ledger import Ledger
    from cdyb_jxc.upload.engine import Uploader
    from cdyb_jxc.wire.client import CentreClient, Exchange
    from cdyb_jxc.wire.connection import CentreSettings
    from cdyb_jxc.wire.profile import Profile


# Airflow's own CLI sets it so: "server" searches the metadata database as well (airflow connections get)
_PROCESS_CONTEXT = "_AIRFLOW_PROCESS_CONTEXT"


class CdybJxcHook(BaseHook):
    """Sends batches of one transaction to the centre and returns typed replies.

    :param cdyb_jxc_conn_id: connection of type ``cdyb_jxc``: host = endpoint URL, login = 交易访问用户,
        password = 交易访问验证码, extras ``institution_code``, ``environment`` and optional ``profile``,
        ``timeout``, ``batch_limit``, ``verify``
    :param profile_path: interface profile overriding the connection's ``profile`` extra
    :param institution_code: the 定点机构编码 the connection must be for (a deployment file's); used when
        the connection names none
    """

    conn_name_attr = "cdyb_jxc_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = CENTRE_CONN_TYPE
    hook_name = "成都医保进销存 (cdyb-jxc)"

    def __init__(
        self,
        cdyb_jxc_conn_id: str = default_conn_name,
        *,
        profile_path: str | None = None,
        institution_code: str | None = None,
    ) -> None:
        super().__init__()
        self.cdyb_jxc_conn_id = cdyb_jxc_conn_id
        self.profile_path = profile_path
        self.institution_code = institution_code
        self.session = CentreSession(
            cdyb_jxc_conn_id,
            lambda: connection_fields(cdyb_jxc_conn_id),
            profile_path=profile_path,
            institution_code=institution_code,
        )

    @property
    def settings(self) -> CentreSettings:
        return self.session.settings

    @property
    def profile(self) -> Profile:
        return self.session.profile

    @property
    def client(self) -> CentreClient:
        return self.session.client

    def get_conn(self) -> CentreClient:
        return self.session.client

    @property
    def batch_limit(self) -> int:
        return self.session.batch_limit

    def send(self, txn_key: str, rows: Sequence[Mapping[str, str | None]]) -> Exchange:
        """Send one batch (wire rows of transaction ``txn_key``) and return the exchange."""
        return self.session.send(txn_key, rows)

    def uploader(
        self, txn_key: str, ledger: Ledger, *, mapping_file: str | None = None, **kwargs: Any
    ) -> Uploader:
        """An :class:`~cdyb_jxc.upload.engine.Uploader` sending to this hook's centre.

        Operators and the CLI share this path (:meth:`CentreSession.uploader`).

        :param txn_key: ``init``, ``inbound``, ``outbound`` or ``stock``
        :param ledger: the ledger
        :param mapping_file: CSV copy of the 对码 registry for hold-back
        :param kwargs: further :class:`~cdyb_jxc.upload.engine.Uploader` arguments
        """
        return self.session.uploader(txn_key, ledger, mapping_file=mapping_file, **kwargs)

    def close(self) -> None:
        self.session.close()

    def test_connection(self) -> tuple[bool, str]:
        """Check endpoint and credentials with a call the centre must refuse for having no rows
        (:meth:`CentreSession.test_connection`)."""
        return self.session.test_connection()


def command_line_hook(conn_id: str) -> CdybJxcHook:
    """The hook of a command run where Airflow is installed (``cdyb-jxc upload``), its connection read.

    Read as ``airflow connections get`` reads one, in a server context, so that Airflow's metadata database is
    searched too (a plain process searches only the environment and a secrets backend).

    :param conn_id: the centre connection
    :raises ConnectionConfigError: no such connection, or one whose fields are not valid
    """
    hook = CdybJxcHook(conn_id)
    given = os.environ.get(_PROCESS_CONTEXT)
    os.environ.setdefault(_PROCESS_CONTEXT, "server")
    try:
        hook.settings  # noqa: B018 - the lookup, made here while the context is set
    finally:
        if given is None:
            os.environ.pop(_PROCESS_CONTEXT, None)
    return hook


def connection_fields(conn_id: str) -> ConnectionFields:
    """The fields of Airflow connection ``conn_id`` (see :func:`defined_connection`).

    :param conn_id: the connection
    """
    return fields_of(defined_connection(conn_id))


def fields_of(conn: Any) -> ConnectionFields:
    """The fields of an Airflow ``Connection``, as the domain reads them.

    :param conn: the connection
    """
    return ConnectionFields(
        conn_type=conn.conn_type,
        host=conn.host,
        schema=conn.schema,
        login=conn.login,
        password=conn.password,
        port=conn.port,
        extra=conn.extra_dejson,
    )


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
