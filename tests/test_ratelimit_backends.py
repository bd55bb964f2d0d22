"""One contract for rate limits and circuit breakers, run against SQLite and PostgreSQL.

The same checks run on each backend: sliding windows, per-customer keys, reservations reused
under an idempotency key, circuit breaking, and exact limits when several processes reserve
from one store at once. A hypothesis property compares the limiter with a plain model.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pgschema import fresh_schema

from tether.config import Home
from tether.errors import ConfigError
from tether.guards.decisions import Allow, Deny
from tether.guards.policy import ActionRequest, Policy
from tether.guards.ratelimit import RuntimeLimits

ROOT = Path(__file__).resolve().parents[1]
SUPPORT = (ROOT / "agents" / "support" / "agent-policy.yaml").read_text()


def limited(max_calls: int = 2, per: str = "principal", failures: int = 3) -> Policy:
    return Policy.from_text(SUPPORT.replace(
        "    require_citation: true\n",
        f"    require_citation: true\n    rate_limit: {{max_calls: {max_calls}, per_seconds: 60, per: {per}}}\n"
        f"    circuit_breaker: {{failures: {failures}, cooldown_seconds: 30}}\n",
    ))


class Clock:
    def __init__(self) -> None:
        self.t = 1_000.0

    def __call__(self) -> float:
        return self.t


def refund(principal: str = "agent", subject: str | None = None) -> ActionRequest:
    return ActionRequest(tool="issue_refund", amount_usd=5, principal=principal, subject_id=subject)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def limits_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'limits.sqlite'}"
        return
    with fresh_schema() as url:
        yield url


def test_window_fills_denies_and_slides(limits_url: str) -> None:
    clock = Clock()
    with RuntimeLimits.open(limited(), limits_url, clock=clock) as lim:
        assert [type(lim.before_act(refund())) for _ in range(3)] == [Allow, Allow, Deny]
        denied = lim.before_act(refund())
        assert isinstance(denied, Deny) and denied.rule_id == "tools.issue_refund.rate_limit"
        assert "limit 2" in denied.reason and "retry in 60s" in denied.reason
        assert isinstance(lim.before_act(refund("someone-else")), Allow)  # per principal
        clock.t += 61
        assert isinstance(lim.before_act(refund()), Allow)
    with RuntimeLimits.open(limited(), limits_url, clock=clock) as lim:  # state persisted
        assert [type(lim.before_act(refund())) for _ in range(2)] == [Allow, Deny]


def test_per_customer_keys_and_unlimited_tools(limits_url: str) -> None:
    with RuntimeLimits.open(limited(max_calls=1, per="customer"), limits_url, clock=Clock()) as lim:
        assert isinstance(lim.before_act(refund(subject="C-1")), Allow)
        assert isinstance(lim.before_act(refund(subject="C-1")), Deny)
        assert isinstance(lim.before_act(refund(subject="C-2")), Allow)
        free = lim.before_act(ActionRequest(tool="search_policy"))
        assert isinstance(free, Allow) and free.rule_id == "tools.search_policy.runtime"


def test_a_keyed_call_rechecked_after_a_restart_takes_one_reservation(limits_url: str) -> None:
    clock = Clock()
    with RuntimeLimits.open(limited(max_calls=2), limits_url, clock=clock) as lim:
        assert isinstance(lim.before_act(refund(), key="k1"), Allow)
    with RuntimeLimits.open(limited(max_calls=2), limits_url, clock=clock) as lim:
        again = lim.before_act(refund(), key="k1")
        assert isinstance(again, Allow) and "already reserved" in again.reason
        assert isinstance(lim.before_act(refund(), key="k2"), Allow)
        assert isinstance(lim.before_act(refund(), key="k3"), Deny)
        assert isinstance(lim.before_act(refund(), key="k1"), Allow)  # still its own reservation


def test_circuit_opens_after_k_failures_and_half_opens(limits_url: str) -> None:
    clock = Clock()
    with RuntimeLimits.open(limited(max_calls=100), limits_url, clock=clock) as lim:
        lim.after_act("issue_refund", ok=False)
        lim.after_act("issue_refund", ok=False)
        lim.after_act("issue_refund", ok=True)  # a success resets the streak
        assert isinstance(lim.before_act(refund()), Allow)
        for _ in range(3):
            lim.after_act("issue_refund", ok=False)
        d = lim.before_act(refund())
        assert isinstance(d, Deny) and d.rule_id == "tools.issue_refund.circuit_breaker"
        assert "after 3 consecutive errors" in d.reason
        clock.t += 31
        trial = lim.before_act(refund())
        assert isinstance(trial, Allow) and trial.rule_id == "tools.issue_refund.rate_limit"
        lim.after_act("issue_refund", ok=False)  # the half-open trial fails: open at once
        assert isinstance(lim.before_act(refund()), Deny)
        clock.t += 31
        lim.after_act("issue_refund", ok=True)
        assert isinstance(lim.before_act(refund()), Allow)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 40)), min_size=1, max_size=25),
       max_calls=st.integers(1, 4))
def test_limiter_matches_a_sliding_window_model(limits_url: str, steps: list[tuple[str, int]],
                                               max_calls: int) -> None:
    """Whatever the order of calls and pauses, the store admits what a plain model admits."""
    policy, clock = limited(max_calls=max_calls), Clock()
    run = uuid.uuid4().hex[:8]  # principals no earlier example used (the store is shared)
    admitted: dict[str, list[float]] = {"a": [], "b": []}
    with RuntimeLimits.open(policy, limits_url, clock=clock) as lim:
        for who, pause in steps:
            clock.t += pause
            window = [t for t in admitted[who] if t > clock.t - 60]
            expect_allow = len(window) < max_calls
            got = lim.before_act(refund(f"{run}-{who}"))
            assert isinstance(got, Allow) is expect_allow, (who, clock.t, window)
            if expect_allow:
                admitted[who].append(clock.t)


_RESERVER = textwrap.dedent("""
    import sys
    from tether.guards.decisions import Allow
    from tether.guards.policy import ActionRequest, Policy
    from tether.guards.ratelimit import RuntimeLimits
    policy = Policy.from_text(open(sys.argv[2]).read())
    sys.stdin.readline()  # start together
    with RuntimeLimits.open(policy, sys.argv[1]) as lim:
        ok = sum(isinstance(lim.before_act(ActionRequest(tool="issue_refund", amount_usd=5, principal="p"),
                                           key=f"{sys.argv[3]}-{i}"), Allow) for i in range(int(sys.argv[4])))
    print(ok)
""")


def test_a_limit_shared_by_processes_admits_exactly_its_maximum(limits_url: str, tmp_path: Path) -> None:
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(SUPPORT.replace(
        "    require_citation: true\n",
        "    require_citation: true\n    rate_limit: {max_calls: 37, per_seconds: 3600, per: tool}\n"))
    RuntimeLimits.open(Policy.from_yaml(policy_file), limits_url).close()  # schema first
    procs = [subprocess.Popen([sys.executable, "-c", _RESERVER, limits_url, str(policy_file), f"w{n}", "20"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for n in range(4)]
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    admitted = [int(p.communicate(timeout=120)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sum(admitted) == 37  # 80 attempts, 37 admitted, none twice
    with RuntimeLimits.open(Policy.from_yaml(policy_file), limits_url) as lim:
        assert len(lim.store.read("SELECT token FROM rate_limit_calls")) == 37


def test_home_picks_the_limits_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = Home(root=tmp_path)
    monkeypatch.delenv("TETHER_LIMITS_URL", raising=False)
    monkeypatch.delenv("TETHER_LEDGER_URL", raising=False)
    assert home.limits_url == f"sqlite:///{tmp_path / 'limits.sqlite'}"
    monkeypatch.setenv("TETHER_LEDGER_URL", "postgresql://db.example/tether")
    assert home.limits_url == "postgresql://db.example/tether"  # follows a PostgreSQL ledger
    monkeypatch.setenv("TETHER_LIMITS_URL", f"sqlite:///{tmp_path / 'own.sqlite'}")
    assert home.limits_url.endswith("own.sqlite")


def test_an_unknown_url_scheme_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        RuntimeLimits.open(limited(), "redis://localhost/0")
    assert "sqlite:///PATH or postgresql://" in str(info.value)


@pytest.mark.parametrize(("seconds", "text"), [(-3.0, "0s"), (0.0, "0s"), (59.2, "60s"), (599.5, "600s"),
                                               (600.0, "10 min"), (86399.2, "1440 min"), (86400.0, "1440 min")])
def test_the_wait_is_rounded_up_so_a_second_of_delay_does_not_change_it(seconds: float, text: str) -> None:
    from tether.guards.ratelimit import _wait_text

    assert _wait_text(seconds) == text
