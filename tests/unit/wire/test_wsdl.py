"""The WSDL rendered in memory from the packaged template and the interface profile."""

from __future__ import annotations

import dataclasses

from lxml import etree

from cdyb_jxc.wire.wsdl import DEFAULT_ADDRESS, render_wsdl, wsdl_document

WSDL = "{http://schemas.xmlsoap.org/wsdl/}"
SOAP = "{http://schemas.xmlsoap.org/wsdl/soap/}"


def test_the_wsdl_names_the_profiles_service_operation_and_parts(profile):
    root = etree.fromstring(render_wsdl(profile, "http://centre.example/services/SjcjService").encode())
    service = profile.service

    assert root.get("targetNamespace") == service["namespace"]
    assert root.find(f"{WSDL}portType/{WSDL}operation").get("name") == service["operation"]
    parts = root.findall(".//{http://www.w3.org/2001/XMLSchema}element[@type='xsd:string']")
    assert [p.get("name") for p in parts] == [service["input_part"], service["output_part"]]
    port = root.find(f"{WSDL}service/{WSDL}port")
    assert (port.get("name"), port.find(f"{SOAP}address").get("location")) == (
        service["port_name"],
        "http://centre.example/services/SjcjService",
    )


def test_profile_values_and_the_address_are_escaped_into_well_formed_xml(profile):
    changed = dataclasses.replace(profile, service={**profile.service, "soap_action": "urn:a&b<c>"})
    address = "http://centre.example/services/SjcjService?a=1&b=<2>"

    root = etree.fromstring(render_wsdl(changed, address).encode())

    assert root.find(f".//{SOAP}operation").get("soapAction") == "urn:a&b<c>"
    assert root.find(f".//{SOAP}address").get("location") == address


def test_zeep_reads_the_document_from_memory_and_finds_the_operation(profile):
    from zeep import Client

    client = Client(wsdl_document(profile))

    (port,) = client.wsdl.services[profile.service["service_name"]].ports.values()
    assert port.binding_options["address"] == DEFAULT_ADDRESS
    operation = port.binding.get(profile.service["operation"])
    assert operation.soapaction == profile.service["soap_action"]
    assert [name for name, _ in operation.input.body.type.elements] == [profile.service["input_part"]]


def test_an_address_with_either_quote_reads_back_unchanged(profile):
    for address in ('http://centre.example/s?a="1"', "http://centre.example/s?a='1'", "http://c/s?a=\"'&<>"):
        root = etree.fromstring(render_wsdl(profile, address).encode())
        location = root.find(f"{WSDL}service/{WSDL}port/{SOAP}address").get("location")
        assert location == address
