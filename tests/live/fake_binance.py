"""A small USD-M REST exchange on a loopback socket, for venue tests that need a fault the
simulator does not make (or need to be fast): it checks Binance's HMAC-SHA256 signature, keeps
orders by client id, answers in the documented shapes (the order body is
``../shared/reference/binance/responses/usdm_post_fapi_v1_order.json`` with our fields) and the
documented error codes, and serves scripted faults first.

Not a test module: pytest does not collect it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tests.paths import REFERENCE

# The documented POST /fapi/v1/order answer, the template of every order body.
ORDER_TEMPLATE: dict[str, Any] = json.loads(
    (REFERENCE / "binance" / "responses" / "usdm_post_fapi_v1_order.json").read_text()
)


@dataclass
class Fault:
    """One scripted answer. ``apply``: the request still takes effect (an order accepted whose
    answer was lost), else it does not."""

    status: int
    body: Any
    apply: bool = False
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Request:
    method: str
    path: str
    params: dict[str, str]


def error(code: int, msg: str) -> dict[str, Any]:
    return {"code": code, "msg": msg}


UNKNOWN_503 = Fault(503, error(-1000, "Unknown error, please check your request or try again."))
NOT_FOUND = error(-2013, "Order does not exist.")


class FakeBinance:
    """State and routes; :meth:`serve` runs it on 127.0.0.1 on a free port."""

    def __init__(self, key: str, secret: str) -> None:
        self.key = key
        self.secret = secret
        self.orders: dict[str, dict[str, Any]] = {}
        self.faults: dict[tuple[str, str], list[Fault]] = {}
        self.requests: list[Request] = []
        self.trades: list[dict[str, Any]] = []
        self.income_rows: list[dict[str, Any]] = []
        self.positions: list[dict[str, Any]] = []
        self.fill_price = "50000.0"
        self.market_status = "FILLED"
        self.next_order_id = 8000
        self.lock = threading.Lock()
        self.url = ""

    def fail(self, method: str, path: str, *faults: Fault) -> None:
        self.faults.setdefault((method, path), []).extend(faults)

    def sent(self, method: str, path: str) -> list[dict[str, str]]:
        return [r.params for r in self.requests if (r.method, r.path) == (method, path)]

    # -- routes ----------------------------------------------------------------------------------

    def answer(self, method: str, path: str, params: dict[str, str]) -> tuple[int, Any]:
        faults = self.faults.get((method, path))
        if faults:
            fault = faults.pop(0)
            if fault.apply:
                self.route(method, path, params)
            return fault.status, fault.body
        return self.route(method, path, params)

    def route(self, method: str, path: str, p: dict[str, str]) -> tuple[int, Any]:
        if (method, path) == ("POST", "/fapi/v1/order"):
            return self.new_order(p)
        if (method, path) == ("GET", "/fapi/v1/order"):
            body = self.orders.get(p["origClientOrderId"])
            return (200, body) if body is not None else (400, NOT_FOUND)
        if (method, path) == ("DELETE", "/fapi/v1/order"):
            body = self.orders.get(p["origClientOrderId"])
            if body is None or body["status"] not in ("NEW", "PARTIALLY_FILLED"):
                return 400, error(-2011, "Unknown order sent.")
            body["status"] = "CANCELED"
            return 200, body
        if (method, path) == ("DELETE", "/fapi/v1/allOpenOrders"):
            for body in self.open_of(p["symbol"]):
                body["status"] = "CANCELED"
            return 200, {"code": 200, "msg": "The operation of cancel all open order is done."}
        if (method, path) == ("GET", "/fapi/v1/openOrders"):
            return 200, self.open_of(p["symbol"])
        if (method, path) == ("GET", "/fapi/v1/userTrades"):
            rows = [t for t in self.trades if t["symbol"] == p["symbol"]]
            if "fromId" in p:
                rows = [t for t in rows if t["id"] >= int(p["fromId"])]
            return 200, rows[: int(p.get("limit", 500))]
        if (method, path) == ("GET", "/fapi/v1/income"):
            return 200, self.income_rows
        if (method, path) == ("GET", "/fapi/v2/positionRisk"):
            return 200, self.positions
        return 404, error(-1000, f"no route {method} {path}")

    def open_of(self, symbol: str) -> list[dict[str, Any]]:
        return [
            b
            for b in self.orders.values()
            if b["symbol"] == symbol and b["status"] in ("NEW", "PARTIALLY_FILLED")
        ]

    def new_order(self, p: dict[str, str]) -> tuple[int, Any]:
        client_id = p["newClientOrderId"]
        if client_id in self.orders:
            return 400, error(-4116, "ClientOrderId is duplicated.")
        self.next_order_id += 1
        market = p["type"] == "MARKET"
        status = self.market_status if market else "NEW"
        filled = status == "FILLED"
        body = {
            **ORDER_TEMPLATE,
            "clientOrderId": client_id,
            "orderId": self.next_order_id,
            "symbol": p["symbol"],
            "side": p["side"],
            "type": p["type"],
            "origType": p["type"],
            "origQty": p["quantity"],
            "executedQty": p["quantity"] if filled else "0",
            "cumQty": p["quantity"] if filled else "0",
            "avgPrice": self.fill_price if filled else "0.00",
            "price": p.get("price", "0"),
            "stopPrice": p.get("stopPrice", "0"),
            "reduceOnly": p.get("reduceOnly") == "true",
            "positionSide": "BOTH",
            "timeInForce": p.get("timeInForce", "GTC"),
            "status": status,
        }
        self.orders[client_id] = body
        return 200, body

    # -- the server ------------------------------------------------------------------------------

    def handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return None

            def _handle(self) -> None:
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                text = self.rfile.read(length).decode() if length else url.query
                pairs = parse_qsl(text, keep_blank_values=True)
                params = dict(pairs)
                status, body = 200, {}
                if "signature" in params:
                    payload = text.rsplit("&signature=", 1)[0]
                    want = hmac.new(
                        fake.secret.encode(), payload.encode(), hashlib.sha256
                    ).hexdigest()
                    if self.headers.get("X-MBX-APIKEY") != fake.key:
                        status, body = 401, error(-2015, "Invalid API-key, IP, or permissions.")
                    elif not hmac.compare_digest(want, params["signature"]):
                        status, body = 400, error(-1022, "Signature for this request is not valid.")
                if status == 200:
                    with fake.lock:
                        fake.requests.append(Request(self.command, url.path, params))
                        status, body = fake.answer(self.command, url.path, params)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if status == 429:
                    self.send_header("Retry-After", "0")
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = do_PUT = _handle

        return Handler

    def serve(self) -> Iterator[FakeBinance]:
        server = ThreadingHTTPServer(("127.0.0.1", 0), self.handler())
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
        thread.start()
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()
            thread.join()
