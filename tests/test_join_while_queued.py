"""A joiner's join request that waits in line runs `while_queued` (node.import_for_etcd_start)
in a thread of its own, and the answer is still read the moment it comes; an answer within
QUEUED_AFTER (the first joiner's) runs nothing beside it. The join API is stood in for by its
answer's timing only: what is tested is join/client.py's _post."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from etcdward.join import client as jc


class AnswerAfter:
    """The one method of JoinClient that _post calls, answering after `delay` seconds."""

    def __init__(self, delay: float) -> None:
        self.delay = delay

    async def call_with_headers(self, method: str, path: str, body: object) -> tuple[dict[str, str], dict[str, str]]:
        assert (method, path) == ("POST", jc.MEMBERS)
        await asyncio.sleep(self.delay)
        return {"memberID": "1"}, {}


def test_a_prompt_answer_runs_nothing_beside_it() -> None:
    ran: list[str] = []
    ans, _ = asyncio.run(jc._post(AnswerAfter(0.05), {}, lambda: ran.append("x")))  # type: ignore[arg-type]
    assert ans == {"memberID": "1"} and ran == []


def test_waiting_in_line_runs_the_work_in_a_thread_and_reads_the_answer_meanwhile() -> None:
    started, release = threading.Event(), threading.Event()
    where: list[str] = []

    def work() -> None:  # stands for a long import: holds on until the answer was read
        where.append(threading.current_thread().name)
        started.set()
        release.wait(10)

    async def main() -> float:
        t0 = time.monotonic()
        await jc._post(AnswerAfter(jc.QUEUED_AFTER + 0.3), {}, work)  # type: ignore[arg-type]
        return time.monotonic() - t0

    try:
        took = asyncio.run(main())
        assert started.is_set() and where == ["while-queued"]
        assert took < jc.QUEUED_AFTER + 0.3 + 1.0  # not held up by the work still running
    finally:
        release.set()


def test_a_failing_work_is_not_the_joins_failure() -> None:
    def work() -> None:
        raise ImportError("stands for a broken import")

    ans, _ = asyncio.run(jc._post(AnswerAfter(jc.QUEUED_AFTER + 0.2), {}, work))  # type: ignore[arg-type]
    assert ans == {"memberID": "1"}


def test_a_cancelled_join_cancels_its_request() -> None:
    client = AnswerAfter(30)

    async def main() -> None:
        task = asyncio.create_task(jc._post(client, {}, None))  # type: ignore[arg-type]
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0)
        assert all(t is asyncio.current_task() for t in asyncio.all_tasks())  # the request went too

    asyncio.run(main())
