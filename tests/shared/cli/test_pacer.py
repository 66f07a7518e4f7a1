from shared.cli.replay import Pacer


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_pacer_spaces_events_at_the_rate_without_drift():
    clock = FakeClock()
    pacer = Pacer(50, clock=clock, sleep=clock.sleep)
    for n in range(100):
        pacer.wait(n)
        clock.now += 0.001  # the work of sending one event
    # event 99 is due 99/50 s after the start, however long each send took
    assert abs(clock.now - 0.001 - (100.0 + 99 / 50)) < 1e-9


def test_pacer_never_sleeps_when_behind_or_unlimited():
    clock = FakeClock()
    pacer = Pacer(10, clock=clock, sleep=clock.sleep)
    clock.now += 5  # five seconds late
    pacer.wait(3)
    unlimited = Pacer(0, clock=clock, sleep=clock.sleep)
    unlimited.wait(1000)
    assert clock.slept == []
