"""Exit 0 when the broker answers an admin call (describe cluster), 1 otherwise.

An open port is not readiness: a KRaft broker listens before its metadata is loaded.
"""

import sys

from kafka.admin import KafkaAdminClient


def main() -> int:
    bootstrap = sys.argv[1]
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap, request_timeout_ms=3000, client_id="marquee-ready"
        )
        try:
            cluster = admin.describe_cluster()
        finally:
            admin.close()
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"
        print(f"not ready: {exc}", file=sys.stderr)
        return 1
    return 0 if cluster.get("brokers") else 1


if __name__ == "__main__":
    sys.exit(main())
