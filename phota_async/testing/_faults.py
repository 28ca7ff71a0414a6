"""Scriptable faults: what the next N matching requests suffer instead of a clean answer."""

from __future__ import annotations

import fnmatch
import threading
from dataclasses import dataclass, field
from typing import Any, Literal

DropWhen = Literal["before", "after"]


@dataclass
class Fault:
    """One scripted fault for requests whose path matches ``path``: a glob relative to
    ``/v1/phota`` for API routes (``"/enhance"``), or the full path for the emulator's own
    routes (``"/_emulator/outputs/*"`` for downloads, ``"/_emulator/files/*"``).

    Exactly one effect applies, chosen by which field is set:

    - ``status``: answer that status (with ``retry_after`` seconds and/or ``body``) without
      processing the request.
    - ``delay``: wait that many seconds on the emulator's clock, then process the request
      normally (a stopping emulator cuts the wait short).
    - ``drop="before"``: close the connection before reading the body; nothing is processed.
    - ``drop="after"``: read the body and process the request (charging for it), then close the
      connection without answering, so the client cannot know the outcome.
    - ``truncate``: process, then send only half of the response body before closing.
    - ``malformed``: process, then answer 200 with a body that is not JSON.
    - ``content_type``: process, then send the real body labelled with this content type.
    """

    path: str
    times: int = 1
    method: str | None = None
    status: int | None = None
    retry_after: float | None = None
    body: bytes | str | dict[str, Any] | None = None
    delay: float | None = None
    drop: DropWhen | None = None
    truncate: bool = False
    malformed: bool = False
    content_type: str | None = None
    hits: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        effects = [
            self.status is not None,
            self.delay is not None,
            self.drop is not None,
            self.truncate,
            self.malformed,
            self.content_type is not None,
        ]
        if sum(effects) != 1:
            raise ValueError(
                "a Fault needs exactly one of status, delay, drop, truncate, malformed, "
                "content_type"
            )
        if self.drop not in (None, "before", "after"):
            raise ValueError("drop must be 'before' or 'after'")
        if self.times < 1:
            raise ValueError("times must be at least 1")

    @property
    def processes(self) -> bool:
        """Whether the request is still processed (and charged) under this fault."""
        return self.status is None and self.drop != "before"

    def matches(self, method: str, path: str) -> bool:
        """Tell whether a request is subject to this fault."""
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return fnmatch.fnmatchcase(path, self.path)


class FaultBook:
    """The scripted faults, consumed in the order they were added. Thread-safe."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def take(self, method: str, path: str) -> Fault | None:
        """Consume one use of the first fault matching this request, if any."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    fault.hits += 1
                    if fault.hits >= fault.times:
                        self._faults.remove(fault)
                    return fault
        return None

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)
