"""Work done ahead on a thread: an iterator's items, each with a function's result, prepared
while the caller works on the ones before (on a GPU, reading and tokenizing the next shards
during this one's forward pass)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")
_END = object()


def read_ahead(items: Iterator[T], prepare: Callable[[T], R], depth: int = 1,
               name: str = "read-ahead") -> Iterator[tuple[T, R]]:
    """`(item, prepare(item))` for each item of `items`, in order. Pulling the items and preparing
    them runs on a thread, at most `depth` items ahead of the caller. An error there is raised
    here, at the item it happened at; a caller that stops early (break, error) stops the thread."""
    done = threading.Event()
    ready: queue.Queue = queue.Queue(maxsize=max(depth, 1))

    def put(x) -> bool:
        while not done.is_set():
            try:
                ready.put(x, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in items:
                if not put((item, prepare(item))):
                    return
        except BaseException as e:  # noqa: BLE001 - handed to the caller, raised there
            put(e)
            return
        put(_END)

    thread = threading.Thread(target=work, name=name, daemon=True)
    thread.start()
    try:
        while True:
            x = ready.get()
            if x is _END:
                return
            if isinstance(x, BaseException):
                raise x
            yield x
    finally:
        done.set()
        thread.join()
