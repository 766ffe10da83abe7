"""Fault injection: rules a test arms, matched against requests in arrival order.

A rule matches on node, op and path prefix. Each matching request consumes one of its ``times``
under a lock, so ``times=N`` hits exactly the next N matching requests, whatever the threads do.
The first armed rule that matches wins; a request is hit by at most one fault.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

KINDS = ("refuse", "status", "cut_response", "cut_upload", "stall", "trickle", "endless")
_PARAMS = {
    "refuse": set(),
    "status": {"code", "exception", "message", "java_class"},
    "cut_response": {"after"},
    "cut_upload": {"after"},
    "stall": {"seconds"},
    "trickle": {"size", "interval"},
    "endless": set(),
}


@dataclass(eq=False)
class Fault:
    """One armed fault. ``hits`` counts the requests it has fired on."""

    kind: str
    op: str | None = None
    path_prefix: str | None = None
    node: str | None = None
    times: int | None = 1  # None: every matching request, until cleared
    params: dict = field(default_factory=dict)
    hits: int = 0
    skip: int = 0  # let this many matching requests through first (to land a fault midway)
    skipped: int = 0

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.hits >= self.times

    def matches(self, node: str, op: str, path: str, uploading: bool) -> bool:
        if self.kind == "cut_upload" and not uploading:
            return False  # only a request with a CREATE/APPEND body can be cut short
        return ((self.node is None or self.node == node)
                and (self.op is None or self.op == op)
                and (self.path_prefix is None or path.startswith(self.path_prefix)))


class Faults:
    """The armed faults of one server."""

    def __init__(self):
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, kind: str, *, op: str | None, path_prefix: str | None, node: str | None,
            times: int | None, params: dict, skip: int = 0) -> Fault:
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {KINDS}")
        unknown = set(params) - _PARAMS[kind]
        if unknown:
            raise ValueError(f"fault {kind!r} takes no parameter(s) {sorted(unknown)}")
        if node not in (None, "namenode", "datanode"):
            raise ValueError(f"node must be 'namenode', 'datanode' or None, not {node!r}")
        if times is not None and times < 1:
            raise ValueError("times must be a positive count or None")
        if skip < 0:
            raise ValueError("skip must be >= 0")
        fault = Fault(kind, op.upper() if op else None, path_prefix, node, times, dict(params), skip=skip)
        with self._lock:
            self._faults.append(fault)
        return fault

    def take(self, node: str, op: str, path: str, uploading: bool) -> Fault | None:
        """Consume and return the first armed fault matching this request, if any."""
        with self._lock:
            for fault in self._faults:
                if not fault.exhausted and fault.matches(node, op, path, uploading):
                    if fault.skipped < fault.skip:
                        fault.skipped += 1
                        continue
                    fault.hits += 1
                    return fault
        return None

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
