"""`concepts.read_ahead`: items prepared on a thread, in order, a bounded distance ahead."""

import threading
import time

import pytest

from concepts.extraction.read_ahead import read_ahead


def test_items_come_in_order_prepared_off_the_caller_thread_and_a_bounded_distance_ahead():
    pulled, where = [], set()

    def items():
        for i in range(20):
            pulled.append(i)
            yield i

    def prepare(i):
        where.add(threading.current_thread().name)
        return i * i

    got = []
    for i, sq in read_ahead(items(), prepare, depth=2, name="t-ahead"):
        time.sleep(0.005)  # the thread has time to run ahead, as far as it may
        # the item in hand, up to 2 waiting in the queue, and 1 prepared and waiting to be put there
        assert len(pulled) <= i + 1 + 2 + 1
        got.append((i, sq))
    assert got == [(i, i * i) for i in range(20)]
    assert where == {"t-ahead"}


def test_an_error_is_raised_at_its_item_and_stopping_early_stops_the_thread():
    def prepare(i):
        if i == 3:
            raise ValueError("bad item 3")
        return i

    seen = []
    with pytest.raises(ValueError, match="bad item 3"):
        for i, _ in read_ahead(iter(range(10)), prepare):
            seen.append(i)
    assert seen == [0, 1, 2]

    before = threading.active_count()
    gen = read_ahead(iter(range(10**6)), lambda i: i, depth=1, name="t-stop")
    next(gen)
    gen.close()  # the caller stops: the thread ends (it would otherwise wait on a full queue forever)
    assert threading.active_count() <= before
    assert not any(t.name == "t-stop" for t in threading.enumerate())
