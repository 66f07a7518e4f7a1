"""``marquee publish interaction|request|item``: send one validated event and confirm it."""

from __future__ import annotations

import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

from ..config import Settings
from ..errors import ConfigurationError, MarqueeError
from ..events import ContentRequestEvent, InteractionEvent, ItemEvent
from ..events.envelope import DEFAULT_SOURCE
from ..events.models import ContentKind, InteractionAction
from ..kafka.publisher import Publisher
from ..kafka.replies import ReplyWatch
from .argtypes import aware_datetime, positive_int

ACTIONS = list(InteractionAction.__args__)  # type: ignore[attr-defined]
KINDS = list(ContentKind.__args__)  # type: ignore[attr-defined]


def register(commands) -> None:
    parser = commands.add_parser("publish", help="publish one event")
    sub = parser.add_subparsers(dest="publish_command", required=True, parser_class=type(parser))

    inter = sub.add_parser("interaction", help="a user's interaction with an item")
    inter.add_argument("--user", required=True, help="user id")
    inter.add_argument("--item", required=True, help="item id")
    inter.add_argument("--type", dest="action", required=True, choices=ACTIONS)
    inter.add_argument("--dwell-seconds", type=float, help="seconds spent (needed for dwell)")
    inter.add_argument("--rating", type=float, help="explicit rating, if the app has one")
    inter.add_argument("--source", default=DEFAULT_SOURCE, help="CloudEvents source URI")
    inter.add_argument("--id", help="event id (default: a new UUID); reuse it to test dedupe")
    inter.set_defaults(handler=run_interaction)

    req = sub.add_parser("request", help="a request for generated content")
    req.add_argument("--kind", required=True, choices=KINDS)
    req.add_argument("--prompt", default="", help="the brief or question (a digest needs none)")
    req.add_argument("--user", help="whose briefing (a digest needs it)")
    req.add_argument("--max-items", type=positive_int, help="a digest's items (default: 5)")
    req.add_argument(
        "--ungrounded",
        action="store_true",
        help="an assistant answer without catalog retrieval (grounded: false)",
    )
    req.add_argument("--request-id", help="default: a new UUID")
    req.add_argument("--max-new-tokens", type=int, default=256)
    req.add_argument("--temperature", type=float, default=0.7)
    req.add_argument("--seed", type=int)
    req.add_argument("--source", default=DEFAULT_SOURCE, help="CloudEvents source URI")
    req.add_argument(
        "--wait",
        action="store_true",
        help="wait for the generator's reply to this request and print its text",
    )
    req.add_argument(
        "--wait-seconds",
        type=positive_int,
        default=600,
        help="with --wait: how long to wait (default: %(default)s)",
    )
    req.set_defaults(handler=run_request)

    item = sub.add_parser("item", help="an item of the catalog (an upsert: replaces it whole)")
    item.add_argument("--id", dest="item_id", required=True, help="item id")
    item.add_argument("--kind", required=True, help="article, video, podcast, news, film, ...")
    item.add_argument("--title", required=True)
    item.add_argument("--summary", default="")
    body = item.add_mutually_exclusive_group()
    body.add_argument("--body", default="", help="the text itself")
    body.add_argument("--body-file", metavar="PATH", help="read the text from PATH ('-': stdin)")
    item.add_argument("--tag", dest="tags", action="append", default=[], help="repeatable")
    item.add_argument("--language", help="a BCP 47 tag such as en or pt-BR")
    item.add_argument(
        "--published-at", type=aware_datetime, help="ISO 8601 with a timezone (default: now)"
    )
    item.add_argument("--expires-at", type=aware_datetime, help="never recommended from then on")
    item.add_argument("--hidden", action="store_true", help="withdrawn: never recommended")
    item.add_argument("--url")
    item.add_argument("--source", default=DEFAULT_SOURCE, help="CloudEvents source URI")
    item.set_defaults(handler=run_item)


def _send(settings: Settings, event) -> int:
    with Publisher(settings) as publisher:
        meta = publisher.publish_sync(event)
    print(
        f"published {event.type} id={event.id} to {meta.topic}[{meta.partition}]@{meta.offset}",
        flush=True,
    )
    return 0


def run_interaction(args, settings: Settings) -> int:
    data = {"user_id": args.user, "item_id": args.item, "action": args.action}
    if args.dwell_seconds is not None:
        data["dwell_seconds"] = args.dwell_seconds
    if args.rating is not None:
        data["rating"] = args.rating
    return _send(settings, InteractionEvent.create(data, source=args.source, id=args.id))


def read_body(path: str) -> str:
    """The text of ``path`` (``-``: stdin), its line endings as ``\\n``."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise ConfigurationError(f"cannot read --body-file {path}: {reason}") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def run_item(args, settings: Settings) -> int:
    data = {
        "item_id": args.item_id,
        "kind": args.kind,
        "title": args.title,
        "summary": args.summary,
        "body": read_body(args.body_file) if args.body_file else args.body,
        "tags": args.tags,
        "published_at": args.published_at or datetime.now(UTC),
        "hidden": args.hidden,
    }
    for field in ("language", "expires_at", "url"):
        if getattr(args, field) is not None:
            data[field] = getattr(args, field)
    return _send(settings, ItemEvent.create(data, source=args.source))


def run_request(args, settings: Settings) -> int:
    request_id = args.request_id or str(uuid.uuid4())
    data = {
        "request_id": request_id,
        "kind": args.kind,
        "prompt": args.prompt,
        "max_new_tokens": args.max_new_tokens,
        "temperature": args.temperature,
    }
    if args.seed is not None:
        data["seed"] = args.seed
    if args.user is not None:
        data["user_id"] = args.user
    if args.max_items is not None:
        data["max_items"] = args.max_items
    if args.ungrounded:
        data["grounded"] = False
    event = ContentRequestEvent.create(data, source=args.source, id=request_id)
    if not args.wait:
        return _send(settings, event)
    # Where the replies end now, before the request leaves: a quick reply cannot be missed.
    with ReplyWatch(settings, "content-generated") as replies:
        _send(settings, event)
        reply = replies.wait_for(request_id, timeout=args.wait_seconds)
    if reply is None:
        raise MarqueeError(
            f"no reply to request {request_id} within {args.wait_seconds} s; is "
            "`marquee serve generator` running? (`marquee tail content-generated` shows replies)"
        )
    if reply.status != "ok":
        raise MarqueeError(
            f"the generator answered request {request_id} with an error: {reply.error}"
        )
    print(reply.text)
    if reply.item_ids is not None:
        print(f"[items: {', '.join(reply.item_ids) or 'none'}]", file=sys.stderr)
    print(
        f"[{reply.kind}, {reply.completion_tokens} tokens, finish: {reply.finish_reason}, "
        f"model {reply.model}]",
        file=sys.stderr,
    )
    return 0
