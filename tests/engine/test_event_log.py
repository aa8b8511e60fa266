"""FlowEventLog and EventLogStore: ordering, replay, delivery bookkeeping, bounds, retention."""

import hashlib
import json
import random

from engine.event_log import EventLogStore, FlowEventLog, encode_event, fit_event


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


def test_retention_counts_from_the_end_of_the_flow_whatever_the_delivery_state():
    log = new_log()
    assert not log.expired(1e9, 10)  # running flows are bounded by size, not time
    log.finish(100.0)
    log.finish(104.0)  # the first end counts
    assert not log.expired(109.9, 10)
    assert log.expired(110.0, 10)  # still delivering: a hard deadline all the same


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


def big_event(seq: int, size: int, flow_id: str = "f") -> dict:
    return {
        "type": "element_completed",
        "flow_id": flow_id,
        "seq": seq,
        "element_id": "e",
        "data": {"outputs": {"big": "x" * size, "small": "ok"}, "duration_ms": 1.5},
    }


def test_an_oversized_event_has_its_large_values_replaced_and_fits():
    event = big_event(3, 2_000_000)
    fitted, size, truncated = fit_event(event, 512 * 1024, 64 * 1024)
    assert truncated and size == len(encode_event(fitted)) <= 512 * 1024
    placeholder = fitted["data"]["outputs"]["big"]
    encoded_value = json.dumps("x" * 2_000_000)
    assert placeholder == {
        "truncated": True,
        "bytes": len(encoded_value),
        "sha256": hashlib.sha256(encoded_value.encode()).hexdigest(),
        "preview": encoded_value[:200],
    }
    assert fitted["data"]["outputs"]["small"] == "ok" and fitted["seq"] == 3 and fitted["data"]["duration_ms"] == 1.5
    assert event["data"]["outputs"]["big"] == "x" * 2_000_000  # the caller's event is left alone
    many = {"seq": 1, "type": "x", "data": {"inputs": {f"k{i}": "y" * 40_000 for i in range(40)}}}
    fitted, size, _ = fit_event(many, 512 * 1024, 64 * 1024)  # each value under the cap, all of them over
    assert size <= 512 * 1024 and sum(isinstance(v, dict) for v in fitted["data"]["inputs"].values()) >= 27
    small = big_event(1, 10)
    assert fit_event(small, 512 * 1024, 64 * 1024) == (small, len(encode_event(small)), False)


def test_a_log_with_an_event_limit_holds_only_events_that_fit():
    log = new_log(max_event_bytes=64 * 1024, value_max_bytes=4096)
    log.add([big_event(1, 10), big_event(2, 1_000_000)])
    assert log.truncated == 1 and all(len(encode_event(e)) <= 64 * 1024 for e in log.events)
    assert log.retained_bytes == sum(len(encode_event(e)) for e in log.events) < 64 * 1024


def test_replay_is_paginated_by_count_and_bytes():
    log = new_log()
    log.add(msgs(*range(1, 1001)))
    assert seqs(log.after(0, limit=500)) == list(range(1, 501))
    assert seqs(log.after(500, limit=500)) == list(range(501, 1001)) and log.after(1000, limit=500) == []
    size = len(encode_event(msgs(11)[0]))
    assert seqs(log.after(10, limit=500, max_bytes=size * 3)) == [11, 12, 13]
    assert seqs(log.after(10, limit=500, max_bytes=1)) == [11]  # a page never comes back empty


def test_a_log_over_its_byte_cap_keeps_first_and_latest_events():
    log = new_log(max_bytes=100_000)
    for seq in range(1, 201):
        log.add([big_event(seq, 2_000)])
    assert log.retained_bytes <= 100_000 and log.evicted > 0
    kept = seqs(log.events)
    assert kept[0] == 1 and kept[-1] == 200 and kept[1:] == list(range(kept[1], 201))
    assert log.evicted == 200 - len(kept) and log.state()["evicted"] == log.evicted
    assert log.retained_bytes == sum(len(encode_event(e)) for e in log.events)


def test_the_store_total_cap_drops_finished_logs_oldest_and_delivered_first():
    store = EventLogStore(retention=3600, max_total_bytes=50_000)
    for name, ended in (("running", None), ("old-delivering", 1.0), ("old-delivered", 2.0), ("new-delivered", 3.0)):
        log = store.open(name, "ws://x")
        store.add(log, [big_event(1, 10_000, name)], 0.0)
        if ended is not None:
            log.finish(ended)
            if name.endswith("delivered"):
                log.end_delivery(ended)
    assert store.total_bytes > 40_000 and store.over_total() == []
    store.add(store.get("running"), [big_event(2, 10_000, "running")], 5.0)
    assert store.over_total() == ["old-delivered"]
    store.add(store.get("running"), [big_event(3, 30_000, "running")], 6.0)
    assert store.over_total() == ["new-delivered", "old-delivering"]
    assert list(store.logs) == ["running"] and store.total_bytes == store.get("running").retained_bytes
    store.open("running", "ws://y")  # a reused id releases the old log's bytes
    assert store.total_bytes == 0
