"""The `asyncio` strategy: one event loop per call, over an aiohttp client that has the blocking
client's features (keep-alive, timeouts capped by the job's deadline, the same signing and the
same error types). Imported only when STRATEGY=asyncio, so aiohttp never slows a cold start.

The pacing decisions are `base.next_start` / `base.begin`, and each reply is read by
`slot_fetch.settle_slot`, exactly as for `threaded`; only the way a request is waited on differs:
a task per request instead of a thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any

import aiohttp
from yarl import URL

from ..bitso_client import CONNECT_TIMEOUT, READ_TIMEOUT, RequestSigner, order_book_path
from ..clock import Clock
from ..errors import MalformedReply, cut_off, timed_out, unreachable
from ..grid import Slot
from ..recorder import SlotStart
from ..replies import parse_order_book_reply
from ..signing import ApiCredentials
from .base import FetchJob, begin, next_start, request_timeout
from .slot_fetch import Reply, settle_slot, slot_path

#: Same bound as `threaded`: at most this many requests in flight, else the slot is skipped.
MAX_IN_FLIGHT = 8
#: Replies larger than this (an `aggregate=false` book is about 600 KB) are read off the loop.
OFFLOAD_BYTES = 64 * 1024
#: The last stretch of a wait for a slot is slept precisely, blocking the loop this long at most.
FINE_WAIT_S = 0.002
#: Threads for work moved off the loop (big books, DNS lookups).
OFFLOAD_THREADS = 2
#: aiohttp rounds timeouts above `ceil_threshold` up to a whole second of loop time, which could
#: carry a request past the job's deadline; a threshold this high turns the rounding off.
NO_CEIL = 24 * 3600.0


async def sleep_until(clock: Clock, when: float) -> None:
    """`Clock.sleep_until` for a coroutine: returns only once `clock.now() >= when`.

    The loop's timers wake up to a millisecond late (epoll rounds its timeout up), and the pacer
    carries each start's lateness into the same slot of the next minute, so the loop sleeps to
    `FINE_WAIT_S` before the time and the clock's own precise sleep (blocking the loop for at
    most that long) does the rest.
    """
    while (left := when - clock.now()) > FINE_WAIT_S:
        await asyncio.sleep(left - FINE_WAIT_S)
    clock.sleep_until(when)


class AsyncBitsoClient:
    """Bitso's order book over one aiohttp `ClientSession` (one keep-alive `TCPConnector`).

    Open it with `async with` inside the event loop that uses it: a session belongs to one loop,
    and each call runs its own loop, so each call gets its own session.
    """

    def __init__(
        self,
        api_url: str,
        credentials: ApiCredentials | None = None,
        *,
        signer: RequestSigner | None = None,
        pool_size: int = 16,
        connect_timeout: float = CONNECT_TIMEOUT,
        read_timeout: float = READ_TIMEOUT,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.pool_size = pool_size
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._signer = signer or RequestSigner(credentials)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> AsyncBitsoClient:
        connector = aiohttp.TCPConnector(limit=self.pool_size, timeout_ceil_threshold=NO_CEIL)
        self._session = aiohttp.ClientSession(connector=connector)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def order_book(
        self, book: str, aggregate: bool = True, timeout: float | None = None
    ) -> dict[str, Any]:
        """The order book payload; raises a `BitsoError` subtype for every kind of failure."""
        return parse_order_book_reply(*await self.get(order_book_path(book, aggregate), timeout))

    async def get(self, path: str, timeout: float | None = None) -> tuple[int, bytes]:
        """Status and body of one signed GET, unread (the strategy reads them with
        `slot_fetch`); raises a `BitsoError` subtype when there is no reply.

        `timeout` (the time left until the job's deadline) caps the whole request; a socket that
        goes quiet for the read timeout fails sooner, as with the blocking client.
        """
        session = self._session
        if session is None:
            raise RuntimeError("open the client with `async with` before requesting")
        limit = self.read_timeout if timeout is None else max(0.05, timeout)
        timeouts = aiohttp.ClientTimeout(
            total=limit,
            connect=min(self.connect_timeout, limit),
            sock_read=min(self.read_timeout, limit),
            ceil_threshold=NO_CEIL,
        )
        # encoded=True: the path goes out byte for byte as it was signed.
        url = URL(self.api_url + path, encoded=True)
        try:
            async with session.get(
                url, headers=self._signer.headers("GET", path), timeout=timeouts
            ) as response:
                status = response.status
                body = await response.read()
        except TimeoutError as error:  # also aiohttp's ConnectionTimeoutError, SocketTimeoutError
            raise timed_out(limit) from error
        except aiohttp.ClientPayloadError:
            raise cut_off() from None
        except aiohttp.ClientResponseError as error:
            raise MalformedReply(f"not a valid HTTP reply: {error.message}") from None
        except (aiohttp.ClientError, OSError) as error:
            raise unreachable(self.api_url, error) from None
        return status, body


def run_call(main: Coroutine[Any, Any, None]) -> None:
    """`asyncio.run`, except that leaving does not wait for the loop's worker threads.

    `asyncio.run` joins the default executor on the way out, so a DNS lookup or a big book still
    being parsed could hold the call past its deadline; their results no longer matter by then
    (the recorder ignores replies once fetching is closed).
    """
    loop = asyncio.new_event_loop()
    offload = ThreadPoolExecutor(OFFLOAD_THREADS, thread_name_prefix="asyncio-offload")
    loop.set_default_executor(offload)
    try:
        loop.run_until_complete(main)
    finally:
        try:
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            offload.shutdown(wait=False, cancel_futures=True)
            loop.close()


class AsyncioStrategy:
    """Starts each request on its slot from one coroutine; each reply is awaited by its own task,
    so a slow reply never delays the next slot. A request times out after `max_in_flight - 1`
    slot spacings, or just before the deadline (`base.request_timeout`); whatever is still in
    flight at the deadline is cancelled (the recorder then counts it abandoned)."""

    name = "asyncio"

    def __init__(
        self,
        api_url: str,
        credentials: ApiCredentials | None = None,
        *,
        max_in_flight: int = MAX_IN_FLIGHT,
        connect_timeout: float = CONNECT_TIMEOUT,
        read_timeout: float = READ_TIMEOUT,
    ) -> None:
        self.api_url = api_url
        self.max_in_flight = max_in_flight
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        # One signer for the instance, so nonces keep rising across calls.
        self._signer = RequestSigner(credentials)

    def client(self) -> AsyncBitsoClient:
        return AsyncBitsoClient(
            self.api_url,
            signer=self._signer,
            pool_size=max(self.max_in_flight, 1),
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
        )

    def run(self, job: FetchJob) -> None:
        run_call(self._run(job))

    async def _run(self, job: FetchJob) -> None:
        async with self.client() as client:
            in_flight: set[asyncio.Task[None]] = set()
            try:
                for slot in job.slots:
                    when = next_start(job, slot)
                    if when is None:
                        continue
                    await sleep_until(job.clock, when)
                    in_flight = {task for task in in_flight if not task.done()}
                    start = begin(job, slot, room=len(in_flight) < self.max_in_flight)
                    if start is not None:
                        fetch = self._fetch(client, job, slot, start, self.max_in_flight)
                        in_flight.add(asyncio.create_task(fetch))
                left = job.deadline - job.clock.now()
                if in_flight and left > 0:
                    await asyncio.wait(in_flight, timeout=left)
            finally:
                for task in in_flight:
                    task.cancel()
                await asyncio.gather(*in_flight, return_exceptions=True)

    @staticmethod
    async def _fetch(
        client: AsyncBitsoClient, job: FetchJob, slot: Slot, start: SlotStart, max_in_flight: int
    ) -> None:
        """One request for one slot (an order book or a trades page), reported to the recorder.

        A big reply, or a full (`aggregate=false`) book, is read off the loop: parsing,
        normalising and encoding it takes milliseconds that would delay the next slot's start.
        """
        timeout = request_timeout(job, start.at, max_in_flight)
        reply: Reply | Exception
        try:
            reply = await client.get(slot_path(slot, start), timeout)
        except Exception as error:  # settled as the slot's failure
            reply = error
        heavy = isinstance(reply, tuple) and (
            len(reply[1]) > OFFLOAD_BYTES or not (start.backfill or start.aggregate)
        )
        if heavy:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, settle_slot, job, slot, start, reply)
        else:
            settle_slot(job, slot, start, reply)

    def close(self) -> None:
        """Nothing to release: each call's session closes with the call's event loop."""
