"""The recommender: interactions -> Postgres -> ALS factors -> recommendations."""

from shared.registry import ServiceSpec

from .settings import RecommenderSettings

SERVICE = ServiceSpec(
    name="recommender",
    summary="interactions -> Postgres -> ALS -> recommendations over HTTP and Kafka",
    settings=RecommenderSettings,
    build="services.recommender.app:build",
)
