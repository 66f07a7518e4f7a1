"""A service with nothing but the chassis, run as a real worker by integration/shared/service/test_chassis.py."""

import sys

from sqlalchemy import text

from shared.config import load_settings
from shared.db import make_engine
from shared.service import create_app
from shared.service.runner import run

settings = load_settings()
service = create_app("probe", settings, heartbeat_seconds=1.0, instance=sys.argv[1])
engine = make_engine(settings)


def postgres() -> tuple[bool, str]:
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    return True, "reachable"


service.health.add("postgres", postgres)

if __name__ == "__main__":
    run(service)
