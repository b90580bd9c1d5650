"""The simulator's SOAP transport: envelopes, charsets, SOAP Faults, injected faults and concurrency."""

from __future__ import annotations

import threading

import pytest
import requests
import zeep
from lxml import etree

from cdyb_jxc.exceptions import CodecError
from cdyb_jxc.simulator.faults import FaultPlan, FaultSpecError
from cdyb_jxc.simulator.server import SOAP_ENV
from cdyb_jxc.wire.codec import SUCCESS, build_request, parse_reply
from tests.conftest import INSTITUTION, SECRET, USER, outbound_row

NS = "http://webservice.sjcj.cdyb/"


def _request(profile, rows) -> str:
    return build_request(
        profile,
        profile.transaction("outbound"),
        rows,
        user=USER,
        verification_code=SECRET,
        institution_code=INSTITUTION,
    )


def _envelope(input_xml: str, *, qualified: bool = False, operation: str = "callBusiness") -> str:
    child = "<ns:inputXml>" if qualified else "<inputXml>"
    end = "</ns:inputXml>" if qualified else "</inputXml>"
    return (
        f'<soapenv:Envelope xmlns:soapenv="{SOAP_ENV}" xmlns:ns="{NS}"><soapenv:Body>'
        f"<ns:{operation}>{child}{escape(input_xml)}{end}</ns:{operation}></soapenv:Body></soapenv:Envelope>"
    )


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _return_text(body: bytes) -> str:
    root = etree.fromstring(body)
    return root.find(f".//{{{NS}}}callBusinessResponse/return").text


def test_wsdl_address_follows_the_request_host(simulator):
    resp = requests.get(f"{simulator.url}?wsdl", headers={"Host": "centre.example:8080"}, timeout=5)
    assert resp.status_code == 200
    assert 'location="http://centre.example:8080/services/SjcjService"' in resp.text


def test_qualified_input_xml_is_accepted(simulator, profile, store):
    body = _envelope(_request(profile, [outbound_row("Q1")]), qualified=True)
    resp = requests.post(
        simulator.url, data=body.encode(), headers={"Content-Type": "text/xml; charset=UTF-8"}
    )
    assert parse_reply(profile, _return_text(resp.content)).status == SUCCESS


def test_gbk_request_envelope_is_accepted_by_http_charset(simulator, profile, store):
    body = '<?xml version="1.0" encoding="GBK"?>' + _envelope(_request(profile, [outbound_row("G1")]))
    resp = requests.post(
        simulator.url, data=body.encode("gbk"), headers={"Content-Type": "text/xml; charset=GBK"}
    )
    assert parse_reply(profile, _return_text(resp.content)).status == SUCCESS
    assert next(store.accepted_rows())["hospital_item_name"] == "阿莫西林胶囊1号"


def test_gbk_request_envelope_is_accepted_by_xml_declaration(simulator, profile, store):
    body = '<?xml version="1.0" encoding="GBK"?>' + _envelope(_request(profile, [outbound_row("G2")]))
    resp = requests.post(simulator.url, data=body.encode("gbk"), headers={"Content-Type": "text/xml"})
    assert parse_reply(profile, _return_text(resp.content)).status == SUCCESS


def test_malformed_envelope_gets_http_500_soap_fault(simulator):
    resp = requests.post(simulator.url, data=b"<soapenv:Envelope", headers={"Content-Type": "text/xml"})
    assert resp.status_code == 500
    assert b"faultstring" in resp.content


def test_unknown_operation_gets_http_500_soap_fault(simulator, profile):
    body = _envelope(_request(profile, [outbound_row("U1")]), operation="deleteEverything")
    resp = requests.post(simulator.url, data=body.encode(), headers={"Content-Type": "text/xml"})
    assert resp.status_code == 500
    assert b"Unknown operation" in resp.content


def _post(simulator, profile, serial: str) -> requests.Response:
    body = _envelope(_request(profile, [outbound_row(serial)]))
    return requests.post(simulator.url, data=body.encode(), headers={"Content-Type": "text/xml"}, timeout=10)


def test_drop_before_store_loses_the_reply_and_stores_nothing(simulator, profile, store):
    simulator.set_faults("drop_before_store")
    with pytest.raises(requests.ConnectionError):
        _post(simulator, profile, "D1")
    assert store.count_rows() == 0


def test_drop_after_store_loses_the_reply_but_stores_the_rows(simulator, profile, store):
    simulator.set_faults("drop_after_store=1x1")
    with pytest.raises(requests.ConnectionError):
        _post(simulator, profile, "D2")
    assert store.count_rows() == 1
    # the fault fired once; the same batch sent again is now answered as a duplicate
    reply = parse_reply(profile, _return_text(_post(simulator, profile, "D2").content))
    assert reply.failures[0].category == "数据重复上传"


def test_soap_fault_and_html_500_store_nothing(simulator, profile, store):
    simulator.set_faults("soap_fault")
    resp = _post(simulator, profile, "F1")
    assert resp.status_code == 500
    assert b"Fault" in resp.content
    simulator.set_faults("html_500")
    resp = _post(simulator, profile, "F2")
    assert resp.status_code == 500
    assert resp.headers["Content-Type"].startswith("text/html")
    assert store.count_rows() == 0


def test_empty_200_stores_rows_and_returns_nothing(simulator, profile, store):
    simulator.set_faults("empty_200")
    resp = _post(simulator, profile, "E1")
    assert resp.status_code == 200
    assert resp.content == b""
    assert store.count_rows() == 1


def test_malformed_inner_and_missing_output_replies_are_unreadable(simulator, profile, store):
    simulator.set_faults("malformed_inner")
    with pytest.raises(CodecError):
        parse_reply(profile, _return_text(_post(simulator, profile, "M1").content))
    simulator.set_faults("missing_output")
    with pytest.raises(CodecError, match="no <output> node"):
        parse_reply(profile, _return_text(_post(simulator, profile, "M2").content))
    assert store.count_rows() == 2


def test_gbk_reply_envelope_is_read_by_zeep(simulator, profile, store):
    simulator.set_faults("gbk_envelope")
    resp = _post(simulator, profile, "K1")
    assert resp.headers["Content-Type"] == "text/xml; charset=GBK"
    assert resp.content.startswith(b"<?xml version='1.0' encoding='GBK'?>")
    client = zeep.Client(f"{simulator.url}?wsdl")
    reply = parse_reply(
        profile,
        client.service.callBusiness(
            inputXml=_request(profile, [outbound_row("K2", hospital_item_name="头孢克肟")])
        ),
    )
    assert reply.status == SUCCESS
    names = {r["serial_no"]: r["hospital_item_name"] for r in store.accepted_rows()}
    assert names["K2"] == "头孢克肟"


def test_fault_plan_is_deterministic_by_seed():
    spec = "drop_before_store=0.2,drop_after_store=0.2,soap_fault=0.1,empty_200=0.1,latency=0-0.01"
    first = [FaultPlan(spec, seed=7).next_call() for _ in range(1)]
    a, b, c = FaultPlan(spec, seed=7), FaultPlan(spec, seed=7), FaultPlan(spec, seed=8)
    seq_a = [a.next_call() for _ in range(200)]
    assert seq_a == [b.next_call() for _ in range(200)]
    assert seq_a != [c.next_call() for _ in range(200)]
    assert seq_a[0] == first[0]
    fired = {name for _, name in seq_a if name}
    assert {"drop_before_store", "drop_after_store", "soap_fault", "empty_200"} <= fired


def test_fault_count_caps_how_often_a_fault_fires():
    plan = FaultPlan("html_500=1x2", seed=1)
    assert [plan.next_call()[1] for _ in range(4)] == ["html_500", "html_500", None, None]


@pytest.mark.parametrize("spec", ["bogus", "latency=abc", "soap_fault=2", "empty_200=0.5xz"])
def test_bad_fault_spec_names_the_item(spec):
    with pytest.raises(FaultSpecError, match="fault item"):
        FaultPlan(spec)


def test_faults_can_be_switched_over_http_from_loopback(simulator, profile, store):
    resp = requests.post(
        simulator.url.replace("/services/SjcjService", "/admin/faults"), json={"spec": "html_500"}
    )
    assert resp.status_code == 200
    assert _post(simulator, profile, "S1").status_code == 500
    stats = requests.get(simulator.url.replace("/services/SjcjService", "/admin/stats"), timeout=5).json()
    assert stats["faults"]["fired"]["html_500"] == 1


def test_concurrent_clients_never_get_one_serial_accepted_twice(simulator, profile, store):
    """Eight threads race to send overlapping batches; each 流水号 ends stored exactly once."""
    accepted: list[str] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker(offset: int) -> None:
        try:
            session = requests.Session()
            for start in range(0, 200, 50):
                rows = [outbound_row(f"C{(start + offset * 10 + i) % 300:04d}") for i in range(50)]
                body = _envelope(_request(profile, rows)).encode()
                resp = session.post(
                    simulator.url, data=body, headers={"Content-Type": "text/xml"}, timeout=30
                )
                reply = parse_reply(profile, _return_text(resp.content))
                failed = {f.serial_no for f in reply.failures}
                assert all(f.category == "数据重复上传" for f in reply.failures)
                with lock:
                    accepted.extend(r["serial_no"] for r in rows if r["serial_no"] not in failed)
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    stored = [r["serial_no"] for r in store.accepted_rows()]
    assert len(stored) == len(set(stored))
    assert sorted(accepted) == sorted(stored)
