"""Request-weight and order-count limits: headers, 429 with Retry-After, 418 bans."""

from __future__ import annotations

import httpx

from app.sim.ratelimit import request_weight
from tests.sim.signing import SIM_ARGS, Signed
from tests.simproc import running_sim


def test_weights_follow_the_docs() -> None:
    assert request_weight("GET", "/fapi/v1/time", "") == 1
    assert request_weight("GET", "/fapi/v1/depth", "symbol=BTCUSDT&limit=1000") == 20
    assert request_weight("GET", "/fapi/v2/account", "") == 5
    assert request_weight("GET", "/fapi/v1/openOrders", "") == 40
    assert request_weight("GET", "/fapi/v1/openOrders", "symbol=BTCUSDT") == 1


def _weight(resp: httpx.Response) -> int:
    return int(resp.headers["X-MBX-USED-WEIGHT-1M"])


def test_weight_headers_429_then_418() -> None:
    args = ("--weight-limit", "30", "--ban-after-429s", "2", "--ban-s", "3", *SIM_ARGS)
    with running_sim(*args) as sim, httpx.Client(base_url=sim.rest_url, timeout=10) as http:
        for _ in range(2):  # a second go if a minute boundary resets the count mid-way
            seen: list[int] = []
            resp = http.get("/fapi/v1/time")
            while resp.status_code == 200:
                seen.append(_weight(resp))
                resp = http.get("/fapi/v1/time")
            if all(b == a + 1 for a, b in zip(seen, seen[1:], strict=False)):
                break
        assert seen[-1] == 30
        assert resp.status_code == 429
        assert resp.json()["code"] == -1003
        assert 1 <= int(resp.headers["Retry-After"]) <= 60
        assert _weight(resp) == 31
        ignored = [http.get("/fapi/v1/time") for _ in range(3)]
        assert [r.status_code for r in ignored] == [429, 429, 418]
        banned = ignored[-1]
        assert banned.json()["code"] == -1003
        assert "banned until" in banned.json()["msg"]
        assert 1 <= int(banned.headers["Retry-After"]) <= 3
        # The simulator's own endpoints are not limited.
        assert http.get("/_sim/stats").json()["rate_limits"]["rejected_418"] == 1


def test_order_count_headers() -> None:
    with running_sim("--order-limit-10s", "2", *SIM_ARGS) as sim:
        client = Signed(sim.rest_url)
        try:
            params = {"symbol": "ETHUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.010"}
            counts = []
            for _ in range(3):
                reply = client.call("POST", "/fapi/v1/order", params)
                counts.append(
                    (
                        reply.status,
                        int(reply.headers["X-MBX-ORDER-COUNT-10S"]),
                        int(reply.headers["X-MBX-ORDER-COUNT-1M"]),
                    )
                )
            # A 10 s boundary may fall between the requests: then the count starts again.
            statuses = [c[0] for c in counts]
            assert statuses in ([200, 200, 429], [200, 200, 200], [200, 429, 200])
            assert [c[2] for c in counts] in ([1, 2, 3], [1, 2, 1], [1, 1, 2])
            if statuses[-1] == 429:
                assert reply.code == -1015
                assert "Retry-After" in reply.headers
            weights = client.call("GET", "/fapi/v2/balance").headers["X-MBX-USED-WEIGHT-1M"]
            assert int(weights) >= 5
        finally:
            client.close()
