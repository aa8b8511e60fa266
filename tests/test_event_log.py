"""FlowEventLog and EventLogStore: ordering, replay, delivery bookkeeping, bounds, retention."""

import random

from engine.event_log import EventLogStore, FlowEventLog


def msgs(*seqs: int) -> list[dict]:
    return [{"seq": s, "type": "x"} for s in seqs]


def seqs(messages: list[dict]) -> list[int]:
    return [m["seq"] for m in messages]


def new_log(**options) -> FlowEventLog:
    return FlowEventLog("f", "ws://x", **options)


def test_shuffled_arrivals_come_out_in_seq_order_without_gaps():
    log = new_log()
    order = list(range(1, 201))
    random.Random(3).shuffle(order)
    released = []
    for start in range(0, 200, 7):  # batches of shuffled events, as racing actor calls deliver them
        log.add(msgs(*order[start : start + 7]))
        released.extend(log.ready(1000))
        log.mark_sent(log.last_seq)
    assert released == log.events
    assert seqs(released) == list(range(1, 201))


def test_a_gap_holds_later_events_back_and_duplicates_are_ignored():
    log = new_log()
    log.add(msgs(1, 3, 4))
    assert log.last_seq == 1 and seqs(log.ready()) == [1]
    log.add(msgs(2, 2, 1, 3))
    assert seqs(log.events) == [1, 2, 3, 4]


def test_replay_after_seq():
    log = new_log()
    log.add(msgs(1, 2, 3))
    assert seqs(log.after(0)) == [1, 2, 3]
    assert seqs(log.after(1)) == [2, 3]
    assert log.after(3) == [] and log.after(99) == []


def test_a_gap_that_never_fills_is_skipped_after_the_timeout():
    log = new_log(gap_timeout=2.0)
    log.add(msgs(5, 6), now=10.0)  # 1-4 lost (say, the streamer restarted)
    assert log.ready() == [] and log.gap_deadline() == 12.0
    assert not log.skip_gap(11.9)
    assert log.skip_gap(12.0)
    assert seqs(log.ready()) == [5, 6] and log.skipped == 4 and log.gap_deadline() is None
    assert seqs(log.after(5)) == [6]


def test_confirmed_events_are_not_resent_but_recent_ones_are():
    log = new_log(resend_grace=1.0)
    log.add(msgs(1, 2, 3, 4, 5))
    log.mark_sent(5)
    log.mark_delivered(2, now=100.0)
    log.mark_delivered(4, now=103.0)
    assert log.ready() == [] and log.unconfirmed_count == 1
    log.rewind(now=103.5)  # 3-4 confirmed only 0.5 s before the loss: Backend 2 may have lost them
    assert seqs(log.ready()) == [3, 4, 5]
    log.mark_sent(5)
    log.rewind(now=105.0)
    assert seqs(log.ready()) == [5]


def test_the_queue_limit_drops_the_oldest_unconfirmed_from_delivery_only():
    log = new_log(buffer_limit=10)
    log.add(msgs(*range(1, 26)))
    assert log.dropped == 15 and log.pending_count == 10
    assert seqs(log.ready()) == list(range(16, 26))
    assert seqs(log.after(0)) == list(range(1, 26))
    log.rewind()
    assert log.ready()[0]["seq"] == 16  # dropped ones are not resent


def test_the_queue_limit_spares_confirmed_events_and_counts_each_drop_once():
    log = new_log(buffer_limit=10)
    log.add(msgs(*range(1, 11)))
    log.mark_sent(10)
    log.mark_delivered(10)
    log.add(msgs(*range(11, 21)))
    assert log.dropped == 0
    log.add(msgs(21, 22))
    log.add(msgs(23))
    assert log.dropped == 3 and seqs(log.ready())[0] == 14


def test_too_many_events_waiting_behind_a_gap_skip_it_at_once():
    log = new_log(buffer_limit=10)
    log.add(msgs(*range(3, 15)))
    assert log.skipped == 2 and log.last_seq == 14


def test_retention_counts_from_the_end_of_the_flow_once_delivery_ended():
    log = new_log()
    assert not log.expired(1e9, 10)
    log.finish(100.0)
    log.finish(104.0)  # the first end counts
    assert not log.expired(200.0, 10)  # still delivering
    log.end_delivery(130.0)
    assert not log.expired(109.9, 10)
    assert log.expired(110.0, 10)


def test_the_store_forgets_expired_logs_and_replaces_a_reused_flow_id():
    store = EventLogStore(retention=5.0, buffer_limit=50)
    first = store.open("a", "ws://x")
    first.add(msgs(1))
    store.open("b", "ws://x")
    assert store.open("a", "ws://y") is not first and store.get("a").buffer_limit == 50
    for name in ("a", "b"):
        store.finish(name, 10.0)
        store.get(name).end_delivery(10.0)
    store.finish("ghost", 10.0)
    assert store.expire(14.0) == [] and len(store) == 2
    assert sorted(store.expire(15.0)) == ["a", "b"] and len(store) == 0
