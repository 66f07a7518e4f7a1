"""``marquee simulate readers``: MovieLens-100k readers against the live HTTP API.

Each simulated reader asks the recommender for a list (as a front end would, naming the
``surface``), clicks what the click model (:mod:`.readers`) says, and sends those clicks,
each naming the list's ``impression_id``, through the collector with an app key. The
feedback service then attributes them; ``GET /metrics/ctr`` shows the result.
"""

from __future__ import annotations

import http.client
import json
import random
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime
from urllib.parse import urlsplit

from shared.config import Settings
from shared.errors import ConfigurationError, MarqueeError

COMMAND = "simulate readers"


class SimulationFailed(MarqueeError):
    """The recommender or the collector refused or could not be reached."""


def register(commands) -> None:
    from shared.registry import service

    parser = commands.add_parser("simulate", help="simulated traffic for demos and benchmarks")
    sub = parser.add_subparsers(dest="simulate_command", required=True, parser_class=type(parser))
    readers = sub.add_parser(
        "readers", help="MovieLens readers ask for lists and click them, through the collector"
    )
    readers.add_argument("--key", required=True, help="a collector app key (`-`: read stdin)")
    readers.add_argument("--source", required=True, help="the app's CloudEvents source")
    readers.add_argument("--readers", type=int, default=200, help="how many readers (default 200)")
    readers.add_argument("--k", type=int, default=10, help="items per list (default 10)")
    readers.add_argument("--seed", type=int, default=18, help="same seed, same clicks")
    readers.add_argument("--surface", default="simulator", help="surface the lists are for")
    readers.add_argument(
        "--recommender",
        default=f"http://127.0.0.1:{service('recommender').default_port}",
        help="the recommender's URL",
    )
    readers.add_argument(
        "--collector",
        default=f"http://127.0.0.1:{service('collector').default_port}",
        help="the collector's URL",
    )
    readers.set_defaults(handler=run_readers)


class _Http:
    """One keep-alive connection to ``base``; one-line errors naming what failed."""

    def __init__(self, base: str, what: str) -> None:
        parts = urlsplit(base)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigurationError(f"{what} URL must look like http://host:port, got {base!r}")
        kind = (
            http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        )
        self.connection = kind(parts.hostname, parts.port, timeout=30)
        self.base, self.what = base, what

    def call(self, method: str, path: str, body: bytes | None = None, headers=None) -> dict:
        try:
            self.connection.request(method, path, body=body, headers=headers or {})
            response = self.connection.getresponse()
            raw = response.read()
        except OSError as exc:
            self.connection.close()
            raise SimulationFailed(f"cannot reach the {self.what} at {self.base}: {exc}") from None
        if response.status >= 300:
            raise SimulationFailed(
                f"{self.what} answered {method} {path.split('?')[0]} with {response.status}: "
                f"{raw[:200].decode(errors='replace')}"
            )
        return json.loads(raw) if raw else {}


def run_readers(args, settings: Settings) -> int:
    from shared.data.movielens import load_ratings

    from .ctr import wilson
    from .readers import ClickModel, future_items

    key = sys.stdin.readline().strip() if args.key == "-" else args.key
    if not 1 <= args.k <= 200 or args.readers < 1:
        raise ConfigurationError("--k must be 1 to 200 and --readers at least 1")
    future = future_items(load_ratings())
    users = random.Random(args.seed).sample(sorted(future, key=int), min(args.readers, len(future)))
    model = ClickModel()
    token = settings.http_token.get_secret_value() if settings.http_token else None
    recommender = _Http(args.recommender, "recommender")
    collector = _Http(args.collector, "collector")
    asks = {"Authorization": f"Bearer {token}"} if token else {}
    sends = {"Authorization": f"Bearer {key}", "Content-Type": "application/cloudevents-batch+json"}
    tally: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])  # lists, slots, clicks
    started = time.monotonic()
    for n, user in enumerate(users, start=1):
        path = f"/users/{user}/recommendations?k={args.k}&surface={args.surface}"
        answer = recommender.call("GET", path, headers=asks)
        shown = [item["item_id"] for item in answer["items"]]
        clicked = model.clicks(shown, future[user], seed=args.seed, reader=user)
        counts = tally[answer["strategy"]]
        counts[0] += 1
        counts[1] += len(shown)
        counts[2] += len(clicked)
        if clicked:
            now = datetime.now(UTC).isoformat()
            events = [
                {
                    "specversion": "1.0",
                    "id": f"sim-{args.seed}-{answer['impression_id']}-{position}",
                    "source": args.source,
                    "type": "marquee.interaction.v1",
                    "time": now,
                    "data": {
                        "user_id": user,
                        "item_id": shown[position - 1],
                        "action": "click",
                        "impression_id": answer["impression_id"],
                    },
                }
                for position in clicked
            ]
            reply = collector.call("POST", "/v1/events", json.dumps(events).encode(), sends)
            if reply.get("accepted") != len(events):
                raise SimulationFailed(f"the collector did not accept every click: {reply}")
        if n % 50 == 0 or n == len(users):
            print(f"{n}/{len(users)} readers in {time.monotonic() - started:.0f} s", flush=True)
    for strategy, (lists, slots, clicks) in sorted(tally.items()):
        interval = wilson(clicks, slots)
        bounds = f"[{interval[0]:.3f}, {interval[1]:.3f}]" if interval else "-"
        ctr = f"{clicks / slots:.3f}" if slots else "-"
        print(f"{strategy}: {lists} lists, {slots} slots, {clicks} clicks, CTR {ctr} 95% {bounds}")
    return 0
