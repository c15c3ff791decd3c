"""uvicorn settings for the service: connection cap, keep-alive, and a read timeout uvicorn lacks.

uvicorn closes idle keep-alive connections (``timeout_keep_alive``) and answers 503 above
``limit_concurrency``, but it waits forever for a request whose headers or body trickle in (slowloris).
:class:`ReadTimeoutH11Protocol` adds one timer to uvicorn's h11 protocol: from the moment a connection
opens, or the first byte of a request arrives on a kept-alive one, that request's headers *and* body
must arrive within ``read_timeout`` seconds, or the connection is closed. A request whose body has
arrived is never cut while it computes.
"""

from __future__ import annotations

import asyncio

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

MAX_HEADER_BYTES = 16 * 1024  # h11's limit on an incomplete request head (uvicorn's default, made explicit)


class ReadTimeoutH11Protocol(H11Protocol):
    """uvicorn's h11 protocol that closes connections whose request does not arrive in time."""

    read_timeout: float = 30.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the read timer with the connection (a client that sends nothing is timed too)."""
        super().connection_made(transport)
        self._read_timer: asyncio.TimerHandle | None = None
        self._arm_read_timer()

    def data_received(self, data: bytes) -> None:
        """Time the next request from its first byte (an idle keep-alive is uvicorn's to close)."""
        if self._read_timer is None and (self.cycle is None or self.cycle.response_complete):
            self._arm_read_timer()
        super().data_received(data)

    def on_response_complete(self) -> None:
        """The request is done: stop timing it."""
        self._cancel_read_timer()
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        """Drop the read timer with the connection."""
        self._cancel_read_timer()
        super().connection_lost(exc)

    def _cancel_read_timer(self) -> None:
        if getattr(self, "_read_timer", None) is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _arm_read_timer(self) -> None:
        self._cancel_read_timer()
        armed_cycle = self.cycle  # a new request replaces self.cycle once its headers are complete
        self._read_timer = self.loop.call_later(self.read_timeout, self._read_timed_out, armed_cycle)

    def _read_timed_out(self, armed_cycle) -> None:
        self._read_timer = None
        cycle = self.cycle
        waiting_for_headers = cycle is armed_cycle
        waiting_for_body = cycle is not None and cycle.more_body and not cycle.response_complete
        if (waiting_for_headers or waiting_for_body) and not self.transport.is_closing():
            self.logger.info(
                "closing a connection whose request did not arrive within %g s", self.read_timeout
            )
            self.transport.close()


def uvicorn_config(app, host: str, port: int, settings, log_level: str = "info") -> uvicorn.Config:
    """The ``uvicorn.Config`` serving ``app`` with ``settings``' connection limits and timeouts."""
    protocol = type("ReadTimeoutProtocol", (ReadTimeoutH11Protocol,), {"read_timeout": settings.read_timeout})
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        http=protocol,
        timeout_keep_alive=settings.keep_alive_timeout,
        limit_concurrency=settings.max_connections,
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
    )
