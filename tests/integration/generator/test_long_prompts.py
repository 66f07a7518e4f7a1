"""A long prompt over the real broker and Postgres (issue 15, finding 2): it delays no
request past its deadline, its own deadline holds through the prompt pass, and SIGTERM in
the middle of it stops the generator within its grace period, the request answered once
by the next worker.

The finding: 7,999 CJK characters (8,053 tokens) with ``deadline_seconds: 10`` and
``max_new_tokens: 1`` were answered ``ok`` after 118 s, because the prompt was read in
one pass; the requests queued behind it waited as long, one with a 5 s deadline included.
"""

from __future__ import annotations

import re
import signal
import time
from collections import defaultdict

from shared.events import EventCodec
from shared.events.models import ContentRequestEvent
from shared.kafka.publisher import Publisher
from tests.integration.generator.test_service import ENV, SERVE, committed, replies
from tests.integration.kafka_helpers import read_all
from tests.integration.worker_helpers import get, service_worker

#: 8,053 tokens once rendered as news: SmolLM2's context is 8,192, so it is admitted.
LONG_PROMPT = "的" * 7999
#: One prompt pass of 256 positions late in that prompt, on two busy CPU cores, and the
#: store and publish of a reply: how late past its deadline a reply may come.
CHUNK_MARGIN_S = 10.0
#: SIGTERM to exit: the README's grace period (Faust's stop plus one prompt pass).
GRACE_S = 15.0


def content_request(request_id: str, prompt: str, **fields) -> ContentRequestEvent:
    return ContentRequestEvent.create(
        {"request_id": request_id, "kind": "news", "prompt": prompt, "temperature": 0, **fields}
    )


def wait_for_a_batch(port: int, timeout_s: float = 30) -> None:
    """Until the worker has taken a batch (its batch-size histogram counts one)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        body = get(port, "/metrics")[1].decode()
        count = re.search(r"^marquee_generator_batch_size_count\S* (\S+)$", body, re.M)
        if count and float(count.group(1)) >= 1:
            return
        time.sleep(0.1)
    raise AssertionError("the generator took no batch")


def test_a_long_prompt_delays_no_request_past_its_deadline(topics, engine, tmp_path):
    small = {
        "soon": {"deadline_seconds": 5},
        **{f"small-{n}": {"deadline_seconds": 45, "max_new_tokens": 12} for n in range(3)},
    }
    with service_worker(topics, tmp_path, SERVE, **ENV) as (_, port):
        with Publisher(topics) as pub:
            long = content_request("long", LONG_PROMPT, deadline_seconds=10, max_new_tokens=1)
            pub.publish_sync(long)
            wait_for_a_batch(port)  # the requests below queue behind it, as in the finding
            sent = {"long": long}
            for request_id, fields in small.items():
                event = content_request(request_id, f"Tram line {request_id} opens", **fields)
                sent[request_id] = event
                pub.publish_sync(event)
        records = read_all(topics, "content-generated", len(sent), timeout_s=45)
        time.sleep(2)  # let any second reply arrive
        records = read_all(topics, "content-generated", 2 * len(sent), timeout_s=3)

    by_request = defaultdict(list)
    for record in records:
        event = EventCodec().decode(record.value)
        # The broker's record time: when the generator published the reply.
        took = record.timestamp / 1000 - sent[event.data.request_id].time.timestamp()
        by_request[event.data.request_id].append((event.data, took))
    assert sorted(by_request) == sorted(sent)
    assert all(len(got) == 1 for got in by_request.values()), "one reply per request"
    answers = {request_id: got[0] for request_id, got in by_request.items()}
    took = {request_id: round(seconds, 1) for request_id, (_, seconds) in answers.items()}
    print(f"\nseconds from request to reply: {took}")

    long_reply, long_took = answers["long"]
    # Its deadline passed while the prompt was read: cut there, like a deadline mid-text.
    assert long_reply.status == "ok" and long_reply.finish_reason == "deadline", long_reply
    assert long_reply.text == "" and long_reply.prompt_tokens == 8053
    assert long_took <= 10 + CHUNK_MARGIN_S, took
    soon, soon_took = answers["soon"]
    assert soon.status == "error" and soon.error == "deadline passed while queued"
    assert 5 <= soon_took <= 5 + 3, took  # by the watchdog, while the long batch ran
    for request_id in (r for r in small if r != "soon"):
        reply, seconds = answers[request_id]
        assert reply.status == "ok" and reply.text and reply.finish_reason in ("stop", "length")
        assert seconds <= small[request_id]["deadline_seconds"], took


def test_sigterm_mid_prompt_stops_within_the_grace_period_and_the_request_is_answered_once(
    topics, engine, tmp_path
):
    request = content_request("long", LONG_PROMPT, deadline_seconds=20, max_new_tokens=1)
    with service_worker(topics, tmp_path, SERVE, **ENV) as (proc, port):
        with Publisher(topics) as pub:
            pub.publish_sync(request)
        wait_for_a_batch(port)
        time.sleep(1)  # a few passes into the prompt
        proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        proc.wait(timeout=GRACE_S + 30)
        stopped_in = time.monotonic() - signalled
    print(f"\nSIGTERM to exit: {stopped_in:.1f} s")
    assert proc.returncode == 0
    assert stopped_in <= GRACE_S
    # Not answered, so not acked: the next worker gets it again.
    assert not read_all(topics, "content-generated", 1, timeout_s=1)
    assert set(committed(topics).values()) == {0}

    with service_worker(topics, tmp_path, SERVE, **ENV):
        replies(topics, 1, timeout_s=60)
        time.sleep(2)  # let any second reply arrive
        got = replies(topics, 2, timeout_s=3)
    (reply,) = [event.data for event in got]
    assert reply.request_id == "long" and "deadline" in (reply.error or reply.finish_reason)
