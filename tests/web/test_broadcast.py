"""The broadcaster: one feed per key whatever the number of subscribers, gone with the last one."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

from pytest_planrun.web.broadcast import CLOSED, Broadcaster


class Counter:
    """A source whose payload changes when the test says so."""

    def __init__(self) -> None:
        self.value = 0
        self.builds = 0
        self.built = -1

    def changed(self) -> bool:
        return self.value != self.built

    def build(self) -> str:
        self.builds += 1
        self.built = self.value
        return str(self.value)


def test_one_feed_builds_once_per_change_for_all_subscribers() -> None:
    async def scenario() -> None:
        broadcaster = Broadcaster(interval=0.01)
        source = Counter()
        made: list[Counter] = []

        def make() -> Counter:
            made.append(source)
            return source

        async with AsyncExitStack() as stack:
            queues = [await stack.enter_async_context(broadcaster.subscribe("k", make)) for _ in range(20)]
            assert [await asyncio.wait_for(q.get(), 10) for q in queues] == ["0"] * 20
            source.value = 1
            assert [await asyncio.wait_for(q.get(), 10) for q in queues] == ["1"] * 20
            assert len(made) == 1 and source.builds == 2
            feed = broadcaster.feeds["k"]
            assert len(feed.subscribers) == 20
        assert broadcaster.feeds == {}
        await asyncio.sleep(0)
        assert feed.task is not None and feed.task.cancelled()

    asyncio.run(scenario())


def test_a_slow_subscriber_holds_only_the_newest_payload_and_close_ends_it() -> None:
    async def scenario() -> None:
        broadcaster = Broadcaster(interval=0.01)
        source = Counter()
        async with broadcaster.subscribe("k", lambda: source) as queue:
            for value in range(1, 6):
                source.value = value
                while source.built != value:
                    await asyncio.sleep(0.01)
            assert queue.qsize() == 1 and await queue.get() == "5"
            broadcaster.close()
            assert await queue.get() == CLOSED

    asyncio.run(scenario())
