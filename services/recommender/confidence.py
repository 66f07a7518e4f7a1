"""How much implicit-feedback confidence one interaction carries (pure logic)."""

from __future__ import annotations

from dataclasses import dataclass

from shared.events import Interaction

from .settings import RecommenderSettings


@dataclass(frozen=True)
class Weights:
    view: float = 1.0
    click: float = 2.0
    like: float = 4.0
    share: float = 6.0
    dwell_per_minute: float = 1.0
    dwell_max: float = 5.0

    @classmethod
    def from_settings(cls, s: RecommenderSettings) -> Weights:
        return cls(
            s.recommender_weight_view,
            s.recommender_weight_click,
            s.recommender_weight_like,
            s.recommender_weight_share,
            s.recommender_weight_dwell_per_minute,
            s.recommender_dwell_max_weight,
        )

    def of(self, interaction: Interaction) -> float:
        if interaction.action == "dwell":
            minutes = (interaction.dwell_seconds or 0.0) / 60.0
            return min(self.dwell_max, minutes * self.dwell_per_minute)
        return getattr(self, interaction.action)
