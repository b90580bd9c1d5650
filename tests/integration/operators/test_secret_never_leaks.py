"""The 交易访问验证码 is in no log, XCom, audit row, report or exception after runs on every path."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import pandas as pd
from sqlalchemy import select

from cdyb_jxc.ledger import Ledger
from cdyb_jxc.ledger.schema import upload_batch, upload_row
from cdyb_jxc.ui import queries, rejects
from cdyb_jxc.upload.reports import write_reject_report
from tests.conftest import AIRFLOW_HOME, INSTITUTION, SECRET, USER, outbound_row
from tests.dag_factory import upload_task
from tests.integration.operators.conftest import write_csv

WRONG = "Wr0ng-Verification-Code"


def test_verification_code_is_nowhere(
    run_dag, centre_conn, simulator, tmp_path, monkeypatch, caplog, capfd, store
):
    caplog.set_level(logging.DEBUG)
    logging.getLogger("zeep").setLevel(logging.DEBUG)
    monkeypatch.setenv(
        "AIRFLOW_CONN_WRONG",
        json.dumps(
            {
                "conn_type": "cdyb_jxc",
                "host": simulator.url,
                "login": USER,
                "password": WRONG,
                "extra": {"institution_code": INSTITUTION},
            }
        ),
    )
    simulator.set_faults("drop_after_store=1x1,malformed_inner=1x1")
    good = write_csv(
        tmp_path / "good.csv",
        [outbound_row(f"CK{i}") for i in range(5)]
        + [outbound_row("BAD", quantity="0"), outbound_row("GBK", hospital_item_name="䓬")],
    )
    other = write_csv(tmp_path / "other.csv", [outbound_row("ZZ1")])
    ledger_url = f"sqlite:///{tmp_path / 'ledger.db'}"
    dr = run_dag(
        upload_task(
            "outbound",
            task_id="good",
            source_file=good,
            ledger_url=ledger_url,
            resend_attempts=1,
            resend_backoff=0,
            retries=1,
            retry_delay=timedelta(0),
        ),
        upload_task(
            "outbound", task_id="wrong", cdyb_jxc_conn_id="wrong", source_file=other, ledger_url=ledger_url
        ),
    )
    tis = {ti.task_id: ti for ti in dr.get_task_instances()}
    assert tis["good"].state == "success"
    assert tis["wrong"].state == "failed"
    assert simulator.faults.stats()["fired"]["drop_after_store"] == 1

    haystacks: list[str] = []
    captured = capfd.readouterr()
    haystacks += [captured.out, captured.err]
    haystacks += [r.getMessage() for r in caplog.records]
    haystacks += [str(r.exc_info[1]) for r in caplog.records if r.exc_info]
    haystacks += [p.read_text(errors="replace") for p in AIRFLOW_HOME.rglob("*.log")]
    haystacks += [json.dumps(ti.xcom_pull(task_ids=ti.task_id), ensure_ascii=False) for ti in tis.values()]
    led = Ledger(ledger_url)
    with led.engine.connect() as conn:
        haystacks += [repr(tuple(r)) for r in conn.execute(select(upload_row))]
        haystacks += [repr(tuple(r)) for r in conn.execute(select(upload_batch))]
    haystacks += [json.dumps(b, default=str, ensure_ascii=False) for b in led.batches()]
    # the reject report (CSV and Excel) and what the upload monitor serves
    report = write_reject_report(led, INSTITUTION, ["2026-11-20"], tmp_path / "reports", "rejects")
    assert report.rows >= 2
    haystacks.append(report.csv_path.read_text(encoding="utf-8-sig"))
    haystacks.append(pd.read_excel(report.excel_path).to_csv())
    haystacks += [
        json.dumps(answer, default=str, ensure_ascii=False)
        for answer in (
            queries.summary(led.engine),
            rejects.rejects(led.engine),
            queries.queues(led.engine),
            queries.run_view(led.engine, dr.dag_id, dr.run_id),
        )
    ]
    assert any("<jyfwyzm>******</jyfwyzm>" in h for h in haystacks)  # the audit really holds the requests
    assert any("用户名或验证码错误" in h for h in haystacks)  # the rejected call really happened
    assert any("出库数量(akc226)必须大于0" in h for h in haystacks)  # the report and monitor are scanned
    assert any(
        "uploading JXC003 药品出库信息上传 from" in h for h in haystacks
    )  # task logs are really scanned
    for text in haystacks:
        assert SECRET not in text
        assert WRONG not in text


def test_zeep_envelope_log_turned_on_by_a_logging_config_is_redacted(profile, simulator, caplog):
    """zeep writes whole envelopes at DEBUG on ``zeep.transports``; a deployment's logging config may turn
    that on. The 验证码 is cut out of every record (plain and XML-escaped inside the envelope)."""
    from cdyb_jxc.wire.client import CentreClient

    transports = logging.getLogger("zeep.transports")
    transports.setLevel(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="zeep.transports")
    secret = "S3<cr&t>\r-验证码"
    client = CentreClient(
        profile, endpoint=simulator.url, user=USER, verification_code=secret, institution_code=INSTITUTION
    )
    try:
        client.send("outbound", [outbound_row("ZL1")])
    finally:
        transports.setLevel(logging.INFO)
        client.close()
    posts = [r.getMessage() for r in caplog.records if r.getMessage().startswith("HTTP Post to")]
    assert posts, "zeep's envelope log was not on"
    assert "&lt;jyfwyzm&gt;******&lt;/jyfwyzm&gt;" in posts[0]
    for text in posts:
        assert "S3" not in text
