"""The delivery's ack bookkeeping (``agents/deliver.py`` ``AckTracker``): events acked in offset order per
partition, and its two read-ahead bounds, one for what is not handled yet and one for what is handled but
waits behind an earlier event of its partition."""

from __future__ import annotations

from dataclasses import dataclass, field

from faust.types import TP

from agents.deliver import AckTracker


@dataclass
class Message:
    tp: TP
    offset: int
    value: bytes | None = b"record"


@dataclass
class Event:
    message: Message
    value: bytes | None = b"record"
    acked: list[int] = field(default_factory=list)

    def ack(self) -> bool:
        self.acked.append(self.message.offset)
        return True


def events(tp: TP, count: int) -> list[Event]:
    return [Event(Message(tp, offset)) for offset in range(count)]


def room(tracker: AckTracker) -> bool:
    return tracker._room.is_set()


def test_events_are_acked_in_offset_order_and_handled_ones_let_go_of_their_bytes() -> None:
    tracker = AckTracker(limit=100, held_limit=100)
    first, second, third = events(TP("n", 0), 3)
    slots = [tracker.track(first, 2), tracker.track(second, 1), tracker.track(third, 1)]
    tracker.done(slots[1])
    tracker.done(slots[2])
    assert first.acked == second.acked == third.acked == []  # the first is not handled yet
    assert second.value is None and second.message.value is None  # only its offset is needed now
    tracker.done(slots[0])
    assert first.acked == [] and first.value == b"record"  # one of its two notifications is left
    tracker.done(slots[0])
    assert (first.acked, second.acked, third.acked) == ([0], [1], [2])


def test_notifications_handled_behind_a_held_one_do_not_count_against_the_unhandled_bound() -> None:
    tracker = AckTracker(limit=3, held_limit=5)
    noisy = events(TP("notifications.noisy", 0), 7)
    held = tracker.track(noisy[0], 1)
    for event in noisy[1:3]:
        tracker.done(tracker.track(event, 1))
    assert room(tracker)  # one unhandled, two handled behind it: the old single bound (3) stopped here
    for event in noisy[3:6]:
        tracker.done(tracker.track(event, 1))
    assert not room(tracker)  # five handled and unacked: the held bound
    tracker.done(held)
    assert room(tracker) and [e.acked for e in noisy[:6]] == [[0], [1], [2], [3], [4], [5]]

    quiet = events(TP("notifications.quiet", 0), 3)
    for event in quiet:
        tracker.track(event, 1)
    assert not room(tracker)  # three notifications not handled yet


def test_a_lost_partition_gives_back_its_counts_and_its_late_completions_are_ignored() -> None:
    tracker = AckTracker(limit=2, held_limit=10)
    lost, kept = TP("n", 0), TP("n", 1)
    old = tracker.track(events(lost, 1)[0], 2)
    assert not room(tracker)
    tracker.drop({kept.partition})
    assert room(tracker)
    again = tracker.track(Event(Message(lost, 0)), 1)  # re-assigned: read again from the commit
    tracker.done(old)
    tracker.done(old)
    assert old.event.acked == [] and not again.done
    tracker.done(again)
    assert again.event.acked == [0] and room(tracker)
