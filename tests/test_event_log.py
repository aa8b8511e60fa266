"""FlowEventLog: ordering, replay, delivery bookkeeping, the bounded queue, retention."""

import random

from engine.event_log import FlowEventLog


def msgs(*seqs):
    return [{"seq": s, "type": "x"} for s in seqs]


def test_out_of_order_arrivals_join_the_log_in_seq_order():
    log = FlowEventLog("f", "ws://x")
    order = list(range(1, 101))
    random.Random(3).shuffle(order)
    for seq in order:
        log.add(msgs(seq))
    assert [m["seq"] for m in log.events] == list(range(1, 101))


def test_gap_holds_later_events_back_and_duplicates_are_ignored():
    log = FlowEventLog("f", "ws://x")
    log.add(msgs(1, 3, 4))
    assert log.last_seq == 1
    log.add(msgs(2, 2, 1))
    assert [m["seq"] for m in log.events] == [1, 2, 3, 4]


def test_replay_after_seq():
    log = FlowEventLog("f", "ws://x")
    log.add(msgs(1, 2, 3))
    assert [m["seq"] for m in log.after(1)] == [2, 3]
    assert log.after(3) == []


def test_rewind_resends_everything_after_the_last_confirmed():
    log = FlowEventLog("f", "ws://x")
    log.add(msgs(1, 2, 3, 4))
    log.mark_sent(4)
    log.mark_delivered(2)
    assert log.to_send() == []
    log.rewind()
    assert [m["seq"] for m in log.to_send()] == [3, 4]


def test_queue_limit_drops_the_oldest_waiting_but_keeps_the_log():
    log = FlowEventLog("f", "ws://x", buffer_limit=10)
    log.add(msgs(*range(1, 26)))
    assert log.dropped == 15
    assert [m["seq"] for m in log.to_send()] == list(range(16, 26))
    assert log.last_seq == 25 and len(log.after(0)) == 25
    log.rewind()
    assert log.to_send()[0]["seq"] == 16


def test_retention_counts_from_the_end_of_the_flow():
    log = FlowEventLog("f", "ws://x")
    assert not log.expired(1e9, 10)
    log.finished_at = 100.0
    assert not log.expired(105.0, 10)
    assert log.expired(110.0, 10)
