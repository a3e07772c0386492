"""The request coalescer: concurrent items share calls within a size budget, each gets its own
result or error, and waiting is bounded."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from mechscope.activation_server.http.coalescer import Coalescer
from mechscope.activation_server.http.runner import ComputeRunner, Overloaded


class Recorder:
    """A batched function that doubles numbers, fails on negatives, and can be held at a gate."""

    def __init__(self):
        self.calls: list[list[int]] = []
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, items: list[int]) -> list:
        self.gate.wait(10)
        self.calls.append(list(items))
        return [ValueError(f"negative {x}") if x < 0 else 2 * x for x in items]


def run(coro):
    return asyncio.run(coro)


def test_items_that_wait_together_share_one_call_and_keep_their_own_results():
    recorder = Recorder()

    async def main():
        runner = ComputeRunner(workers=1, max_queue=4)
        coalescer = Coalescer(runner, recorder, max_size=100, max_waiting=50)
        recorder.gate.clear()                              # hold the first call ...
        first = asyncio.ensure_future(coalescer.submit(0))
        await asyncio.sleep(0.05)
        rest = [asyncio.ensure_future(coalescer.submit(i)) for i in range(1, 10)]  # ... while 9 more arrive
        await asyncio.sleep(0.05)
        recorder.gate.set()
        return await first, await asyncio.gather(*rest), coalescer

    first, rest, coalescer = run(main())
    assert [first, *rest] == [2 * i for i in range(10)]
    assert recorder.calls == [[0], list(range(1, 10))]
    assert (coalescer.calls, coalescer.items, coalescer.waiting) == (2, 10, 0)


def test_size_budget_splits_calls_and_an_oversized_item_still_runs_alone():
    recorder = Recorder()

    async def main():
        runner = ComputeRunner(workers=1, max_queue=4)
        coalescer = Coalescer(runner, recorder, max_size=5, max_waiting=50, size=lambda x: x)
        recorder.gate.clear()
        blocker = asyncio.ensure_future(coalescer.submit(1))
        await asyncio.sleep(0.05)
        items = [2, 2, 2, 9, 1]
        futures = [asyncio.ensure_future(coalescer.submit(i)) for i in items]
        await asyncio.sleep(0.05)
        recorder.gate.set()
        await blocker
        return await asyncio.gather(*futures)

    assert run(main()) == [4, 4, 4, 18, 2]
    assert recorder.calls == [[1], [2, 2], [2], [9], [1]]  # in arrival order, each call within 5 (or one item)


def test_a_failing_item_gets_its_error_and_the_others_their_results():
    recorder = Recorder()

    async def main():
        coalescer = Coalescer(ComputeRunner(workers=1, max_queue=4), recorder, max_size=10, max_waiting=10)
        return await asyncio.gather(*(coalescer.submit(x) for x in (3, -1, 4)), return_exceptions=True)

    good, bad, other = run(main())
    assert (good, other) == (6, 8)
    assert isinstance(bad, ValueError) and "negative -1" in str(bad)


def test_waiting_beyond_the_bound_is_refused_with_overloaded():
    recorder = Recorder()

    async def main():
        runner = ComputeRunner(workers=1, max_queue=0, retry_after_s=7)
        coalescer = Coalescer(runner, recorder, max_size=100, max_waiting=3)
        recorder.gate.clear()
        running = asyncio.ensure_future(coalescer.submit(0))
        await asyncio.sleep(0.05)                       # taken by the running call: no longer waiting
        waiting = [asyncio.ensure_future(coalescer.submit(i)) for i in (1, 2, 3)]
        await asyncio.sleep(0)
        with pytest.raises(Overloaded) as refused:
            await coalescer.submit(4)
        recorder.gate.set()
        return refused.value, await running, await asyncio.gather(*waiting)

    refused, running, waiting = run(main())
    assert refused.retry_after_s == 7
    assert (running, waiting) == (0, [2, 4, 6])


def test_a_cancelled_waiter_is_skipped():
    recorder = Recorder()

    async def main():
        coalescer = Coalescer(ComputeRunner(workers=1, max_queue=4), recorder, max_size=100, max_waiting=10)
        recorder.gate.clear()
        first = asyncio.ensure_future(coalescer.submit(0))
        await asyncio.sleep(0.05)
        gone = asyncio.ensure_future(coalescer.submit(1))
        kept = asyncio.ensure_future(coalescer.submit(2))
        await asyncio.sleep(0)
        gone.cancel()
        recorder.gate.set()
        return await first, await kept

    assert run(main()) == (0, 4)
    assert recorder.calls == [[0], [2]]


class SlowRecorder(Recorder):
    """A batched function that takes ``seconds`` per call, like an engine pass."""

    def __init__(self, seconds: float):
        super().__init__()
        self.seconds = seconds

    def __call__(self, items: list[int]) -> list:
        time.sleep(self.seconds)
        return super().__call__(items)


def closed_loop_calls(gather_s: float, clients: int = 4, rounds: int = 6) -> list[list[int]]:
    """``clients`` clients, each sending its next item a little after its answer (client j after
    3·j ms, as answers reach clients one after another); the calls they got."""
    recorder = SlowRecorder(0.03)

    async def client(coalescer, j):
        for r in range(rounds):
            assert await coalescer.submit(100 * j + r) == 2 * (100 * j + r)
            await asyncio.sleep(0.003 * j)

    async def main():
        coalescer = Coalescer(ComputeRunner(workers=1, max_queue=8), recorder, max_size=100, max_waiting=50,
                              max_running=1, gather_s=gather_s)
        await asyncio.gather(*(client(coalescer, j) for j in range(clients)))

    run(main())
    return recorder.calls


def test_gathering_keeps_closed_loop_clients_in_one_call():
    gathered = closed_loop_calls(gather_s=0.05)
    assert sorted(len(c) for c in gathered[1:]) == [4] * 5    # after the first call: all four in every call
    assert len(gathered) <= 7
    # without gathering, the first client back starts a call alone and the others wait for it
    greedy = closed_loop_calls(gather_s=0.0)
    assert len(greedy) > len(gathered) and min(len(c) for c in greedy[1:]) < 4


def test_a_lone_client_never_waits_for_the_gathering_gap():
    recorder = SlowRecorder(0.0)

    async def main():
        coalescer = Coalescer(ComputeRunner(workers=1, max_queue=8), recorder, max_size=100, max_waiting=50,
                              max_running=1, gather_s=0.5)
        start = time.monotonic()
        for i in range(4):                   # answered, then comes back: expected alone
            await coalescer.submit(i)
        lone = time.monotonic() - start
        await asyncio.gather(*(coalescer.submit(i) for i in range(4)))   # a call of 4 ...
        await asyncio.sleep(0.6)             # ... none of whom comes back within the gap
        start = time.monotonic()
        await coalescer.submit(9)
        return lone, time.monotonic() - start

    lone, after_pause = run(main())
    assert lone < 0.25 and after_pause < 0.25     # a wait for the 0.5 s gap would show
    assert recorder.calls[-1] == [9]


def test_gathering_needs_one_call_at_a_time():
    with pytest.raises(ValueError, match="max_running=1"):
        Coalescer(ComputeRunner(workers=2, max_queue=0), Recorder(), max_size=4, max_waiting=4, gather_s=0.01)
