"""The dashboard finds the recommender on its registered port unless told otherwise."""

from __future__ import annotations

from services.dashboard.settings import DashboardSettings


def test_the_recommender_url_defaults_to_its_registered_port():
    assert DashboardSettings().recommender_url() == "http://127.0.0.1:6066"
    told = DashboardSettings(dashboard_recommender_url="http://rec.internal:80")
    assert told.recommender_url() == "http://rec.internal:80"
    assert DashboardSettings().http_port == 6068
