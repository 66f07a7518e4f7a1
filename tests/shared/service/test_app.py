"""The chassis without a broker: the app's settings, the token rule, publishing and dead
letters through a fake channel (the real worker is tests/integration/shared/service)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from shared.config import Settings
from shared.events import EventCodec, InteractionEvent
from shared.service import create_app

TOKEN = "a-token-of-sixteen+"


@pytest.fixture
def service():
    return create_app(
        "probe",
        Settings(topic_prefix="stage.", http_port=7001, http_token=TOKEN),
        instance="probe-1",
        stream_buffer=8,
    )


def test_the_app_joins_its_own_prefixed_group_and_serves_on_its_port(service):
    conf = service.app.conf
    assert conf.id == "stage.marquee-probe"
    assert conf.web_port == 7001 and conf.web_bind == "127.0.0.1"
    assert conf.stream_buffer_maxsize == 8
    assert conf.broker_client_id == "marquee-probe"
    # Faust's data directory stays out of the checkout, private to this user.
    assert not Path(conf.datadir).resolve().is_relative_to(Path.cwd().resolve())
    assert not (conf.web_stats_enabled or conf.web_tables_enabled or conf.web_router_enabled)


class Request:
    def __init__(self, path: str, authorization: str | None = None) -> None:
        self.path = path
        self.headers = {"Authorization": authorization} if authorization else {}


def test_everything_but_the_probes_needs_the_token(service):
    assert service.authorized(Request("/livez")) and service.authorized(Request("/readyz"))
    assert not service.authorized(Request("/metrics"))
    assert not service.authorized(Request("/metrics", f"Bearer {TOKEN}x"))
    assert not service.authorized(Request("/metrics", TOKEN))
    assert service.authorized(Request("/metrics", f"Bearer {TOKEN}"))


def test_without_a_token_everything_is_open():
    open_service = create_app("probe", Settings())
    assert open_service.authorized(Request("/metrics")) and open_service.has_token(Request("/x"))


class Channel:
    """A Faust topic's ``send`` that records what it was given and confirms at once."""

    def __init__(self) -> None:
        self.sent: list[dict] = []

    async def send(self, **record):
        self.sent.append(record)
        confirmed = asyncio.get_running_loop().create_future()
        confirmed.set_result(None)
        return confirmed


def test_publish_sends_the_registry_record_and_waits_for_the_broker(service):
    channel = service._topics["stage.interactions"] = Channel()
    event = InteractionEvent.create(
        {"user_id": "u-9", "item_id": "i-1", "action": "click"}, source="urn:test"
    )
    asyncio.run(service.publish(event))
    [record] = channel.sent
    assert record["key"] == b"u-9"
    assert ("ce_type", b"marquee.interaction.v1") in record["headers"]
    assert EventCodec().decode(record["value"]).id == event.id


def test_a_dead_letter_goes_to_the_topics_dlq_and_is_counted(service):
    channel = service._topics["stage.interactions.dlq"] = Channel()

    class Message:
        topic, partition, offset = "stage.interactions", 0, 7
        key, value = b"u-1", b"\x00" * 300_000  # larger than an event, not than a letter

    asyncio.run(service.dead_letter(Message(), "interactions", ValueError("bad bytes")))
    letter = EventCodec(max_bytes=512 * 1024).decode(channel.sent[0]["value"])
    assert letter.data.error_class == "ValueError" and letter.data.offset == 7
    assert 'marquee_dead_letters_total{topic="interactions"} 1.0' in (
        service.metrics.render().decode()
    )
