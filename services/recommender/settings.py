"""The recommender's settings: the shared ones plus its own (``MARQUEE_RECOMMENDER_*``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, PositiveFloat

from shared.config import Settings

#: Where set-up builds the content encoder (all-MiniLM-L6-v2 as ONNX; git-ignored).
DEFAULT_CONTENT_MODEL_DIR = (
    Path(__file__).resolve().parents[2] / ".cache" / "models" / "all-minilm-l6-v2"
)


class RecommenderSettings(Settings):
    #: Each service has its own port (recommender 6066, generator 6067, dashboard 6068).
    http_port: int = Field(default=6066, ge=1, le=65535)

    # Implicit-feedback confidence each interaction adds to its user x item pair.
    recommender_weight_view: float = Field(default=1.0, ge=0)
    recommender_weight_click: float = Field(default=2.0, ge=0)
    recommender_weight_like: float = Field(default=4.0, ge=0)
    recommender_weight_share: float = Field(default=6.0, ge=0)
    #: Dwell adds this much per minute spent, up to ``recommender_dwell_max_weight``.
    recommender_weight_dwell_per_minute: float = Field(default=1.0, ge=0)
    recommender_dwell_max_weight: float = Field(default=5.0, ge=0)

    # Ingest batching (``getmany``): a batch is at most this many events, and what has
    # arrived is taken at once; with nothing fetched, a read waits at most this long.
    recommender_ingest_batch_size: int = Field(default=5_000, ge=1, le=50_000)
    #: 0.1 s: freshness p95 0.12 s instead of 0.51 s at 0.5 s, with no loss of throughput
    #: (under load batches fill by size first); see docs/benchmarks.md.
    recommender_ingest_batch_seconds: float = Field(default=0.1, gt=0, le=60)
    #: On a rebalance, how long the batch being written may take to finish and commit
    #: before it is abandoned (uncommitted; the partition's new owner reads it again).
    recommender_ingest_revoke_grace_seconds: float = Field(default=10.0, gt=0, le=300)

    # ALS and retraining (defaults chosen on MovieLens-100k; see docs/benchmarks.md).
    recommender_als_factors: int = Field(default=64, ge=1, le=1024)
    recommender_als_regularization: float = Field(default=20.0, ge=0)
    recommender_als_alpha: float = Field(default=1.0, gt=0)
    recommender_als_iterations: int = Field(default=15, ge=1, le=200)
    #: A retrain becomes active only if its held-out P@10 and NDCG@10 are at least this
    #: multiple of popularity's, measured in the same run.
    recommender_quality_gate_ratio: float = Field(default=1.0, ge=0)
    #: Model versions kept in Postgres (the active one is always kept).
    recommender_keep_versions: int = Field(default=3, ge=1, le=100)

    #: How often a worker checks Postgres for a newly activated model version.
    recommender_model_poll_seconds: float = Field(default=5.0, gt=0, le=3600)
    #: How often a worker adopts the fold-ins other workers stored.
    recommender_fold_in_sync_seconds: float = Field(default=1.0, gt=0, le=3600)
    recommender_popularity_half_life_days: float = Field(default=30.0, gt=0)

    # Scheduled retraining inside the workers (one at a time: a Postgres advisory lock).
    #: How often a worker checks whether a retrain is due; 0 turns scheduling off.
    recommender_retrain_check_seconds: float = Field(default=30.0, ge=0)
    #: Retrain when the newest version is this old (and there is new data); 0 never.
    recommender_retrain_every_seconds: float = Field(default=6 * 3600.0, ge=0)
    #: Retrain after this many new interactions; 0 never.
    recommender_retrain_after_events: int = Field(default=50_000, ge=0)
    #: The first model waits for this many interactions.
    recommender_retrain_min_events: int = Field(default=1_000, ge=10)
    #: Scheduled retrains run in a child process (services/recommender/trainer.py) with this
    #: many fit threads; 0: every CPU but one, so serving keeps a core.
    recommender_trainer_threads: int = Field(default=0, ge=0, le=256)
    #: The trainer process's niceness: serving wins the CPU when it is scarce.
    recommender_trainer_nice: int = Field(default=10, ge=0, le=19)

    # The catalog.
    #: Per kind, how many days after ``published_at`` an item stops being recommended,
    #: e.g. ``{"news": 7}``; kinds not named never age out (JSON in the environment).
    recommender_max_age_days: dict[str, float] = Field(default_factory=dict, max_length=100)
    #: Per kind, the half-life in hours of the freshness prior blended into personal scores
    #: (age counted from ``published_at``); kinds not named, films for one, do not decay.
    recommender_half_life_hours: dict[str, PositiveFloat] = Field(
        default_factory=lambda: {"news": 12.0, "article": 48.0}, max_length=100
    )
    #: The most a stale item loses, in standard deviations of the user's scores: 1 reorders
    #: items of similar affinity without burying a strong match (max age is the hard cut).
    recommender_freshness_weight: float = Field(default=1.0, ge=0, le=100)
    #: The most items of one tag in a recommended list; 0: no cap (a cap trades accuracy for
    #: variety, and where it pays depends on how the newsroom tags).
    recommender_max_per_tag: int = Field(default=0, ge=0, le=200)

    #: Publish an impression (``impressions``) for every list served; off for callers that log
    #: their own. Answers carry an ``impression_id`` either way.
    recommender_publish_impressions: bool = True
    #: How often the running experiments (``marquee experiments``) are read again: a new or
    #: stopped experiment reaches serving within this long.
    recommender_experiments_refresh_seconds: float = Field(default=10.0, gt=0, le=3600)

    #: The content encoder's model directory (set-up builds the default one).
    recommender_content_model_dir: Path = DEFAULT_CONTENT_MODEL_DIR

    def content_model_dir(self) -> Path:
        return self.recommender_content_model_dir

    def max_age_seconds(self) -> dict[str, float]:
        return {kind: days * 86_400 for kind, days in self.recommender_max_age_days.items()}

    def shaping(self):
        from .recency import Shaping

        return Shaping(
            half_life_seconds={
                kind: hours * 3600 for kind, hours in self.recommender_half_life_hours.items()
            },
            weight=self.recommender_freshness_weight,
            max_per_tag=self.recommender_max_per_tag,
        )

    def half_life_seconds(self) -> float:
        """The popularity half-life, in the seconds the model works in."""
        return self.recommender_popularity_half_life_days * 86_400

    def retrain_policy(self):
        from .schedule import RetrainPolicy

        return RetrainPolicy(
            every_seconds=self.recommender_retrain_every_seconds,
            after_events=self.recommender_retrain_after_events,
            min_events=self.recommender_retrain_min_events,
        )

    def als_params(self):
        from .model import AlsParams

        return AlsParams(
            factors=self.recommender_als_factors,
            regularization=self.recommender_als_regularization,
            alpha=self.recommender_als_alpha,
            iterations=self.recommender_als_iterations,
        )
