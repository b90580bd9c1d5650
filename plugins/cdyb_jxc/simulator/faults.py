"""Switchable, seeded faults of the simulator.

A fault spec is a comma-separated list of items:

* ``latency=SECONDS`` or ``latency=MIN-MAX`` — added delay on every call (uniform between MIN and MAX);
* ``NAME`` or ``NAME=PROBABILITY`` — the fault happens on a call with that probability (default 1);
* an optional ``xCOUNT`` suffix caps how many times it happens: ``drop_after_store=1x1`` fires once.

Names (:data:`FAULTS`), checked in this order, first hit wins:

``drop_before_store``  connection closed after reading the request; nothing stored.
``drop_after_store``   rows stored, then the connection is closed without a reply.
``soap_fault``         HTTP 500 with a SOAP Fault; nothing stored.
``html_500``           HTTP 500 with an HTML error page; nothing stored.
``empty_200``          rows stored, HTTP 200 with an empty body.
``malformed_inner``    rows stored, the ``return`` string is not well-formed XML.
``missing_output``     rows stored, the ``return`` string has no ``output`` node.
``no_dataset``         rows stored, the ``return`` keeps retcode and counts but drops ``dataset`` (SPEC allows
                       that): a partial reply no longer says which rows failed.
``gbk_envelope``       normal processing; the reply envelope is encoded in GBK.

The same seed and the same sequence of calls give the same faults.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass

FAULTS = (
    "drop_before_store",
    "drop_after_store",
    "soap_fault",
    "html_500",
    "empty_200",
    "malformed_inner",
    "missing_output",
    "no_dataset",
    "gbk_envelope",
)
STORING_FAULTS = frozenset(
    {"drop_after_store", "empty_200", "malformed_inner", "missing_output", "no_dataset", "gbk_envelope"}
)


class FaultSpecError(ValueError):
    """The fault spec cannot be read; the message names the bad item."""


@dataclass
class _Fault:
    probability: float
    remaining: int | None


class FaultPlan:
    """Decides, call by call, which fault (if any) applies.

    :param spec: the fault spec (see module doc); empty for none
    :param seed: seed of the random sequence
    """

    def __init__(self, spec: str = "", seed: int = 0) -> None:
        self.spec = spec.strip()
        self.seed = seed
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.latency: tuple[float, float] = (0.0, 0.0)
        self.faults: dict[str, _Fault] = {}
        self.fired: dict[str, int] = dict.fromkeys(FAULTS, 0)
        self.calls = 0
        for item in filter(None, (p.strip() for p in self.spec.split(","))):
            self._add(item)

    def _add(self, item: str) -> None:
        name, _, value = item.partition("=")
        name = name.strip()
        if name == "latency":
            try:
                low, _, high = value.partition("-")
                lo = float(low)
                hi = float(high) if high else lo
            except ValueError as err:
                raise FaultSpecError(f"fault item {item!r}: latency takes SECONDS or MIN-MAX") from err
            if lo < 0 or hi < lo:
                raise FaultSpecError(f"fault item {item!r}: latency range is invalid")
            self.latency = (lo, hi)
            return
        if name not in FAULTS:
            raise FaultSpecError(
                f"fault item {item!r}: unknown fault {name!r} (known: latency, {', '.join(FAULTS)})"
            )
        prob_text, _, count_text = (value or "1").partition("x")
        try:
            probability = float(prob_text)
            remaining = int(count_text) if count_text else None
        except ValueError as err:
            raise FaultSpecError(f"fault item {item!r}: expected NAME=PROBABILITY[xCOUNT]") from err
        if not 0 <= probability <= 1 or (remaining is not None and remaining < 0):
            raise FaultSpecError(f"fault item {item!r}: probability must be within 0..1, count >= 0")
        self.faults[name] = _Fault(probability, remaining)

    def next_call(self) -> tuple[float, str | None]:
        """Roll for one call: (added latency in seconds, fault name or ``None``)."""
        with self._lock:
            self.calls += 1
            lo, hi = self.latency
            delay = lo if hi == lo else self._rng.uniform(lo, hi)
            chosen = None
            for name in FAULTS:
                fault = self.faults.get(name)
                if fault is None:
                    continue
                roll = self._rng.random()
                if (
                    chosen is None
                    and (fault.remaining is None or fault.remaining > 0)
                    and roll < fault.probability
                ):
                    chosen = name
                    if fault.remaining is not None:
                        fault.remaining -= 1
            if chosen:
                self.fired[chosen] += 1
            return delay, chosen

    def stats(self) -> dict[str, object]:
        with self._lock:
            return {"spec": self.spec, "seed": self.seed, "calls": self.calls, "fired": dict(self.fired)}
