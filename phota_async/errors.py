"""Every error the SDK raises. All of them derive from ``PhotaError``.

```text
PhotaError
├── InvalidRequestError (also ValueError)  refused before any request was sent
├── TransportError                         no usable response came back
│   ├── ConnectError                       could not connect; nothing was sent
│   ├── ConnectionLostError                the connection broke mid-call
│   ├── ReadTimeoutError                   the server did not answer in time
│   └── ResponseRefusedError               an answer the SDK will not take (a
│       │                                  redirect to another host); the
│       │                                  same again on a retry
│       └── ResponseTooLargeError          a body or image passed its size
│                                          cap (.limit)
├── OutcomeUnknownError                    a paid POST may or may not have
│                                          been processed
├── BudgetExceededError                    a paid call would pass the budget;
│                                          not sent
├── ResponseValidationError                a response did not have the
│                                          documented shape
├── APIError                               the API answered with an error status
│   ├── BadRequestError                    400
│   │   ├── ContentModerationError         400 CONTENT_MODERATION
│   │   └── ProfileNotReadyError           400 PROFILE_NOT_READY
│   ├── AuthenticationError                401
│   ├── InsufficientCreditError            402
│   ├── PermissionDeniedError              403
│   ├── NotFoundError                      404
│   ├── PayloadTooLargeError               413
│   ├── UnprocessableEntityError           422 (.errors: FastAPI's detail list)
│   ├── RateLimitError                     429 (.retry_after)
│   └── ServerError                        5xx
│       ├── ServiceUnavailableError        503
│       └── GatewayTimeoutError            504 (refunded by the server)
├── WaitTimeoutError (also TimeoutError)   a wait's deadline passed (.last: the
│                                          last snapshot)
├── ProfileTrainingError                   a profile ended ERROR or INACTIVE
│                                          (.profile)
└── JobFailedError                         a job ended FAILED (.job)
```

Every error has ``request_ids``: the ``X-Request-Id`` of each attempt, oldest first, so that a
support ticket can name them, and ``attempts``, how many were made.

Errors never contain an API key, whatever a server echoes: the message and every attribute are
scrubbed as they are set (see ``_redact``), so no code path can forget to. Every error pickles
(for multiprocessing and distributed engines) to the same type, message and attributes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._redact import scrub, scrub_value

if TYPE_CHECKING:
    from .models import Job, Profile


class PhotaError(Exception):
    """Root of every error raised by ``phota_async``."""

    request_ids: tuple[str, ...] = ()
    attempts: int = 1
    """How many attempts the call made before this error."""
    stopped_by: str | None = None
    """Why retrying ended early (such as the call's deadline); shown in the message."""

    def __str__(self) -> str:
        text = super().__str__()
        return f"{text} ({self.stopped_by})" if self.stopped_by else text

    def __init__(self, *args: Any) -> None:
        super().__init__(*scrub_value(args))

    def __setattr__(self, name: str, value: Any) -> None:
        # Attributes often hold server text (a body, a detail, a snapshot's message): scrubbed
        # here, as they are set, an echoed key cannot reach a str, repr, traceback or field.
        super().__setattr__(name, scrub_value(value))

    def __reduce__(self) -> tuple[Any, ...]:
        # Exception's own pickling calls ``cls(*args)``, which fails for classes whose
        # constructor takes other parameters than their message; rebuild without calling it.
        # A job among the attributes pickles unbound from its client (``Job.__reduce__``).
        return (_rebuild, (type(self), self.args, dict(self.__dict__)))

    @property
    def request_id(self) -> str | None:
        """The request id of the last attempt, if a response carried one."""
        return self.request_ids[-1] if self.request_ids else None


def _rebuild(cls: type[PhotaError], args: tuple[Any, ...], state: dict[str, Any]) -> PhotaError:
    """Unpickle an error: the same class, message and attributes, constructor not called."""
    error = cls.__new__(cls, *args)
    error.args = args
    error.__dict__.update(state)
    return error


class InvalidRequestError(PhotaError, ValueError):
    """A parameter is invalid; raised before any request is sent.

    Attributes:
        field: the parameter at fault, such as ``"images[3]"`` or ``"n"``.
    """

    def __init__(self, field: str, message: str) -> None:
        # Bounded whatever a caller passed (an option name is the caller's text, too): the
        # places that raise echo values through ``_redact.shown``; this is the net.
        field, message = _bounded(field, FIELD_LIMIT), _bounded(message, MESSAGE_LIMIT)
        super().__init__(f"{field}: {message}")
        self.field = field


FIELD_LIMIT = 100
MESSAGE_LIMIT = 1000


def _bounded(text: str, limit: int) -> str:
    """``text`` scrubbed, then cut to ``limit`` characters."""
    text = scrub(text) if len(text) > limit else text
    return text if len(text) <= limit else text[: limit - 3] + "..."


class TransportError(PhotaError):
    """No usable response came back: connection failure, timeout or broken body."""


class ConnectError(TransportError):
    """The connection could not be opened, so the request was certainly not sent."""


class ConnectionLostError(TransportError):
    """The connection broke after the request may have been sent, or mid-response."""


class ReadTimeoutError(TransportError):
    """The server did not answer within the read timeout."""


class ResponseRefusedError(TransportError):
    """An answer came back that the SDK will not take, such as a download redirected to
    another host. Sending the request again would get the same answer, so it is not retried,
    and it is never reported as an unknown outcome: the answer did come."""


class ResponseTooLargeError(ResponseRefusedError):
    """A response body, an output image or a download passed its size cap; it was refused.

    The caps are ``PhotaClient(max_response_bytes=..., max_image_bytes=...)``; they count bytes
    after decompression, so neither an endless body nor a compression bomb is ever held.
    It is never retried: the same request would get the same answer. For a studio call this
    error means the server *did* answer 200, so the call was processed and charged; only its
    result was refused. Raise ``max_image_bytes``, or ask for ``response_mode="urls"``, rather
    than sending the call again blindly.

    Attributes:
        limit: the cap that was passed, in bytes (or a count, for too many images).
    """

    limit: int | None = None


class OutcomeUnknownError(PhotaError):
    """A paid POST may or may not have been processed (and charged); it was not retried.

    Re-sending could charge twice. Run long calls as jobs (``phota.jobs.submit_*``): a job
    submit carries an idempotency key and is always safe to retry. Under a budget the call's
    price stays reserved (pending in ``phota.spend``), since it may have been charged; a
    resubmit with the same ``client_request_id`` reuses that reservation.

    Attributes:
        client_request_id: for a job submit, its idempotency key: submitting again with this
            key returns the original job if there is one, and never charges twice.
        tag: for ``profiles.create``, the profile's tag: ``profiles.list(tag=...)`` finds the
            profile if it was created.
    """

    client_request_id: str | None = None
    tag: str | None = None


class BudgetExceededError(PhotaError):
    """A paid call was refused before it was sent: its estimated price would take spending
    past a budget (the client's, or a batch run's).

    Attributes:
        endpoint: the paid endpoint, such as ``"enhance"`` or ``"training"``.
        estimate: the call's estimated price in dollars.
        spent: what the budget had spent (settled charges) when the call was refused.
        reserved: what it had reserved for calls in flight or of unknown outcome.
        limit: the budget in dollars.
        scope: which budget refused it (``"client"``, ``"run"``...).
    """

    def __init__(
        self,
        endpoint: str,
        *,
        estimate: float,
        spent: float,
        reserved: float,
        limit: float,
        scope: str = "budget",
    ) -> None:
        super().__init__(
            f"{endpoint}: not sent: its estimated ${estimate:.2f} would pass the {scope} "
            f"budget of ${limit:.2f} (${spent:.2f} spent, ${reserved:.2f} reserved for calls "
            "in flight or of unknown outcome)"
        )
        self.endpoint = endpoint
        self.estimate = estimate
        self.spent = spent
        self.reserved = reserved
        self.limit = limit
        self.scope = scope


class ResponseValidationError(PhotaError):
    """A response body was not valid JSON or did not have the documented shape."""


class APIError(PhotaError):
    """The API answered with an error status.

    Attributes:
        status: the HTTP status code.
        code: the machine-readable error code, such as ``"PROFILE_NOT_FOUND"`` (``None`` when the
            body had none, as with a proxy's HTML page).
        detail: the human-readable explanation.
        body: the parsed JSON body, or the raw text when it was not JSON.
        retry_after: the server's ``Retry-After`` hint in seconds, if it sent one.
    """

    retry_after: float | None = None

    def __init__(
        self,
        status: int,
        code: str | None,
        detail: str,
        *,
        body: Any = None,
        request_ids: Sequence[str] = (),
    ) -> None:
        self.status = status
        self.code = code
        self.detail = detail
        self.body = body
        self.request_ids = tuple(request_ids)
        super().__init__(self._line())

    def _line(self) -> str:
        code = f" {self.code}" if self.code else ""
        rid = f" (request {self.request_ids[-1]})" if self.request_ids else ""
        return f"{self.status}{code}: {self.detail}{rid}"

    def __str__(self) -> str:
        line = self._line()
        return f"{line} ({self.stopped_by})" if self.stopped_by else line


class BadRequestError(APIError):
    """400: the request was refused (bad model/resolution pairing, unreadable image, ...)."""


class ContentModerationError(BadRequestError):
    """400 ``CONTENT_MODERATION``: the prompt or an image was refused by moderation."""


class ProfileNotReadyError(BadRequestError):
    """400 ``PROFILE_NOT_READY``: a named profile has not finished training."""


class AuthenticationError(APIError):
    """401: the API key is not valid."""


class InsufficientCreditError(APIError):
    """402: the prepaid credit is exhausted."""


class PermissionDeniedError(APIError):
    """403: the API key header was missing, or access was refused."""


class NotFoundError(APIError):
    """404: no such profile or job."""


class PayloadTooLargeError(APIError):
    """413: the request body is larger than the server accepts."""


class UnprocessableEntityError(APIError):
    """422: the request failed schema validation.

    Attributes:
        errors: the FastAPI ``detail`` entries, each with ``loc``, ``msg`` and ``type``.
    """

    @property
    def errors(self) -> list[Mapping[str, Any]]:
        """The FastAPI ``detail`` entries, each with ``loc``, ``msg`` and ``type``."""
        detail = self.body.get("detail") if isinstance(self.body, Mapping) else None
        return [d for d in detail if isinstance(d, Mapping)] if isinstance(detail, list) else []


class RateLimitError(APIError):
    """429: too many requests; ``retry_after`` is the server's hint in seconds, if any."""


class ServerError(APIError):
    """5xx: the service failed."""


class ServiceUnavailableError(ServerError):
    """503: the service is temporarily unavailable."""


class GatewayTimeoutError(ServerError):
    """504: a synchronous call exceeded its time limit (the server refunds it); use a job."""


class WaitTimeoutError(PhotaError, TimeoutError):
    """A wait's deadline passed before the profile or job finished.

    Attributes:
        last: the last snapshot seen (a ``Profile`` or ``Job``), or ``None``.
    """

    def __init__(self, message: str, last: Profile | Job | None = None) -> None:
        super().__init__(message)
        self.last = last


# A profile message saying its training photos could not be fetched (the service's wording is
# not documented: any of these words in an ERROR's message).
_UNREACHABLE_PHOTOS = re.compile(
    r"download|expired|unreachable|could not be (?:reached|fetched)|\b40[34]\b", re.IGNORECASE
)


class ProfileTrainingError(PhotaError):
    """A profile ended ``ERROR`` or ``INACTIVE``; ``profile`` holds it (with its message).

    When the message says the training photos could not be downloaded, ``photos_unreachable``
    is true and the text says that their URLs expired or are unreachable.
    """

    def __init__(self, profile: Profile) -> None:
        message = profile.message or "no message"
        unreachable = profile.status == "ERROR" and bool(_UNREACHABLE_PHOTOS.search(message))
        hint = (
            " (Phota could not download the training photos: their URLs expired or are "
            "unreachable; upload them again with URLs that live through validation and "
            "training)"
            if unreachable
            else ""
        )
        super().__init__(f"profile {profile.id} is {profile.status}: {message}{hint}")
        self.profile = profile
        self.photos_unreachable = unreachable


class JobFailedError(PhotaError):
    """A job ended ``FAILED``; ``job`` holds it, ``code`` and ``detail`` its error."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.code = job.error.code if job.error else None
        self.detail = job.error.detail if job.error else "no detail"
        super().__init__(f"job {job.id} failed: {self.code or 'UNKNOWN'}: {self.detail}")


STATUS_ERRORS: Mapping[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: InsufficientCreditError,
    403: PermissionDeniedError,
    404: NotFoundError,
    413: PayloadTooLargeError,
    422: UnprocessableEntityError,
    429: RateLimitError,
    503: ServiceUnavailableError,
    504: GatewayTimeoutError,
}
CODE_ERRORS: Mapping[str, type[APIError]] = {
    "CONTENT_MODERATION": ContentModerationError,
    "PROFILE_NOT_READY": ProfileNotReadyError,
}
