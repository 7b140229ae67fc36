"""A market-data frame rendered once and sent, as the same string, to every subscriber."""

from __future__ import annotations


class Frame:
    """One stream event: its raw payload text, and the combined-stream wrapper built on demand.

    ``/ws/<stream>`` clients get :attr:`raw`; ``/stream?streams=`` clients get :attr:`combined`.
    """

    __slots__ = ("_combined", "raw", "stream")

    def __init__(self, stream: str, raw: str, combined: str | None = None) -> None:
        self.stream = stream
        self.raw = raw
        self._combined = combined

    @property
    def combined(self) -> str:
        text = self._combined
        if text is None:
            text = self._combined = f'{{"stream":"{self.stream}","data":{self.raw}}}'
        return text
