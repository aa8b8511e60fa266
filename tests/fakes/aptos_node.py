"""A fake Aptos REST node on 127.0.0.1 (threaded stdlib HTTP server) for tests.

Serves `/v1` (ledger info), accounts, resources, `POST /v1/view` (JSON and BCS, the latter as
aptos-sdk's `account_balance` sends it), `POST /v1/transactions/simulate`, `POST
/v1/transactions` — deserializing the BCS SignedTransaction with aptos-sdk and verifying its
signature for real — and `GET /v1/transactions/by_hash/{hash}`. `fail_next(status, times)`
answers the next requests with 404/429/500.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aptos_sdk.account_address import AccountAddress
from aptos_sdk.bcs import Deserializer
from aptos_sdk.transactions import EntryFunction, SignedTransaction

CHAIN_ID = 4


class FakeAptosNode:
    def __init__(self) -> None:
        self.accounts: dict[str, dict[str, Any]] = {}
        self.balances: dict[str, int] = {}
        self.resources: dict[str, list[dict[str, Any]]] = {}
        self.transactions: dict[str, dict[str, Any]] = {}
        self.submitted: list[SignedTransaction] = []
        self.requests: list[tuple[str, str]] = []
        self.failures: list[int] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> FakeAptosNode:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def reset(self) -> None:
        with self.lock:
            self.accounts.clear()
            self.balances.clear()
            self.resources.clear()
            self.transactions.clear()
            self.submitted.clear()
            self.requests.clear()
            self.failures.clear()

    def add_account(self, address: str, sequence_number: int = 0, balance: int = 0) -> str:
        key = str(AccountAddress.from_str_relaxed(address))
        self.accounts[key] = {"sequence_number": str(sequence_number), "authentication_key": key}
        self.balances[key] = balance
        self.resources[key] = [
            {"type": "0x1::account::Account", "data": {"sequence_number": str(sequence_number)}},
            {"type": "0x1::coin::CoinStore<0x1::aptos_coin::AptosCoin>", "data": {"coin": {"value": str(balance)}}},
        ]
        return key

    def fail_next(self, status: int, times: int = 1) -> None:
        with self.lock:
            self.failures.extend([status] * times)

    def take_failure(self) -> int | None:
        with self.lock:
            return self.failures.pop(0) if self.failures else None


def _handler(node: FakeAptosNode) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length", 0)))

        def _failed(self) -> bool:
            status = node.take_failure()
            if status is None:
                return False
            self._send(status, {"message": f"injected {status}", "error_code": "injected"})
            return True

        def do_GET(self) -> None:
            path = self.path.split("?")[0].rstrip("/")
            node.requests.append(("GET", path))
            if self._failed():
                return
            if path == "/v1":
                self._send(200, {"chain_id": CHAIN_ID, "ledger_version": "100", "node_role": "full_node"})
                return
            if match := re.fullmatch(r"/v1/accounts/([^/]+)", path):
                return self._account(match.group(1))
            if match := re.fullmatch(r"/v1/accounts/([^/]+)/resources", path):
                return self._resources(match.group(1), None)
            if match := re.fullmatch(r"/v1/accounts/([^/]+)/resource/(.+)", path):
                from urllib.parse import unquote

                return self._resources(match.group(1), unquote(match.group(2)))
            if match := re.fullmatch(r"/v1/transactions/by_hash/(0x[0-9a-f]+)", path):
                tx = node.transactions.get(match.group(1))
                return self._send(200, tx) if tx else self._send(404, {"message": "transaction not found"})
            self._send(404, {"message": f"no route {path}"})

        def _address(self, raw: str) -> str | None:
            try:
                return str(AccountAddress.from_str_relaxed(raw))
            except Exception:
                return None

        def _account(self, raw: str) -> None:
            account = node.accounts.get(self._address(raw) or "")
            if account is None:
                return self._send(404, {"message": "account not found", "error_code": "account_not_found"})
            self._send(200, account)

        def _resources(self, raw: str, wanted: str | None) -> None:
            resources = node.resources.get(self._address(raw) or "")
            if resources is None:
                return self._send(404, {"message": "account not found"})
            if wanted is None:
                return self._send(200, resources)
            found = [r for r in resources if r["type"] == wanted]
            self._send(200, found[0]) if found else self._send(404, {"message": "resource not found"})

        def do_POST(self) -> None:
            path = self.path.split("?")[0].rstrip("/")
            node.requests.append(("POST", path))
            body = self._body()
            if self._failed():
                return
            if path == "/v1/view":
                return self._view(body, self.headers.get("Content-Type", ""))
            if path in ("/v1/transactions/simulate", "/v1/transactions"):
                try:
                    signed = SignedTransaction.deserialize(Deserializer(body))
                except Exception as exc:
                    return self._send(400, {"message": f"bad BCS: {exc}"})
                if path.endswith("simulate"):
                    return self._send(200, [{"success": True, "vm_status": "Executed successfully", "gas_used": "17"}])
                if not signed.verify():
                    return self._send(400, {"message": "invalid signature", "error_code": "invalid_signature"})
                tx_hash = signed.hash()
                node.submitted.append(signed)
                node.transactions[tx_hash] = {
                    "type": "user_transaction", "hash": tx_hash, "success": True,
                    "vm_status": "Executed successfully",
                }  # fmt: skip
                return self._send(202, {"hash": tx_hash})
            self._send(404, {"message": f"no route {path}"})

        def _view(self, body: bytes, content_type: str) -> None:
            if "bcs" in content_type:
                entry = EntryFunction.deserialize(Deserializer(body))
                function = f"{entry.module}::{entry.function}"
                address = str(AccountAddress.deserialize(Deserializer(entry.args[0])))
            else:
                request = json.loads(body)
                function = request["function"]
                address = self._address(str((request.get("arguments") or [""])[0])) or ""
            if function.endswith("::coin::balance") or function.endswith("::primary_fungible_store::balance"):
                if address not in node.balances:
                    return self._send(404, {"message": "account not found"})
                return self._send(200, [str(node.balances[address])])
            if function == "0x1::chain_id::get":
                return self._send(200, [CHAIN_ID])
            self._send(400, {"message": f"function {function} not found", "error_code": "invalid_input"})

    return Handler
