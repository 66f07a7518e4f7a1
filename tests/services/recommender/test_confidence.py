import pytest

from services.recommender.confidence import Weights
from shared.events import Interaction


@pytest.mark.parametrize(
    ("action", "dwell", "expected"),
    [
        ("view", None, 1.0),
        ("click", None, 2.0),
        ("like", None, 4.0),
        ("share", None, 6.0),
        ("dwell", 90.0, 1.5),
        ("dwell", 3600.0, 5.0),
        ("dwell", 0.0, 0.0),
    ],
)
def test_default_weights(action, dwell, expected):
    interaction = Interaction(user_id="u", item_id="i", action=action, dwell_seconds=dwell)
    assert Weights().of(interaction) == expected
