"""The settle wait ends once a post-load scrape holds unchanged counters, not after a fixed quiet period."""

import time

from harness.metrics.scrape import settle


class ScriptedProm:
    """Counter value as a function of time since creation; `scraped_lag_s`: how old the newest sample is."""

    def __init__(self, value_at, scraped_lag_s=0.0):
        self.t0, self.value_at, self.scraped_lag_s = time.time(), value_at, scraped_lag_s

    def scalar(self, q, at=None):
        now = time.time()
        if q.startswith("min(timestamp("):
            return now - self.scraped_lag_s
        return float(self.value_at(now - self.t0))


def test_ends_soon_after_a_post_load_scrape_shows_the_final_count():
    prom = ScriptedProm(lambda t: 10 if t < 0.3 else 42)  # the last increments arrive 0.3 s after the load
    st = settle(prom, ["c"], timeout_s=10, quiet_s=5, poll_s=0.05, final_after_s=0.5)
    assert st.settled and 0.5 <= st.waited_s < 1.5, st  # not the 5 s quiet period
    assert prom.scalar("c") == 42


def test_without_a_post_load_scrape_falls_back_to_the_quiet_period():
    prom = ScriptedProm(lambda t: 7, scraped_lag_s=1e6)  # Prometheus stopped scraping long ago
    st = settle(prom, ["c"], timeout_s=10, quiet_s=0.6, poll_s=0.05, final_after_s=0.1)
    assert st.settled and 0.6 <= st.waited_s < 1.5, st


def test_bounded_by_the_timeout_when_counters_keep_moving():
    st = settle(ScriptedProm(lambda t: int(t * 100)), ["c"], timeout_s=0.5, quiet_s=0.2, poll_s=0.05, final_after_s=0.1)
    assert not st.settled and 0.5 <= st.waited_s < 1.5, st
