"""Dynamic batching: requests (each a batch of one or more prepared faces) wait in a queue; each worker takes the
oldest and joins the requests behind it until ``max_batch`` faces or until ``max_delay`` has passed since the
oldest arrived (what Triton's ``dynamic_batching`` does), runs the model once on the whole batch and hands each
request its rows. A request is never split across batches. Standard library + numpy."""

from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import Future

import numpy as np


class QueueFull(Exception):
    """More requests are waiting than the server takes (HTTP 503)."""


class Stopped(Exception):
    """The server is shutting down and takes no new requests (HTTP 503)."""


class Stats:
    """Counters behind ``/metrics`` for one model (Triton's metric names), updated under one lock."""

    def __init__(self):
        self.lock = threading.Lock()
        self.success = self.failure = 0  # requests
        self.inferences = self.executions = 0  # faces, model calls (batches)
        self.request_us = self.queue_us = self.compute_us = 0.0  # cumulative, microseconds
        self.batch_sizes: dict[int, int] = {}  # faces per model call -> model calls

    def request(self, ok: bool, seconds: float) -> None:
        with self.lock:
            if ok:
                self.success += 1
            else:
                self.failure += 1
            self.request_us += seconds * 1e6

    def batch(self, faces: int, queue_seconds: float, compute_seconds: float) -> None:
        with self.lock:
            self.executions += 1
            self.inferences += faces
            self.queue_us += queue_seconds * 1e6
            self.compute_us += compute_seconds * 1e6
            self.batch_sizes[faces] = self.batch_sizes.get(faces, 0) + 1


class _Item:
    __slots__ = ("x", "future", "arrived")

    def __init__(self, x: np.ndarray):
        self.x, self.future, self.arrived = x, Future(), time.perf_counter()


class Batcher:
    """``submit(x)`` queues a prepared batch and returns a Future of its outputs; ``instances`` worker threads
    run ``run(batch)`` on the joined batches. ``stop()`` refuses new requests and finishes the queued ones."""

    def __init__(self, run, *, max_batch: int, max_delay_s: float, instances: int = 1, max_queue: int = 1024,
                 stats: Stats | None = None, name: str = "edgefer"):
        self.run, self.max_batch, self.max_delay_s, self.max_queue = run, max_batch, max_delay_s, max_queue
        self.stats = stats or Stats()
        self._queue: deque[_Item] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._workers = [threading.Thread(target=self._work, name=f"edgefer-serve-{name}-{i}", daemon=True)
                         for i in range(instances)]
        for worker in self._workers:
            worker.start()

    @property
    def pending(self) -> int:
        return len(self._queue)

    def submit(self, x: np.ndarray) -> Future:
        item = _Item(x)
        with self._cond:
            if self._stopping:
                raise Stopped("the server is shutting down")
            if len(self._queue) >= self.max_queue:
                raise QueueFull(f"{len(self._queue)} requests are already waiting (--max-queue {self.max_queue})")
            self._queue.append(item)
            self._cond.notify()
        return item.future

    def stop(self, timeout: float | None = None) -> None:
        """Take no new requests, run the queued ones, and end the workers."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for worker in self._workers:
            worker.join(timeout)

    def _take(self) -> list[_Item] | None:
        """The next batch: the oldest request and those behind it that fit, waiting up to ``max_delay_s`` after
        the oldest arrived for more; None once stopping with nothing left."""
        with self._cond:
            while not self._queue:
                if self._stopping:
                    return None
                self._cond.wait()
            items = [self._queue.popleft()]
            faces = len(items[0].x)
            deadline = items[0].arrived + self.max_delay_s
            while faces < self.max_batch:
                if self._queue:
                    if faces + len(self._queue[0].x) > self.max_batch:
                        break
                    item = self._queue.popleft()
                    items.append(item)
                    faces += len(item.x)
                    continue
                left = deadline - time.perf_counter()
                if left <= 0 or self._stopping:
                    break
                self._cond.wait(left)
            if self._queue:
                self._cond.notify()  # another worker may start the next batch now
            return items

    def _work(self) -> None:
        while True:
            items = self._take()
            if items is None:
                return
            started = time.perf_counter()
            try:
                x = items[0].x if len(items) == 1 else np.concatenate([item.x for item in items])
                outputs = self.run(x)
            except BaseException as exc:  # noqa: BLE001 - each request gets the error; the worker lives on
                for item in items:
                    item.future.set_exception(exc)
                continue
            done = time.perf_counter()
            self.stats.batch(len(x), sum(started - item.arrived for item in items), done - started)
            row = 0
            for item in items:
                item.future.set_result(outputs[row : row + len(item.x)])
                row += len(item.x)
