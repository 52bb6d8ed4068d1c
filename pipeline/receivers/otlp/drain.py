"""The drain gate: how the receiver stops without dropping what it acknowledged or leaving senders guessing.

On shutdown the gate turns new requests away (the transports answer UNAVAILABLE / 503 with a retry hint) and
waits for the requests in flight. It then lingers briefly while requests keep arriving: closing a grpc.aio
server kills the calls its core has accepted but not yet handed to us, and their senders would see CANCELLED
(retryable, but without our retry hint) instead of UNAVAILABLE. An idle receiver does not linger at all.
"""

from __future__ import annotations

import asyncio
import time

# Linger until no request arrived for QUIET_S, at most MAX_LINGER_S (and never past the deadline).
QUIET_S = 0.05
MAX_LINGER_S = 0.5


class DrainGate:
    """Counts requests in flight; once draining, turns new ones away and lets shutdown wait for the rest."""

    __slots__ = ("_draining", "_idle", "_inflight", "_last_arrival")

    def __init__(self) -> None:
        self._draining = False
        self._inflight = 0
        self._idle: asyncio.Event | None = None
        self._last_arrival = float("-inf")

    @property
    def draining(self) -> bool:
        return self._draining

    @property
    def inflight(self) -> int:
        return self._inflight

    def enter(self) -> bool:
        """Admit a request (the caller must call ``leave``), or return False when draining."""
        self._last_arrival = time.monotonic()
        if self._draining:
            return False
        self._inflight += 1
        return True

    def leave(self) -> None:
        self._inflight -= 1
        if self._inflight == 0 and self._idle is not None:
            self._idle.set()

    async def drain(self, timeout_s: float) -> bool:
        """Stop admitting requests, wait up to ``timeout_s`` for those in flight, then linger while requests
        still arrive (see the module docstring). True if no request is left in flight."""
        self._draining = True
        deadline = time.monotonic() + max(0.0, timeout_s)
        if self._inflight:
            if self._idle is None:
                self._idle = asyncio.Event()
            try:
                async with asyncio.timeout_at(asyncio.get_running_loop().time() + max(0.0, timeout_s)):
                    await self._idle.wait()
            except TimeoutError:
                return False
        linger_until = min(deadline, time.monotonic() + MAX_LINGER_S)
        while True:
            now, quiet_at = time.monotonic(), self._last_arrival + QUIET_S
            if now >= quiet_at or now >= linger_until:
                return True
            await asyncio.sleep(min(quiet_at, linger_until) - now)
