"""The WSDL, rendered from the packaged template and the interface profile."""

from __future__ import annotations

import hashlib
import tempfile
from importlib import resources
from pathlib import Path
from string import Template
from xml.sax.saxutils import quoteattr

from cdyb_jxc.profile import Profile

TEMPLATE = "data/SjcjService.wsdl.tmpl"


def render_wsdl(profile: Profile, address: str) -> str:
    """The WSDL text for ``profile`` with ``soap:address`` set to ``address``."""
    template = Template(resources.files("cdyb_jxc").joinpath(TEMPLATE).read_text(encoding="utf-8"))
    service = profile.service
    keys = ("service_name", "namespace", "operation", "input_part", "output_part", "soap_action", "port_name")
    values = {k: quoteattr(str(service[k]))[1:-1] for k in keys}
    values["address"] = quoteattr(address)[1:-1]
    return template.substitute(values)


def wsdl_file(profile: Profile, address: str = "http://localhost/services/SjcjService") -> str:
    """Write the rendered WSDL to a cache file (once per content) and return its path, for zeep."""
    text = render_wsdl(profile, address)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"cdyb_jxc_{digest}.wsdl"
    if not path.exists():
        tmp = path.with_suffix(f".{digest}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    return str(path)
