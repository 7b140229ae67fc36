"""Every error the appliance raises on purpose, in one tree.

Each class says who has to act: ``OperatorError`` means a person must change something (a
setting, a file, a key) and retrying will not help; ``TransientError`` means the condition may
clear by itself and the caller's retry policy applies (retries live in one place per component,
never scattered).

::

    ApplianceError
    ├── OperatorError                 a person must act; retrying is pointless
    │   ├── ConfigError               a setting is missing, malformed or out of bounds
    │   ├── StorageFullError          the disk (or the database's page budget) is full
    │   ├── ControlError              a control-channel request was refused or malformed
    │   │   └── LiveModeError         live mode refused: no keys, failed preflight, no confirmation
    │   ├── ModelError                a model was refused: not ONNX, contract broken, wrong results
    │   └── ApiKeyError               the exchange refused our key or signature (-2014/-2015/-1022)
    └── TransientError                may clear by itself; retry with backoff
        ├── FeedError                 the market-data connection failed or went stale
        ├── SnapshotError             a REST depth snapshot could not be fetched or applied
        ├── BookGapError              a diff-depth sequence gap: the book must resync
        ├── MalformedFrameError       a market-data frame could not be decoded: count and skip it
        └── ExchangeApiError          a REST call failed: network, HTTP status or {code, msg} body
            ├── RateLimitedError      429 (or our own budget): no request until ``retry_at_ms``
            │   └── IpBannedError     418: every request stops until the ban ends
            ├── OrderRejectedError    the exchange refused an order (-2019 margin, filters, ...)
            └── UnknownStateError     timeout or 5xx on a write: query before any retry
"""

from __future__ import annotations


class ApplianceError(Exception):
    """Base of every error the appliance raises deliberately."""


class OperatorError(ApplianceError):
    """A person has to change something; retrying will not help."""


class ConfigError(OperatorError):
    """A setting is missing, malformed or outside its bounds."""


class StorageFullError(OperatorError):
    """The disk or the database's page budget is exhausted: recording stops, trading is kept."""


class ControlError(OperatorError):
    """A control-channel request was refused or could not be understood."""


class ModelError(OperatorError):
    """A model file was refused: unreadable, not ONNX, its contract broken, or wrong results.

    ``problems`` lists every failure found, each a message of its own (a validator shows them
    all); ``str()`` joins them. The running model, if any, stays in place.
    """

    def __init__(self, message: str, problems: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems or (message,)


class TransientError(ApplianceError):
    """A condition that may clear by itself; the owning component retries with backoff."""


class FeedError(TransientError):
    """The market-data connection failed, was closed, or went stale."""


class SnapshotError(TransientError):
    """A REST depth snapshot could not be fetched or did not bridge the buffered events."""


class BookGapError(TransientError):
    """A diff-depth event did not continue the previous one (``pu`` != previous ``u``)."""


class MalformedFrameError(TransientError):
    """A market-data frame was not JSON, lacked or mistyped a field, or named an unknown event.

    One bad frame says nothing about the next: the caller counts it and skips it.
    """


class ExchangeApiError(TransientError):
    """A REST request to the exchange failed.

    ``status`` is the HTTP status (``None`` when no response arrived), ``code``/``msg`` the
    exchange's ``{"code", "msg"}`` error body when it sent one (for example -1121 invalid symbol,
    -1003 too many requests).
    """

    def __init__(
        self, message: str, *, status: int | None = None, code: int | None = None, msg: str = ""
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.msg = msg


class LiveModeError(ControlError):
    """Live mode was refused: keys missing, preflight failed, or the confirmation was wrong."""


class ApiKeyError(OperatorError):
    """The exchange refused our API key or signature (-2014, -2015, -1022): fix the keys.

    ``code`` is the exchange's error code.
    """

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class RateLimitedError(ExchangeApiError):
    """A request-rate limit: the exchange answered 429 (or our own weight budget would be
    exceeded); nothing is sent before ``retry_at_ms`` (the client's clock, ms)."""

    def __init__(self, message: str, *, retry_at_ms: int, status: int | None = None,
                 code: int | None = None, msg: str = "") -> None:  # fmt: skip
        super().__init__(message, status=status, code=code, msg=msg)
        self.retry_at_ms = retry_at_ms


class IpBannedError(RateLimitedError):
    """418: the IP is banned for ignoring 429s; every request stops until ``retry_at_ms``."""


class OrderRejectedError(ExchangeApiError):
    """The exchange refused an order outright (it was not placed): -2019 margin insufficient,
    a filter (-4164 min notional, -1111 precision, -4014 tick, ...). Not retried."""


class UnknownStateError(ExchangeApiError):
    """A write's outcome is unknown (timeout, 5xx, -1007): the order may or may not exist.

    The caller must query it (by ``origClientOrderId``) before any retry.
    """
