"""Prompt rendering: a kind's template (``templates/<kind>.yaml``) + the model's chat template.

A kind's file holds an optional ``system`` message and a ``user`` message in which
``{{ prompt }}`` is the request's text and ``items`` the catalog items it is grounded on
(a digest's recommendations, a grounded answer's retrieved items: ``item_id``, ``title``,
``summary`` each). Variants of a kind live in subfolders (``grounded/assistant.yaml``), so
they are no kinds. Instruct models get the messages through their own chat template
(Jinja, rendered in a sandbox as transformers does); a model without one gets them as
plain paragraphs.
"""

from __future__ import annotations

import functools
import json
from datetime import datetime
from pathlib import Path

import yaml

from ..errors import ModelError, RequestError

TEMPLATES = Path(__file__).with_name("templates")
KINDS = tuple(sorted(p.stem for p in TEMPLATES.glob("*.yaml")))


#: Kinds whose text comes from the catalog, so they need no prompt.
PROMPTLESS = ("digest",)


def template_name(kind: str, grounded: bool = False) -> str:
    """The template of ``kind``: its grounded variant when asked and there is one."""
    if grounded and (TEMPLATES / "grounded" / f"{kind}.yaml").exists():
        return f"grounded/{kind}"
    return kind


@functools.cache
def _kind_template(name: str) -> dict[str, str]:
    kind = name.rsplit("/", 1)[-1]
    if kind not in KINDS:
        raise RequestError(f"unknown kind {kind!r}; known kinds: {', '.join(KINDS)}")
    doc = yaml.safe_load((TEMPLATES / f"{name}.yaml").read_text(encoding="utf-8"))
    if not isinstance(doc, dict) or "user" not in doc:
        raise ModelError(f"{TEMPLATES / name}.yaml needs a `user` message")
    return doc


@functools.cache
def _environment():
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.filters["tojson"] = lambda value, indent=None: json.dumps(value, indent=indent)
    env.globals["raise_exception"] = _raise
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env


def _raise(message: str):
    raise RequestError(f"chat template: {message}")


def messages(
    kind: str, prompt: str, items: list[dict[str, str]] | None = None
) -> list[dict[str, str]]:
    """The chat messages for ``prompt`` of ``kind`` (system first when the kind has one),
    grounded on ``items`` when given (``kind`` may then name a variant, ``grounded/...``)."""
    if not prompt.strip() and kind not in PROMPTLESS:
        raise RequestError("the prompt is empty")
    template = _kind_template(kind)
    env = _environment()
    values = {"prompt": prompt.strip(), "items": items or []}
    out = []
    if template.get("system"):
        system = env.from_string(template["system"]).render(**values)
        out.append({"role": "system", "content": system})
    out.append({"role": "user", "content": env.from_string(template["user"]).render(**values)})
    return out


def written(kind: str, key: str, prompt: str, items: list[dict[str, str]] | None = None) -> str:
    """A template's ``key`` rendered as text the reader gets as it is (no model
    continues it: a digest's ``opening``); "" when the template has none."""
    source = _kind_template(kind).get(key)
    if not source:
        return ""
    values = {"prompt": prompt.strip(), "items": items or []}
    return " ".join(_environment().from_string(source).render(**values).split())


def render_chat(
    chat_template: str | None,
    conversation: list[dict[str, str]],
    *,
    bos_token: str | None = None,
    eos_token: str | None = None,
) -> str:
    """The text the model continues: ``conversation`` plus the assistant's turn opening."""
    if not chat_template:
        return "\n\n".join(m["content"] for m in conversation) + "\n\n"
    from jinja2 import TemplateError

    try:
        return (
            _environment()
            .from_string(chat_template)
            .render(
                messages=conversation,
                add_generation_prompt=True,
                bos_token=bos_token or "",
                eos_token=eos_token or "",
            )
        )
    except TemplateError as exc:
        raise ModelError(f"the model's chat template does not render: {exc}") from None


def render(
    kind: str,
    prompt: str,
    chat_template: str | None,
    *,
    items: list[dict[str, str]] | None = None,
    bos_token: str | None = None,
    eos_token: str | None = None,
) -> str:
    return render_chat(
        chat_template, messages(kind, prompt, items), bos_token=bos_token, eos_token=eos_token
    )
