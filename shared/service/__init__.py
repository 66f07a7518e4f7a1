"""The chassis every Marquee service runs on: a Faust app with Kafka credentials from the
settings, /livez + /readyz + /metrics (token-protected where configured) and heartbeats.

Services build their agents on top of :func:`create_app`; nothing here knows about ALS
or language models.
"""

from .app import Service, create_app

__all__ = ["Service", "create_app"]
