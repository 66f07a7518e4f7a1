"""What an experiment is: a name, a kind, a surface, weighted arms, a start and a stop."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from ..errors import ConfigurationError

NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
KINDS = ("ab", "interleaving")
_ARM = re.compile(
    r"^(?P<name>[a-z0-9][a-z0-9_-]{0,62})=(?P<strategy>[A-Za-z0-9_.-]+)"
    r"(?:@(?P<version>\d+))?(?::(?P<weight>[0-9]*\.?[0-9]+))?$"
)


@dataclass(frozen=True)
class Arm:
    """One variant: the strategy it serves, optionally pinned to a model version."""

    name: str
    strategy: str
    model_version: int | None = None
    weight: float = 1.0

    def spec(self) -> str:
        """The ``--arm`` text that makes this arm back."""
        version = f"@{self.model_version}" if self.model_version is not None else ""
        return f"{self.name}={self.strategy}{version}:{self.weight:g}"


@dataclass(frozen=True)
class Experiment:
    """The first arm is the control every other arm is compared with."""

    name: str
    kind: str
    surface: str
    arms: tuple[Arm, ...]
    starts_at: datetime
    stops_at: datetime | None = None

    def __post_init__(self) -> None:
        check_experiment(self.name, self.kind, self.surface, self.arms)
        if self.stops_at is not None and self.stops_at <= self.starts_at:
            raise ConfigurationError(
                f"experiment {self.name}: the stop ({self.stops_at:%Y-%m-%d %H:%M %Z}) must "
                f"come after the start ({self.starts_at:%Y-%m-%d %H:%M %Z})"
            )

    @property
    def control(self) -> Arm:
        return self.arms[0]

    def arm(self, name: str) -> Arm:
        for arm in self.arms:
            if arm.name == name:
                return arm
        raise ConfigurationError(f"experiment {self.name} has no arm {name!r}")

    def running(self, at: datetime) -> bool:
        return self.starts_at <= at and (self.stops_at is None or at < self.stops_at)

    def weights(self) -> dict[str, float]:
        """Each arm's share of users, summing to 1."""
        total = sum(a.weight for a in self.arms)
        return {a.name: a.weight / total for a in self.arms}


def parse_arm(text: str) -> Arm:
    """``NAME=STRATEGY[@MODEL_VERSION][:WEIGHT]``, e.g. ``control=als`` or ``big=als@7:2``."""
    match = _ARM.match(text)
    if not match:
        raise ConfigurationError(
            f"arm {text[:80]!r}: write NAME=STRATEGY[@MODEL_VERSION][:WEIGHT], "
            "e.g. control=als or bigger=als@7:2 (names: lower-case letters, digits, '-', '_')"
        )
    version, weight = match["version"], match["weight"]
    return Arm(
        name=match["name"],
        strategy=match["strategy"],
        model_version=int(version) if version is not None else None,
        weight=float(weight) if weight is not None else 1.0,
    )


def check_experiment(name: str, kind: str, surface: str, arms: tuple[Arm, ...]) -> None:
    """Raises ConfigurationError naming the first thing wrong with a definition."""
    if not NAME.match(name):
        raise ConfigurationError(
            f"experiment name {name[:70]!r}: use 1 to 63 lower-case letters, digits, '-' and '_'"
        )
    if kind not in KINDS:
        raise ConfigurationError(f"experiment kind {kind!r}: use one of {', '.join(KINDS)}")
    if not NAME.match(surface):
        raise ConfigurationError(
            f"surface {surface[:70]!r}: use 1 to 63 lower-case letters, digits, '-' and '_'"
        )
    names = [a.name for a in arms]
    if len(arms) < 2:
        raise ConfigurationError(f"experiment {name}: give at least two arms (--arm twice)")
    if len(set(names)) != len(names):
        raise ConfigurationError(f"experiment {name}: arm names repeat ({', '.join(names)})")
    if kind == "interleaving" and len(arms) != 2:
        raise ConfigurationError(
            f"experiment {name}: interleaving compares exactly two rankers, not {len(arms)}"
        )
    for arm in arms:
        if not arm.weight > 0 or arm.weight == float("inf"):
            raise ConfigurationError(f"arm {arm.name}: the weight must be a positive number")
