"""OpenTelemetry traces and metrics, and the only module that imports OpenTelemetry (lazily).

Theory of operation
-------------------
A client decides once, when it is created, whether it records anything (``hooks_for``): with
``telemetry=None`` (the default) it records only when the application has already imported
OpenTelemetry *and* set a tracer or meter provider; otherwise, and always with
``telemetry=False``, it gets ``OFF``, whose hooks do nothing and allocate nothing. So an
application without OpenTelemetry never imports it through the SDK, and the hot path pays a
few no-op method calls, never a ``try``/``except`` or an ``isinstance`` per call.

The send path (``_session``) and the poller (``_poll``) call the hooks of one ``Hooks``:

- ``studio(call)`` around a studio call (``phota.enhance``...) or a job submit
  (``phota.jobs.submit_enhance``...), ``call(request)`` around every ``Session.send``: one
  INTERNAL span per SDK call. A call inside another (a job submit inside ``phota.edit`` run
  ``via_job``, a poll inside a wait) opens no span of its own: its attempts join the outer one.
- ``attempt(request, number)``: one CLIENT span per HTTP attempt, after the HTTP client
  conventions (span per resend, ``http.request.resend_count``, ``error.type`` = the status code
  or the exception's class).
- ``wait(key)`` around each waiter of ``Poller.wait`` (``phota.profiles.wait_ready``,
  ``phota.jobs.wait``), with a ``phota.status_change`` event each time the poll loop sees a new
  status (``saw``). The poll loop task starts inside the first waiter's span, so its GETs are
  that span's children.

What the outer span learns from its attempts (request id, attempts, throttled answers) goes
through a context variable, so nothing is threaded through the retry layer.

Never recorded: the API key (it travels in a header, and every string from a server is
scrubbed), image bytes, query strings of signed URLs (their values become ``REDACTED``), and
prompts, unless ``Telemetry(record_prompts=True)`` or ``PHOTA_OTEL_RECORD_PROMPTS=1``.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from collections.abc import Callable, Hashable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Final, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import attrs

from ._redact import scrub
from ._version import __version__
from .errors import APIError, InvalidRequestError
from .models import Job, Profile

if TYPE_CHECKING:
    from ._budget import Prices
    from ._protocol import Request, Response, StudioCall

T = TypeVar("T")

RECORD_PROMPTS_ENV: Final = "PHOTA_OTEL_RECORD_PROMPTS"
"""The environment variable that, set to ``1``, records prompts in spans by default."""
INSTRUMENTATION: Final = "phota_async"
SCHEMA_URL: Final = "https://opentelemetry.io/schemas/1.26.0"
# Waits last from a second (a job) to half an hour (training): buckets in seconds.
WAIT_BUCKETS: Final = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600)
CALL_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
THROTTLED: Final = frozenset({429, 503})
SUBMIT_KEYS: Final = 10_000
_TRUE: Final = frozenset({"1", "true", "yes", "on"})


def _env_record_prompts() -> bool:
    return os.environ.get(RECORD_PROMPTS_ENV, "").strip().lower() in _TRUE


@attrs.frozen
class Telemetry:
    """How a ``PhotaClient`` reports to OpenTelemetry (the ``[otel]`` extra).

    Pass it as ``PhotaClient(telemetry=Telemetry(...))`` to record even when no global provider
    was set when the client was created (spans then go wherever the global providers point
    later), or to choose providers and opt into prompts.

    Attributes:
        record_prompts: put each call's prompt in its span as ``phota.prompt`` (prompts may be
            personal data: off by default; ``PHOTA_OTEL_RECORD_PROMPTS=1`` turns it on).
        tracer_provider: the ``TracerProvider`` to use; by default the global one.
        meter_provider: the ``MeterProvider`` to use; by default the global one.
    """

    record_prompts: bool = attrs.field(factory=_env_record_prompts)
    tracer_provider: Any = attrs.field(default=None, repr=False)
    meter_provider: Any = attrs.field(default=None, repr=False)


# -- the no-op hooks: what every client without telemetry calls --------------------------


class CallScope:
    """A call's span; this base records nothing."""

    __slots__ = ()

    def __enter__(self) -> CallScope:
        return self

    def __exit__(self, kind: object, error: BaseException | None, tb: object) -> None:
        return None

    def wrap(self, decode: Callable[[Response], T]) -> Callable[[Response], T]:
        """``decode``, or a decoder that also notes what it decoded (ids) on the span."""
        return decode

    def record(self, value: T) -> T:
        """Note what the call returned (ids, cost) on its span; return it."""
        return value


class AttemptScope:
    """An HTTP attempt's span; this base records nothing."""

    __slots__ = ()

    def failed(self, error: BaseException) -> None:
        """The attempt raised ``error`` before an answer came back."""

    def decoded(self, response: Response, decode: Callable[[Response], T]) -> T:
        """Record the answer, then decode it (a decoding error fails the attempt too)."""
        return decode(response)


class WaitScope:
    """A waiter's span; this base records nothing."""

    __slots__ = ()

    def saw(self, snapshot: object) -> None:
        """A poll brought ``snapshot`` (an event when its status changed)."""

    def failed(self, error: BaseException) -> None:
        """The wait raised ``error`` (timeout, a definite error, cancellation)."""

    def close(self) -> None:
        """End the span."""


NO_CALL: Final = CallScope()
NO_ATTEMPT: Final = AttemptScope()
NO_WAIT: Final = WaitScope()


class Hooks:
    """The hooks the send path and the poller call; this base (``OFF``) does nothing."""

    __slots__ = ()

    def studio(self, call: StudioCall, *, submit: bool) -> CallScope:
        """The scope of a studio call run here (``submit``: a job submit)."""
        return NO_CALL

    def call(self, request: Request) -> CallScope:
        """The scope of one ``Session.send``."""
        return NO_CALL

    def attempt(self, request: Request, number: int) -> AttemptScope:
        """The scope of attempt ``number`` (from 1) of ``request``."""
        return NO_ATTEMPT

    def wait(self, key: Hashable) -> WaitScope:
        """The scope of one waiter on ``key`` (``("job", id)`` or ``("profile", id)``)."""
        return NO_WAIT


OFF: Final = Hooks()


def hooks_for(option: Telemetry | bool | None, prices: Prices) -> Hooks:
    """The hooks of a new client: ``OFF`` unless telemetry is asked for or configured.

    Args:
        option: ``None`` (record when OpenTelemetry is imported and a provider is set),
            ``True`` or a ``Telemetry`` (record), ``False`` (never).
        prices: the client's price table, for estimated costs.

    Raises:
        InvalidRequestError: ``option`` is of the wrong type, or telemetry is asked for and
            ``opentelemetry-api`` is not installed.
    """
    if option is False:
        return OFF
    if option is None:
        # Nothing imported OpenTelemetry: nothing can have configured it. Not importing it
        # here keeps its import cost away from applications that do not use it.
        if "opentelemetry.trace" not in sys.modules and "opentelemetry.metrics" not in sys.modules:
            return OFF
        if not _configured():
            return OFF
        option = Telemetry()
    elif option is True:
        option = Telemetry()
    elif not isinstance(option, Telemetry):
        raise InvalidRequestError(
            "telemetry", f"must be a Telemetry or a bool, got {type(option).__name__}"
        )
    try:
        return _Live(option, prices)
    except ImportError:
        raise InvalidRequestError(
            "telemetry", "needs OpenTelemetry: pip install 'phota-async[otel]'"
        ) from None


def _configured() -> bool:
    """Whether the application set a global tracer or meter provider."""
    from opentelemetry import metrics, trace

    tracer = trace.get_tracer_provider()
    if not isinstance(tracer, (trace.ProxyTracerProvider, trace.NoOpTracerProvider)):
        return True
    meter = metrics.get_meter_provider()
    # The global default is a private proxy class: recognised by name.
    return not isinstance(meter, metrics.NoOpMeterProvider) and "Proxy" not in type(meter).__name__


# -- the live hooks ------------------------------------------------------------------------


_OPERATIONS: Final = {
    ("POST", "/profiles/add"): "profiles.create",
    ("GET", "/profiles/ids"): "profiles.list",
    ("GET", "/profiles/{profile_id}/status"): "profiles.get",
    ("GET", "/profiles/{profile_id}/profile_picture"): "profiles.picture",
    ("DELETE", "/profiles/{profile_id}"): "profiles.delete",
    ("GET", "/jobs/{job_id}"): "jobs.get",
    ("GET", "/webhook-secret"): "webhook_secret",
    ("GET", "download"): "download",
    ("PUT", "upload"): "upload",
}
_KNOWN_METHODS: Final = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"}
)


@functools.lru_cache(maxsize=512)
def _template(endpoint: str) -> tuple[str | None, str | None, str | None]:
    """``(url.template, profile id, job id)`` of an API path; ``None`` for a signed URL."""
    if not endpoint.startswith("/"):
        return None, None, None
    parts = endpoint.split("/")
    if len(parts) >= 3 and parts[1] == "profiles" and parts[2] not in ("add", "ids"):
        return "/".join(["", "profiles", "{profile_id}", *parts[3:]]), parts[2], None
    if len(parts) == 3 and parts[1] == "jobs":
        return "/jobs/{job_id}", None, parts[2]
    return endpoint, None, None


def _operation(request: Request) -> str:
    template = _template(request.endpoint)[0] or request.endpoint
    found = _OPERATIONS.get((request.method, template))
    if found is not None:
        return found
    if request.method == "POST" and request.retry == "keyed":
        return f"jobs.submit_{template.strip('/')}"
    return template.strip("/") or "request"


@functools.lru_cache(maxsize=512)
def _http(method: str, url: str) -> tuple[tuple[str, Any], ...]:
    """The HTTP client attributes of a request: no userinfo, every query value ``REDACTED``."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        # A malformed URL (a server's download link with a port out of range, say): the
        # transport reports it; a hook that raised here would keep the attempt's concurrency slot.
        return (
            ("http.request.method", method if method in _KNOWN_METHODS else "_OTHER"),
            ("server.address", ""),
        )
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    query = urlencode([(scrub(k), "REDACTED") for k, _ in pairs])
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc = f"{netloc}:{parts.port}"
    # Scrubbed before the query is put back: every query value is already REDACTED, and the
    # scrubber would otherwise mask a signed URL's whole query, names included.
    full = urlunsplit((parts.scheme, netloc, scrub(parts.path), query, ""))
    return (
        ("http.request.method", method if method in _KNOWN_METHODS else "_OTHER"),
        ("server.address", host),
        ("server.port", port),
        ("url.full", full),
    )


def error_type(error: BaseException) -> str:
    """``error.type``: an answer's status code, else the exception's qualified class name."""
    if isinstance(error, APIError) and error.status:
        return str(error.status)
    kind = type(error)
    return f"{kind.__module__}.{kind.__qualname__}"


def _status_text(snapshot: object) -> str | None:
    status = getattr(snapshot, "status", None)
    if status is None:
        return None
    return scrub(str(getattr(status, "value", status)))


class _Op:
    """A live call or wait: its span, its context, and what its attempts told it."""

    __slots__ = (
        "attempts",
        "ended",
        "live",
        "operation",
        "request_id",
        "span",
        "throttled",
        "tokens",
    )

    def __init__(self, live: _Live, span: Any, operation: str) -> None:
        self.live = live
        self.span = span
        self.operation = operation
        self.ended = False
        self.attempts = 0
        self.throttled = 0
        self.request_id: str | None = None
        self.tokens: tuple[Any, Any] | None = None

    def enter(self) -> None:
        from opentelemetry import context, trace

        self.tokens = (
            context.attach(trace.set_span_in_context(self.span)),
            _current.set(self),
        )

    def leave(self) -> None:
        if self.tokens is not None:
            from opentelemetry import context

            otel, ours = self.tokens
            self.tokens = None
            _current.reset(ours)
            context.detach(otel)

    def note(self, value: object) -> None:
        """Ids out of a decoded answer: a job, a profile, a created profile's id, a result."""
        if self.ended:  # a poll that was in flight when its waiter left
            return
        span = self.span
        if isinstance(value, Job):
            span.set_attribute("phota.job.id", value.id)
        elif isinstance(value, Profile):
            span.set_attribute("phota.profile.id", value.id)
        elif isinstance(value, str) and self.operation == "profiles.create":
            span.set_attribute("phota.profile.id", value)

    def finish(self, error: BaseException | None) -> None:
        span = self.span
        if self.attempts:
            span.set_attribute("phota.attempts", self.attempts)
            span.set_attribute("phota.throttled", self.throttled)
        if self.request_id is not None:
            span.set_attribute("phota.request_id", self.request_id)
        if error is not None:
            self.live.fail(span, error)
        self.ended = True
        span.end()


def _outer() -> _Op | None:
    """The call or wait that a new call runs inside, if it is still open.

    A poll loop starts inside its first waiter's span and outlives it when that waiter leaves
    first (a timeout, a cancel): its later polls get spans of their own rather than attributes
    set on an ended span.
    """
    outer = _current.get()
    return None if outer is None or outer.ended else outer


_current: ContextVar[_Op | None] = ContextVar("phota_async_telemetry_op", default=None)


class _Nested(CallScope):
    """A call inside another call or a wait: its ids go to the outer span."""

    __slots__ = ("op",)

    def __init__(self, op: _Op) -> None:
        self.op = op

    def wrap(self, decode: Callable[[Response], T]) -> Callable[[Response], T]:
        op = self.op

        def decoded(response: Response) -> T:
            value = decode(response)
            op.note(value)
            return value

        return decoded

    def record(self, value: T) -> T:
        self.op.note(value)
        return value


class _Call(_Nested):
    """A call's own INTERNAL span, current while it runs."""

    __slots__ = ("cost", "operation", "started")

    def __init__(self, op: _Op, operation: str, cost: Callable[[object], float | None]) -> None:
        super().__init__(op)
        self.operation = operation
        self.cost = cost
        self.started = 0.0

    def __enter__(self) -> CallScope:
        self.started = time.perf_counter()
        self.op.enter()
        return self

    def __exit__(self, kind: object, error: BaseException | None, tb: object) -> None:
        op, live = self.op, self.op.live
        op.leave()
        op.finish(error)
        attributes: dict[str, Any] = {"phota.operation": self.operation}
        if error is not None:
            attributes["error.type"] = error_type(error)
        live.calls.add(1, attributes)
        live.call_duration.record(time.perf_counter() - self.started, attributes)

    def wrap(self, decode: Callable[[Response], T]) -> Callable[[Response], T]:
        def decoded(response: Response) -> T:
            return self.record(decode(response))

        return decoded

    def record(self, value: T) -> T:
        super().record(value)
        usd = self.cost(value)
        if usd is not None:
            self.op.span.set_attribute("phota.cost.estimated_usd", usd)
            self.op.live.cost.add(usd, {"phota.operation": self.operation})
        request_id = getattr(value, "request_id", None)
        if isinstance(request_id, str):
            self.op.request_id = request_id
        return value


class _Attempt(AttemptScope):
    __slots__ = ("attributes", "live", "op", "span", "token")

    def __init__(self, live: _Live, request: Request, number: int) -> None:
        from opentelemetry import context, trace

        # Signed URLs (downloads, uploads) are one-off: not kept in the cache.
        http = _http if request.endpoint.startswith("/") else _http.__wrapped__
        attributes = dict(http(request.method, request.url))
        template = _template(request.endpoint)[0]
        if template is not None:
            attributes["url.template"] = template
        if number > 1:
            attributes["http.request.resend_count"] = number - 1
        method = attributes["http.request.method"]
        name = f"{'HTTP' if method == '_OTHER' else method}{' ' + template if template else ''}"
        self.span = live.tracer.start_span(name, kind=trace.SpanKind.CLIENT, attributes=attributes)
        self.token = context.attach(trace.set_span_in_context(self.span))
        self.attributes = {
            "http.request.method": method,
            "server.address": attributes["server.address"],
        }
        self.op = _outer()
        if self.op is not None:
            self.op.attempts += 1
        self.live = live

    def _end(self, error: BaseException | None, status: int | None) -> None:
        from opentelemetry import context

        context.detach(self.token)
        attributes = self.attributes
        if status is not None:
            attributes["http.response.status_code"] = status
        kind: str | None = None
        if error is not None:
            kind = error_type(error)
        elif status is not None and status >= 400:
            kind = str(status)
        if kind is not None:
            attributes["error.type"] = kind
            self.span.set_attribute("error.type", kind)
            from opentelemetry.trace import Status, StatusCode

            self.span.set_status(Status(StatusCode.ERROR))
        self.span.end()
        self.live.attempts.add(1, attributes)

    def failed(self, error: BaseException) -> None:
        self._end(error, None)

    def decoded(self, response: Response, decode: Callable[[Response], T]) -> T:
        status = response.status
        self.span.set_attribute("http.response.status_code", status)
        request_id = response.request_id
        op = self.op
        if request_id is not None:
            self.span.set_attribute("phota.request_id", request_id)
            if op is not None:
                op.request_id = request_id
        if status in THROTTLED:
            if op is not None:
                op.throttled += 1
            self.live.throttled.add(1, {"http.response.status_code": status})
        try:
            value = decode(response)
        except BaseException as error:
            self._end(error, status)
            raise
        self._end(None, status)
        return value


class _Wait(WaitScope):
    __slots__ = ("error", "kind", "last", "op", "polls", "started")

    def __init__(self, live: _Live, key: Hashable) -> None:
        from opentelemetry import trace

        kind, thing = key if isinstance(key, tuple) and len(key) == 2 else ("wait", key)
        self.kind = str(kind)
        name = {"profile": "phota.profiles.wait_ready", "job": "phota.jobs.wait"}.get(
            self.kind, "phota.wait"
        )
        attributes = {"phota.wait.kind": self.kind}
        if self.kind in ("profile", "job"):
            attributes[f"phota.{self.kind}.id"] = str(thing)
        span = live.tracer.start_span(name, kind=trace.SpanKind.INTERNAL, attributes=attributes)
        self.op = _Op(live, span, name)
        self.op.enter()
        self.last: str | None = None
        self.error: BaseException | None = None
        self.polls = 0
        self.started = time.perf_counter()

    def saw(self, snapshot: object) -> None:
        if snapshot is None:
            return
        self.polls += 1
        status = _status_text(snapshot)
        if status is not None and status != self.last:
            attributes = {"phota.status": status}
            if self.last is not None:
                attributes["phota.status.previous"] = self.last
            self.op.span.add_event("phota.status_change", attributes)
            self.last = status

    def failed(self, error: BaseException) -> None:
        self.error = error

    def close(self) -> None:
        op = self.op
        op.leave()
        error = self.error
        span = op.span
        span.set_attribute("phota.wait.polls", self.polls)
        attributes: dict[str, Any] = {"phota.wait.kind": self.kind}
        if self.last is not None:
            span.set_attribute("phota.status", self.last)
            attributes["phota.status"] = self.last
        if error is not None:
            attributes["error.type"] = error_type(error)
        op.finish(error)
        op.live.wait_duration.record(time.perf_counter() - self.started, attributes)


class _Live(Hooks):
    """Hooks that record spans and metrics."""

    __slots__ = (
        "attempts",
        "call_duration",
        "calls",
        "cost",
        "options",
        "prices",
        "submitted",
        "throttled",
        "tracer",
        "wait_duration",
    )

    def __init__(self, options: Telemetry, prices: Prices) -> None:
        from opentelemetry import metrics, trace

        self.options = options
        self.prices = prices
        # Idempotency keys of the jobs whose cost was counted (the newest ones): a resubmit
        # with the same key is answered with the same job and charged nothing.
        self.submitted: dict[str, None] = {}
        self.tracer = trace.get_tracer(
            INSTRUMENTATION, __version__, options.tracer_provider, schema_url=SCHEMA_URL
        )
        meter = metrics.get_meter(
            INSTRUMENTATION, __version__, options.meter_provider, schema_url=SCHEMA_URL
        )
        self.calls = meter.create_counter(
            "phota.client.calls", "{call}", "SDK calls, by operation and error.type"
        )
        self.call_duration = meter.create_histogram(
            "phota.client.call.duration",
            "s",
            "Duration of SDK calls, retries and waits included",
            explicit_bucket_boundaries_advisory=CALL_BUCKETS,
        )
        self.attempts = meter.create_counter(
            "phota.client.attempts", "{attempt}", "HTTP attempts sent, retries included"
        )
        self.throttled = meter.create_counter(
            "phota.client.throttled", "{response}", "Throttling answers (429, 503) received"
        )
        self.cost = meter.create_counter(
            "phota.client.cost",
            "USD",
            "Estimated cost of the calls that succeeded (jobs: when submitted), from the "
            "client's price table",
        )
        self.wait_duration = meter.create_histogram(
            "phota.client.wait.duration",
            "s",
            "Duration of waits on profile training and jobs",
            explicit_bucket_boundaries_advisory=WAIT_BUCKETS,
        )

    def fail(self, span: Any, error: BaseException) -> None:
        from opentelemetry.trace import Status, StatusCode

        kind = error_type(error)
        span.set_attribute("error.type", kind)
        span.set_status(Status(StatusCode.ERROR, type(error).__name__))

    def first_submit(self, key: str) -> bool:
        """Whether no job submitted with idempotency key ``key`` was counted yet (remembered
        for the newest ``SUBMIT_KEYS`` keys)."""
        submitted = self.submitted
        if key in submitted:
            return False
        submitted[key] = None
        if len(submitted) > SUBMIT_KEYS:
            del submitted[next(iter(submitted))]
        return True

    def _span(self, operation: str, attributes: dict[str, Any]) -> _Op:
        from opentelemetry import trace

        span = self.tracer.start_span(
            f"phota.{operation}", kind=trace.SpanKind.INTERNAL, attributes=attributes
        )
        return _Op(self, span, operation)

    def studio(self, call: StudioCall, *, submit: bool) -> CallScope:
        outer = _outer()
        if outer is not None:
            return _Nested(outer)
        endpoint = call.path.strip("/")
        operation = f"jobs.submit_{endpoint}" if submit else endpoint
        fields = call.fields
        attributes: dict[str, Any] = {"phota.operation": operation}
        estimate = self.prices.call(endpoint, fields)  # expected, not the budget's worst case
        if estimate is not None:
            attributes["phota.cost.estimated_usd"] = estimate
        prompt = fields.get("prompt")
        if self.options.record_prompts and isinstance(prompt, str):
            attributes["phota.prompt"] = scrub(prompt)
        prices = self.prices

        def cost(value: object) -> float | None:
            if submit:
                key = getattr(value, "client_request_id", None)
                return estimate if not isinstance(key, str) or self.first_submit(key) else None
            count = len(value) if hasattr(value, "__len__") else 0  # an ImageResult
            each = prices.per_image(endpoint, fields, bool(getattr(value, "known_subjects", None)))
            return None if each is None else each * count

        return _Call(self._span(operation, attributes), operation, cost)

    def call(self, request: Request) -> CallScope:
        outer = _outer()
        if outer is not None:
            return _Nested(outer)
        operation = _operation(request)
        attributes: dict[str, Any] = {"phota.operation": operation}
        profile_id = _template(request.endpoint)[1]
        if profile_id is not None:
            attributes["phota.profile.id"] = profile_id
        job_id = _template(request.endpoint)[2]
        if job_id is not None:
            attributes["phota.job.id"] = job_id
        estimate: float | None = None
        if operation == "profiles.create" and isinstance(request.body, bytes):
            try:
                tier = json.loads(request.body).get("training_tier", "standard")
            except ValueError:
                tier = None
            estimate = None if not isinstance(tier, str) else self.prices.training(tier)
        if estimate is not None:
            attributes["phota.cost.estimated_usd"] = estimate
        return _Call(self._span(operation, attributes), operation, lambda _: estimate)

    def attempt(self, request: Request, number: int) -> AttemptScope:
        return _Attempt(self, request, number)

    def wait(self, key: Hashable) -> WaitScope:
        return _Wait(self, key)
