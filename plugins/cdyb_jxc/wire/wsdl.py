"""The WSDL, rendered from the packaged template and the interface profile.

zeep reads it from memory: no file is written, so no other local user can plant or swap the WSDL the client
trusts (the rendered text used to sit at a predictable path in the world-writable temp directory).
"""

from __future__ import annotations

import io
from importlib import resources
from string import Template
from xml.sax.saxutils import escape

from cdyb_jxc.wire.profile import Profile

TEMPLATE = "data/SjcjService.wsdl.tmpl"
DEFAULT_ADDRESS = "http://localhost/services/SjcjService"


def render_wsdl(profile: Profile, address: str) -> str:
    """The WSDL text for ``profile`` with ``soap:address`` set to ``address``."""
    template = Template(resources.files("cdyb_jxc").joinpath(TEMPLATE).read_text(encoding="utf-8"))
    service = profile.service
    keys = ("service_name", "namespace", "operation", "input_part", "output_part", "soap_action", "port_name")
    values = {k: _attribute(str(service[k])) for k in keys}
    values["address"] = _attribute(address)
    return template.substitute(values)


def wsdl_document(profile: Profile, address: str = DEFAULT_ADDRESS) -> io.BytesIO:
    """The rendered WSDL as an in-memory document for ``zeep.Client`` (which reads file-like objects)."""
    return io.BytesIO(render_wsdl(profile, address).encode("utf-8"))


def _attribute(value: str) -> str:
    """``value`` escaped for an XML attribute in either quotes (quoteattr picks its own quotes instead)."""
    return escape(value, {'"': "&quot;", "'": "&apos;", "\n": "&#10;", "\r": "&#13;", "\t": "&#9;"})
