"""The signed REST client: Binance's HMAC examples, key errors, clock resync, 429/418 obedience."""

from __future__ import annotations

import httpx
import pytest

from app.binance.signed import SignedRest
from app.binance.signing import Credentials, sign, signed_payload
from app.clock import SystemClock
from app.errors import ApiKeyError, IpBannedError, RateLimitedError
from tests.live.conftest import FAST, KEY, KEY_ARGS, SECRET
from tests.sim.test_signed_auth import (
    SPOT_MIXED_BODY,
    SPOT_MIXED_QUERY,
    SPOT_MIXED_SIGNATURE,
    SPOT_QUERY,
    SPOT_SECRET,
    SPOT_SIGNATURE,
    USDM_QUERY,
    USDM_SECRET,
    USDM_SIGNATURE,
)
from tests.simproc import SimHandle, running_sim


def test_signing_reproduces_binances_worked_examples() -> None:
    assert sign(USDM_SECRET, USDM_QUERY) == USDM_SIGNATURE
    assert sign(SPOT_SECRET, SPOT_QUERY) == SPOT_SIGNATURE
    assert sign(SPOT_SECRET, SPOT_MIXED_QUERY + SPOT_MIXED_BODY) == SPOT_MIXED_SIGNATURE
    params = dict(pair.split("=") for pair in USDM_QUERY.split("&"))
    assert signed_payload(params, USDM_SECRET) == f"{USDM_QUERY}&signature={USDM_SIGNATURE}"


def test_credentials_never_show_in_repr() -> None:
    creds = Credentials(KEY, SECRET)
    assert KEY not in repr(creds) and SECRET not in repr(creds)


async def test_correct_signature_is_accepted(client: SignedRest) -> None:
    account = await client.account()
    assert account["canTrade"] is True
    # A POST (form body) and a GET (query) both pass.
    assert (await client.set_leverage("BTCUSDT", 5))["leverage"] == 5
    assert client.sent >= 3


async def test_bad_signature_and_bad_key_are_operator_errors(
    live_sim: SimHandle, clock: SystemClock
) -> None:
    wrong_secret = SignedRest(live_sim.rest_url, Credentials(KEY, "x" * 24), FAST, clock)
    wrong_key = SignedRest(live_sim.rest_url, Credentials("y" * 24, SECRET), FAST, clock)
    try:
        with pytest.raises(ApiKeyError) as info:
            await wrong_secret.account()
        assert info.value.code == -1022
        assert wrong_secret.sent == 1  # not retried
        with pytest.raises(ApiKeyError) as info:
            await wrong_key.account()
        assert info.value.code == -2015
    finally:
        await wrong_secret.aclose()
        await wrong_key.aclose()


async def test_minus_1021_resyncs_the_clock_and_retries_once(
    live_sim: SimHandle, client: SignedRest
) -> None:
    assert abs(client.offset_ms) < 1000
    live_sim.set_faults(clock_offset_ms=20_000)
    before = client.sent
    balance = await client.balance()
    assert balance[0]["asset"] == "USDT"
    assert client.resyncs == 1
    assert 19_000 < client.offset_ms < 21_000
    # The failed request, the time request, the retry: three, not a storm.
    assert client.sent - before == 3


async def _burn(sim: SimHandle, requests: int) -> None:
    """Spend the IP's weight from another client (the same loopback address)."""
    async with httpx.AsyncClient(base_url=sim.rest_url) as raw:
        for _ in range(requests):
            await raw.get("/fapi/v1/time")


async def test_429_blocks_every_request_until_retry_after(clock: SystemClock) -> None:
    with running_sim(
        "--seed", "3", *KEY_ARGS, "--weight-limit", "20", "--ban-after-429s", "1000"
    ) as sim:
        c = SignedRest(sim.rest_url, Credentials(KEY, SECRET), FAST, clock)
        try:
            await _burn(sim, 25)
            rejected = sim.stats()["rate_limits"]["rejected_429"]
            with pytest.raises(RateLimitedError) as info:
                await c.account()
            assert info.value.status == 429
            now_ms = clock.time_ns() // 1_000_000
            assert now_ms < info.value.retry_at_ms <= now_ms + 61_000
            sent = c.sent
            for _ in range(20):
                with pytest.raises(RateLimitedError):
                    await c.account()
            assert c.sent == sent  # nothing left the process
            assert c.refused_locally == 20
            assert sim.stats()["rate_limits"]["rejected_429"] == rejected + 1
        finally:
            await c.aclose()


async def test_weight_budget_slows_down_before_429(clock: SystemClock) -> None:
    with running_sim("--seed", "3", *KEY_ARGS, "--weight-limit", "50") as sim:
        c = SignedRest(sim.rest_url, Credentials(KEY, SECRET), FAST, clock)
        c.weight_limit = 50  # the simulator's exchangeInfo always advertises Binance's 2400
        try:
            refused = 0
            for _ in range(20):
                try:
                    await c.balance()  # weight 5
                except RateLimitedError:
                    refused += 1
            assert c.sent <= 8  # 80 % of 50 at 5 a request
            assert refused == 20 - c.sent
            assert sim.stats()["rate_limits"]["rejected_429"] == 0
        finally:
            await c.aclose()


async def test_418_stops_all_requests_until_the_ban_ends(clock: SystemClock) -> None:
    args = ("--weight-limit", "10", "--ban-after-429s", "0", "--ban-s", "2")
    with running_sim("--seed", "3", *KEY_ARGS, *args) as sim:
        c = SignedRest(sim.rest_url, Credentials(KEY, SECRET), FAST, clock)
        try:
            await _burn(sim, 15)
            banned = sim.stats()["rate_limits"]["rejected_418"]
            assert banned >= 1
            with pytest.raises(IpBannedError) as info:
                await c.account()
            assert info.value.status == 418
            sent = c.sent
            for _ in range(10):
                with pytest.raises(IpBannedError):
                    await c.balance()
            assert c.sent == sent
            assert sim.stats()["rate_limits"]["rejected_418"] == banned + 1
            t0 = clock.time_ns()
            await c.wait_ready()
            assert (clock.time_ns() - t0) / 1e9 > 1.0
            # The ban is over: the next request goes out again (exactly one).
            with pytest.raises(RateLimitedError):
                await c.account()
            assert c.sent == sent + 1
        finally:
            await c.aclose()
