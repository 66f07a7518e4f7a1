from services.recommender.schedule import RetrainPolicy, retrain_reason

POLICY = RetrainPolicy(every_seconds=3600, after_events=1000, min_events=100)


def reason(interactions, trained_on=None, age=None, policy=POLICY):
    return retrain_reason(
        policy, interactions=interactions, last_trained_on=trained_on, last_age_seconds=age
    )


def test_the_first_model_waits_for_enough_data():
    assert reason(99) is None
    assert "no model yet" in reason(100)


def test_retrain_after_n_new_events():
    assert reason(5_999, trained_on=5_000, age=10) is None
    assert "1000 new interactions" in reason(6_000, trained_on=5_000, age=10)


def test_retrain_on_schedule_only_when_something_is_new():
    assert reason(5_000, trained_on=5_000, age=7200) is None
    assert "7200 s old" in reason(5_001, trained_on=5_000, age=7200)
    assert reason(5_001, trained_on=5_000, age=3599) is None


def test_zero_turns_a_trigger_off():
    off = RetrainPolicy(every_seconds=0, after_events=0, min_events=100)
    assert reason(10**9, trained_on=1, age=10**9, policy=off) is None
