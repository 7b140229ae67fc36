"""The error the simulator answers in Binance's shape, ``{"code": ..., "msg": ...}``.

Its own module so that the signed side (auth, orders, user streams) can raise it without
importing the REST route table.
"""

from __future__ import annotations


class ApiError(Exception):
    """An error answered in Binance's shape with HTTP ``status`` (400 unless told)."""

    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.status = status
