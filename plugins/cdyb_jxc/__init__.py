"""cdyb-jxc: upload 药品进销存 data to the Chengdu medical-insurance data-collection WebService."""

__version__ = "0.1.0"
