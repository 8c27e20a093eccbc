"""The two strategies over the blocking `requests` client: `sequential` and `threaded`."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for

from ..bitso_client import BitsoClient
from ..grid import Slot
from ..recorder import SlotStart
from .base import FetchJob, begin, next_start, request_timeout
from .slot_fetch import Reply, settle_slot, slot_path


def fetch_slot(
    client: BitsoClient,
    job: FetchJob,
    slot: Slot,
    start: SlotStart,
    max_in_flight: int | None = None,
) -> None:
    """One request for one slot (an order book or a trades page), reported to the recorder."""
    timeout = request_timeout(job, start.at, max_in_flight)
    reply: Reply | Exception
    try:
        reply = client.get(slot_path(slot, start), timeout)
    except Exception as error:  # settled as the slot's failure
        reply = error
    settle_slot(job, slot, start, reply)


class SequentialStrategy:
    """One request at a time: a slow reply makes the following slots late (then skipped)."""

    name = "sequential"

    def __init__(self, client: BitsoClient) -> None:
        self.client = client

    def run(self, job: FetchJob) -> None:
        for slot in job.slots:
            when = next_start(job, slot)
            if when is None:
                continue
            job.clock.sleep_until(when)
            start = begin(job, slot)
            if start is not None:
                fetch_slot(self.client, job, slot, start)

    def close(self) -> None:
        self.client.close()


class ThreadedStrategy:
    """Starts each request on its slot from one pacing thread; replies are waited on by a bounded
    pool, so a slow reply never delays the next slot, and each waits at most `max_in_flight - 1`
    slot spacings (`base.request_timeout`), so a hung one never holds the pool."""

    name = "threaded"

    def __init__(self, client: BitsoClient, max_in_flight: int = 8) -> None:
        self.client = client
        self.max_in_flight = max_in_flight

    def run(self, job: FetchJob) -> None:
        pool = ThreadPoolExecutor(self.max_in_flight, thread_name_prefix="fetch")
        in_flight: set[Future[None]] = set()
        try:
            for slot in job.slots:
                when = next_start(job, slot)
                if when is None:
                    continue
                job.clock.sleep_until(when)
                in_flight = {future for future in in_flight if not future.done()}
                start = begin(job, slot, room=len(in_flight) < self.max_in_flight)
                if start is not None:
                    in_flight.add(
                        pool.submit(fetch_slot, self.client, job, slot, start, self.max_in_flight)
                    )
            wait_for(in_flight, timeout=max(0.0, job.deadline - job.clock.now()))
        finally:
            # Requests still in flight are abandoned: their timeouts end them shortly.
            pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        self.client.close()
