"""Tests for correo.server.throttle with a fake clock."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from correo.server.throttle import AuthThrottle, ThrottlePolicy, Verdict, ip_key


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def throttle(clock: FakeClock) -> AuthThrottle:
    return AuthThrottle(ThrottlePolicy(), clock)


IP = "192.0.2.7"
USER = "alice@example.com"


def test_delay_schedule(throttle: AuthThrottle) -> None:
    # Delay seen before attempt n+1, after n failures (default policy).
    expected = [0, 0, 0, 0, 1, 2, 4, 8, 15, 15]
    seen = []
    for _ in range(10):
        seen.append(throttle.check(IP, USER).delay)
        throttle.failure(IP, USER)
    assert seen == expected
    assert throttle.check(IP, USER).locked


def test_lockout_and_expiry(throttle: AuthThrottle, clock: FakeClock) -> None:
    for _ in range(10):
        throttle.failure(IP, USER)
    verdict = throttle.check(IP, USER)
    assert verdict == Verdict(True, 15.0, 300.0)
    # The account is locked from any IP, the IP for any account: both keys checked.
    assert throttle.check("198.51.100.1", USER).locked
    assert throttle.check(IP, "bob@example.com").locked
    assert throttle.check(IP, None).locked
    assert not throttle.check("198.51.100.1", "bob@example.com").locked
    # success() does not lift a lock (the right password still gets "locked").
    throttle.success(IP, USER)
    assert throttle.check(IP, USER).locked
    clock.advance(299)
    assert throttle.check(IP, USER).retry_after == pytest.approx(1.0)
    clock.advance(1)
    assert throttle.check(IP, USER) == Verdict(False, 0.0)
    assert len(throttle) == 0


def test_failures_while_locked_relock(throttle: AuthThrottle, clock: FakeClock) -> None:
    for _ in range(10):
        throttle.failure(IP, USER)
    clock.advance(200)
    throttle.failure(IP, USER)  # keeps the entry alive past the lock
    clock.advance(100)
    verdict = throttle.check(IP, USER)
    assert not verdict.locked and verdict.delay == 15.0
    throttle.failure(IP, USER)
    assert throttle.check(IP, USER).locked


def test_success_clears(throttle: AuthThrottle) -> None:
    for _ in range(6):
        throttle.failure(IP, USER)
    throttle.failure("198.51.100.1", "bob@example.com")
    assert throttle.check(IP, None).delay == 4
    throttle.success(IP, USER)
    assert throttle.check(IP, USER) == Verdict(False, 0.0)
    assert len(throttle) == 2  # bob's counters are untouched


def test_decay(throttle: AuthThrottle, clock: FakeClock) -> None:
    for _ in range(5):
        throttle.failure(IP, USER)
    clock.advance(299.9)
    assert throttle.check(IP, USER).delay == 2
    clock.advance(0.1)
    assert throttle.check(IP, USER).delay == 0
    assert len(throttle) == 0


def test_account_case_and_none(throttle: AuthThrottle) -> None:
    for _ in range(5):
        throttle.failure(IP, "Alice@Example.COM")
    assert throttle.check("203.0.113.9", "alice@example.com").delay == 2
    throttle.failure("203.0.113.9", None)
    assert len(throttle) == 3


def test_eviction(clock: FakeClock) -> None:
    throttle = AuthThrottle(ThrottlePolicy(max_tracked=4), clock)
    for i in range(3):
        clock.advance(1)
        for _ in range(5):
            throttle.failure(f"10.0.0.{i}", f"user{i}@example.com")
    assert len(throttle) == 4
    assert throttle.check("10.0.0.0", "user0@example.com").delay == 0  # oldest evicted
    assert throttle.check("10.0.0.2", "user2@example.com").delay == 2


@pytest.mark.parametrize(
    ("ip", "key"),
    [
        ("192.0.2.7", "ip:192.0.2.7"),
        ("2001:db8:1:2:3:4:5:6", "ip:2001:db8:1:2::/64"),
        ("2001:DB8:1:2:ffff::1", "ip:2001:db8:1:2::/64"),
        ("[2001:db8:1:2::9]", "ip:2001:db8:1:2::/64"),
        ("fe80::1%eth0", "ip:fe80::/64"),
        ("::ffff:192.0.2.7", "ip:192.0.2.7"),
        ("unix:/run/correo.sock", "ip:unix:/run/correo.sock"),
    ],
)
def test_ip_key(ip: str, key: str) -> None:
    assert ip_key(ip) == key


def test_ipv6_grouped_per_64(throttle: AuthThrottle) -> None:
    for i in range(10):
        throttle.failure(f"2001:db8:0:1::{i + 1:x}", None)
    assert throttle.check("2001:db8:0:1:ffff::", None).locked
    assert not throttle.check("2001:db8:0:2::1", None).locked


def test_custom_policy(clock: FakeClock) -> None:
    throttle = AuthThrottle(
        ThrottlePolicy(free_failures=0, base_delay=0.5, max_delay=3, lockout_failures=5), clock
    )
    seen = []
    for _ in range(5):
        throttle.failure(IP, None)
        seen.append(throttle.check(IP, None).delay)
    assert seen == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert throttle.check(IP, None).locked


@pytest.mark.parametrize(
    "kwargs",
    [{"free_failures": -1}, {"lockout_failures": 0}, {"max_tracked": 0}, {"lockout_seconds": 0}],
)
def test_policy_validation(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="throttle"):
        ThrottlePolicy(**kwargs)  # type: ignore[arg-type]


def test_default_clock() -> None:
    throttle = AuthThrottle()
    throttle.failure(IP, USER)
    assert throttle.check(IP, USER) == Verdict(False, 0.0)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["check", "failure", "success", "wait"]),
            st.sampled_from(["10.0.0.1", "10.0.0.2", "2001:db8::1", "2001:db8::2", "junk"]),
            st.sampled_from(["a@x", "b@x", None]),
            st.floats(min_value=0, max_value=400),
        ),
        max_size=60,
    )
)
def test_fuzz_invariants(ops: list[tuple[str, str, str | None, float]]) -> None:
    """Invariant: any sequence of calls keeps len() <= max_tracked, every delay
    within [0, max_delay], and a locked verdict has a retry_after in
    (0, lockout_seconds]; nothing raises."""
    clock = FakeClock()
    policy = ThrottlePolicy(max_tracked=3)
    throttle = AuthThrottle(policy, clock)
    for op, ip, account, seconds in ops:
        match op:
            case "check":
                v = throttle.check(ip, account)
                assert 0 <= v.delay <= policy.max_delay
                assert (0 < v.retry_after <= policy.lockout_seconds) if v.locked else True
            case "failure":
                throttle.failure(ip, account)
            case "success":
                throttle.success(ip, account or "a@x")
            case _:
                clock.advance(seconds)
        assert len(throttle) <= policy.max_tracked


def test_attempts_count_from_their_start(throttle: AuthThrottle) -> None:
    # 45 attempts begun together: only lockout_failures of them may be verified.
    begun = [throttle.begin(IP, USER) for _ in range(45)]
    assert sum(not v.locked for v in begun) == 10
    assert throttle.check(IP, USER).locked  # while they run, and after they fail
    for _ in range(10):
        throttle.failure(IP, USER)
    verdict = throttle.check(IP, USER)
    assert verdict.locked and verdict.retry_after == pytest.approx(300.0)


def test_attempts_in_flight_count_toward_the_delay(throttle: AuthThrottle) -> None:
    delays = [throttle.begin(IP, USER).delay for _ in range(6)]
    assert delays == [0, 0, 0, 0, 1, 2]  # as if the earlier ones had failed


def test_success_releases_its_slot(throttle: AuthThrottle) -> None:
    for _ in range(10):
        assert not throttle.begin(IP, USER).locked
    assert throttle.begin(IP, USER).locked
    throttle.success(IP, USER)  # one right password among them
    assert not throttle.begin(IP, USER).locked
    for _ in range(10):
        throttle.failure(IP, USER)
    assert len(throttle) == 2 and throttle.check(IP, USER).locked


def test_after_a_lock_one_attempt_at_a_time(throttle: AuthThrottle, clock: FakeClock) -> None:
    for _ in range(10):
        throttle.failure(IP, USER)
    clock.advance(299)
    throttle.failure("198.51.100.1", USER)  # keeps the account entry alive
    clock.advance(1)
    assert not throttle.begin(IP, USER).locked
    assert throttle.begin(IP, USER).locked  # the first must end before the next
    throttle.failure(IP, USER)
    assert throttle.check(IP, USER).locked  # and its failure locks again


def test_unnamed_accounts_count_per_network(throttle: AuthThrottle) -> None:
    for _ in range(10):
        throttle.begin(IP, None)
        throttle.failure(IP, None)
    assert throttle.check(IP, USER).locked
    assert not throttle.check("198.51.100.1", USER).locked
