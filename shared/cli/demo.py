"""``marquee demo``: the whole system on embedded defaults (what ``make demo`` runs).

Starts every installed service (recommender, generator, dashboard, collector, feedback) as
child processes (logs under ``<run dir>/demo``), replays MovieLens-100k as live interactions
at a steady rate, asks the generator for a few pieces of each kind, and prints as results
arrive: generated pieces, recommendations for a few users as models are trained, and one
generated article being recommended by its content before anyone read it (the closed loop:
the generator publishes it on ``catalog``, the recommender maps its text to factors). Once a
model serves, a short seeded ``marquee simulate readers`` run asks for lists and clicks
through the collector, so the dashboard's Feedback panel fills. Runs until Ctrl-C or
``--duration``, prints the CTR per model version and strategy as the feedback service
counts it, then stops every service cleanly.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

from kafka import KafkaConsumer, TopicPartition

from ..config import Settings
from ..data import movielens
from ..events import EventCodec
from ..events.models import ContentRequestEvent
from ..kafka.admin import ensure_from_settings
from ..kafka.client import client_options
from ..kafka.publisher import Publisher
from ..registry import services
from ..topics import full_name
from .argtypes import positive_int, rate
from .demo_readers import Readers, ReadersFailed, app_key, ctr_lines
from .processes import ServiceFailed, Supervisor
from .replay import replay
from .topics import admin_client

#: The demo's recommender trains early and often, so models appear while you watch.
RECOMMENDER_ENV = {
    "MARQUEE_RECOMMENDER_RETRAIN_CHECK_SECONDS": "5",
    "MARQUEE_RECOMMENDER_RETRAIN_MIN_EVENTS": "5000",
    "MARQUEE_RECOMMENDER_RETRAIN_AFTER_EVENTS": "25000",
    "MARQUEE_RECOMMENDER_MODEL_POLL_SECONDS": "2",
}
#: How long the ratings wait for the recommender to embed the catalog (see wait_for_content).
CONTENT_WAIT_SECONDS = 180
REQUESTS = [
    ("news", "The city opens a new public library with a rooftop garden and a maker space."),
    ("news", "A local bakery wins the national bread championship for its sourdough."),
    ("script", "A 30-second radio spot for a neighbourhood farmers' market on Saturday."),
    ("lyrics", "A chorus about the first snow of winter falling on a quiet town."),
    ("assistant", "Give three tips for writing a clear news headline."),
]


def cast(first_model_events: int) -> tuple[list[str], str]:
    """Users the demo follows, and a reader to offer the generated article to: among the
    most active users of the ratings the first model is trained on, so each has factors
    by the time they are needed (a mapped article is scored against them)."""
    counts = Counter(r.user_id for r in movielens.load_ratings()[:first_model_events])
    regulars = [user for user, _ in counts.most_common(4)]
    return regulars[:3], regulars[3]


def register(commands) -> None:
    parser = commands.add_parser(
        "demo", help="run every service on MovieLens-100k and generated content, live"
    )
    parser.add_argument(
        "--limit", type=positive_int, help="replay only the first N ratings (default: all)"
    )
    parser.add_argument(
        "--rate", type=rate, default=1000.0, help="interactions per second (default: 1000/s)"
    )
    parser.add_argument(
        "--duration", type=positive_int, help="stop after this many seconds (default: Ctrl-C)"
    )
    parser.add_argument(
        "--max-new-tokens", type=positive_int, default=96, help="length of generated pieces"
    )
    parser.add_argument(
        "--base-port",
        type=positive_int,
        default=min(spec.default_port for spec in services().values()),
        help="HTTP ports of the services, in order, from here (default: %(default)s, "
        "each service's own port)",
    )
    parser.set_defaults(handler=run)


def _step(text: str) -> None:
    print(f"==> {text}", flush=True)


def _say(text: str) -> None:
    print(f"    {text}", flush=True)


class Demo:
    def __init__(self, args, settings: Settings, supervisor: Supervisor) -> None:
        self.args, self.settings, self.sup = args, settings, supervisor
        self.replies: queue.Queue = queue.Queue()
        self.stop = threading.Event()
        self.sent_requests: dict[str, tuple[str, str]] = {}
        self.model_version: int | None = None
        self.article: str | None = None  # item id of the first generated news piece
        self.shown_article = False
        self.replay_result: tuple[int, int] | None = None
        #: Simulated readers, started once the first model serves (None: not installed).
        self.readers: Readers | None = None
        self.urls: dict[str, str] = {}
        self.watched, self.reader = cast(
            int(RECOMMENDER_ENV["MARQUEE_RECOMMENDER_RETRAIN_MIN_EVENTS"])
        )

    # --- background work ---------------------------------------------------------------
    def start_replay(self) -> threading.Thread:
        def work() -> None:
            self.replay_result = replay(
                self.settings,
                rate=self.args.rate,
                limit=self.args.limit,
                progress=False,
                live=True,
                stop=self.stop,
                on_catalog=lambda films, _: self.wait_for_content(films),
            )

        thread = threading.Thread(target=work, name="replay", daemon=True)
        thread.start()
        return thread

    def wait_for_content(self, films: int) -> None:
        """Hold the ratings until the recommender has embedded the catalog's ``films``: the
        first model learns its map from content to factors on the items that have both when
        it loads, so one trained on a part-embedded catalog maps the generated article
        poorly, or not at all."""
        from sqlalchemy import text

        from ..db import make_engine

        _say(f"catalog: {films:,} MovieLens-100k films; the recommender embeds them first")
        query = text("SELECT count(*), count(content) FROM items WHERE origin = 'catalog'")
        engine = make_engine(self.settings)
        deadline = time.monotonic() + CONTENT_WAIT_SECONDS
        try:
            while not self.stop.is_set():
                with engine.connect() as conn:
                    stored, embedded = conn.execute(query).one()
                if embedded >= films:
                    _say(f"recommender: {embedded:,} catalog items embedded; replaying ratings")
                    return
                # Stored without content: that recommender has no encoder to wait for.
                if (stored >= films and not embedded) or time.monotonic() > deadline:
                    _say(
                        f"recommender: only {embedded:,} of {films:,} films embedded (no content"
                        " encoder? `make setup` builds it); the generated article may go"
                        " unrecommended"
                    )
                    return
                time.sleep(1)
        finally:
            engine.dispose()

    def start_reply_reader(self) -> threading.Thread:
        topic = full_name("content-generated", self.settings.topic_prefix)
        consumer = KafkaConsumer(**client_options(self.settings), group_id=None)
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(partitions)
        consumer.seek_to_end(*partitions)
        for tp in partitions:
            consumer.position(tp)  # resolve "end" now, before any request is sent

        def work() -> None:
            codec = EventCodec()
            try:
                while not self.stop.is_set():
                    for records in consumer.poll(timeout_ms=500).values():
                        for record in records:
                            self.replies.put(codec.decode(record.value).data)
            finally:
                consumer.close()

        thread = threading.Thread(target=work, name="replies", daemon=True)
        thread.start()
        return thread

    def send_requests(self) -> None:
        with Publisher(self.settings) as pub:
            for kind, prompt in REQUESTS:
                request_id = f"demo-{kind}-{uuid.uuid4().hex[:8]}"
                pub.publish(
                    ContentRequestEvent.create(
                        {
                            "request_id": request_id,
                            "kind": kind,
                            "prompt": prompt,
                            "max_new_tokens": self.args.max_new_tokens,
                            "temperature": 0.7,
                            "seed": 7,
                        }
                    )
                )
                self.sent_requests[request_id] = (kind, prompt)
        _say(f"asked the generator for {len(REQUESTS)} pieces: news, script, lyrics, assistant")

    # --- what is printed as it happens -------------------------------------------------
    def recommender(self, path: str) -> dict | None:
        status, body = self.sup.children["recommender"].get(path)
        return json.loads(body) if status == 200 else None

    def show_model(self) -> None:
        models = self.recommender("/models") or {"versions": []}
        active = next((v for v in models["versions"] if v["status"] == "active"), None)
        if active is None or active["id"] == self.model_version:
            return
        self.model_version = active["id"]
        holdout = active["metrics"].get("holdout", {})
        served, popular = holdout.get("served", {}), holdout.get("popularity", {})
        _step(
            f"recommender: model version {active['id']} active, trained on"
            f" {active['n_interactions']:,} interactions; held-out P@10"
            f" {served.get('precision@10', 0):.3f} vs popularity {popular.get('precision@10', 0):.3f}"
        )
        for user in self.watched:
            body = self.recommender(f"/users/{user}/recommendations?k=5")
            if body:
                items = "; ".join(
                    f"{i.get('title') or i['item_id']} ({i['score']:.2f})" for i in body["items"]
                )
                _say(f"user {user} [{body['strategy']}]: {items}")

    def show_reply(self, reply) -> None:
        if reply.request_id not in self.sent_requests:
            return
        kind, prompt = self.sent_requests[reply.request_id]
        _step(f"generator: {kind} piece, {reply.status}")
        _say(f"prompt: {prompt}")
        if reply.status == "ok":
            took = reply.timings.total_seconds if reply.timings else 0
            _say(f"{reply.completion_tokens} tokens in {took:.1f} s ({reply.finish_reason}):")
            for line in (reply.text or "").strip().splitlines()[:12]:
                _say(f"  | {line}")
            if kind == "news" and self.article is None and reply.item_id:
                self.article = reply.item_id
        else:
            _say(f"error: {reply.error}")

    def closed_loop(self) -> None:
        """The first generated article, in a reader's news as soon as the recommender has
        it: the generator published it on `catalog`, the recommender mapped its text to
        factors. Nobody has interacted with it (the demo publishes no interaction for it)."""
        if self.article is None or self.model_version is None or self.shown_article:
            return
        body = self.recommender(f"/users/{self.reader}/recommendations?k=3&kind=news")
        mine = next(
            (i for i in (body or {}).get("items", []) if i["item_id"] == self.article), None
        )
        if mine is None:
            return
        self.shown_article = True
        _step(
            f"closed loop: user {self.reader} is recommended the generated article"
            f' "{mine.get("title") or self.article}" ({self.article}, score {mine["score"]:.3f})'
            " by its content, before anyone read it"
        )

    def start_readers(self) -> None:
        """Readers ask for lists and click through the collector as soon as a model serves,
        so the dashboard's Feedback panel fills while the demo runs."""
        readers = self.readers
        if readers is None or readers.thread is not None or self.model_version is None:
            return
        _step(
            "readers: simulated MovieLens readers ask the recommender for lists and click"
            " through the collector (seeded); see the dashboard's Feedback panel"
        )
        readers.start(self.urls["recommender"], self.urls["collector"])

    def show_ctr(self) -> None:
        """CTR per version and strategy as the feedback service counts it, once it has
        every click the readers sent (or after a few seconds, with what it has)."""
        readers = self.readers
        if readers is None or readers.thread is None:
            return
        readers.wait(timeout=60)
        deadline, body = time.monotonic() + 10, None
        while time.monotonic() < deadline:
            try:
                status, body = self.sup.children["feedback"].get("/metrics/ctr?window=1h")
            except OSError:
                status = None
            counted = sum(g["clicks"] for g in json.loads(body)["groups"]) if status == 200 else -1
            if counted >= readers.clicks:
                break
            time.sleep(0.5)
        if body is None or status != 200:
            _say("feedback: /metrics/ctr did not answer; no CTR to show")
            return
        _step("feedback: CTR per model version and strategy (the feedback service's count)")
        for line in ctr_lines(body):
            _say(line)

    def tick(self) -> None:
        self.sup.check()
        while not self.replies.empty():
            self.show_reply(self.replies.get())
        self.show_model()
        self.start_readers()
        self.closed_loop()


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def run(args, settings: Settings) -> int:
    from ..db import current_revision, make_engine, upgrade

    started = time.monotonic()
    run_dir = Path(os.environ.get("MARQUEE_RUN_DIR", ".run"))
    _step(f"Kafka at {settings.kafka_bootstrap_servers}: ensuring topics")
    admin = admin_client(settings)
    try:
        report = ensure_from_settings(admin, settings)
    finally:
        admin.close()
    _say(f"{len(report.created)} created, {len(report.unchanged) + len(report.reconciled)} there")
    _step("Postgres: applying migrations")
    engine = make_engine(settings)
    try:
        upgrade(engine, settings.postgres_schema)
        revision = current_revision(engine, settings.postgres_schema)
        _say(f"schema {settings.postgres_schema} at migration {revision}")
    finally:
        engine.dispose()

    # A SIGTERM (a service manager, `timeout`) stops the demo as cleanly as Ctrl-C does.
    signal.signal(signal.SIGTERM, _interrupt)
    supervisor = Supervisor(run_dir / "demo", dict(os.environ))
    demo = Demo(args, settings, supervisor)
    specs = services()
    if {"collector", "feedback"} <= set(specs):
        try:  # before the collector starts, so its first key refresh knows the key
            demo.readers = Readers(dict(os.environ), app_key(dict(os.environ)), _say)
        except ReadersFailed as exc:
            _say(f"{exc}; the demo runs without simulated readers")
    try:
        _step(f"starting the services (logs in {supervisor.log_dir})")
        # Every installed service, on consecutive ports from --base-port in the registry's
        # order (by default port: each service's own port when the base is the first's).
        ports = {name: args.base_port + n for n, name in enumerate(specs)}
        demo.urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        dashboard_env = {"MARQUEE_DASHBOARD_RECOMMENDER_URL": demo.urls["recommender"]}
        if "feedback" in demo.urls:
            dashboard_env["MARQUEE_DASHBOARD_FEEDBACK_URL"] = demo.urls["feedback"]
        env = {"recommender": RECOMMENDER_ENV, "dashboard": dashboard_env}
        for name in specs:
            supervisor.start(name, ports[name], **env.get(name, {}))
        for name in specs:
            if name != "generator":
                supervisor.wait_up(name)
        supervisor.wait_up("generator", "/readyz", timeout=300)  # the model loaded
        _say(", ".join(f"{name} :{port}" for name, port in ports.items()) + " are up")
        _step(f"dashboard: http://127.0.0.1:{ports['dashboard']}/")

        limit = f"{args.limit:,}" if args.limit else "100,000"
        _step(
            f"replaying {limit} MovieLens-100k ratings as live interactions at {args.rate:,.0f}/s"
        )
        replaying = demo.start_replay()
        demo.start_reply_reader()
        demo.send_requests()
        last_progress = 0.0
        while args.duration is None or time.monotonic() - started < args.duration:
            demo.tick()
            if time.monotonic() - last_progress >= 15:
                last_progress = time.monotonic()
                state = "done" if not replaying.is_alive() else "running"
                _say(f"[{time.monotonic() - started:5.0f} s] replay {state}; Ctrl-C stops the demo")
            time.sleep(1)
    except KeyboardInterrupt:
        print()
    except ServiceFailed as exc:
        print(f"marquee demo: {exc}", flush=True)
        return 1
    finally:
        demo.stop.set()
        demo.show_ctr()
        _step("stopping the services")
        supervisor.stop()
    if demo.replay_result:
        sent, confirmed = demo.replay_result
        _say(f"interactions confirmed by the broker: {confirmed:,} of {sent:,}")
    _say(f"took {time.monotonic() - started:.0f} s")
    return 0
