"""An HTTP proxy on 127.0.0.1 that sits between boto3 and the moto server and makes AWS misbehave.

It forwards every request unchanged and, by its rules, answers some of them with the errors
AWS sends under load instead:
- S3: `503 SlowDown` (throttling) or `500 InternalError`, as XML like S3's;
- DynamoDB: `400 ThrottlingException` or `500 InternalServerError`, as JSON like DynamoDB's.

Rules (see `FaultRules`): the first requests of every operation fail before reaching moto
(alternating throttling and server error); the first conditional write of every kind is
*forwarded and then answered with a 500*, so the write lands but the client never hears it
(its retry then meets its own write: the case that makes idempotent code necessary); and any
request a predicate picks can be failed every time ("S3 is down for this key").
"""

from __future__ import annotations

import http.client
import json
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade",
              "expect", "host", "content-length"}
DYNAMO_PREFIX = "com.amazonaws.dynamodb.v20120810#"


@dataclass(frozen=True)
class Request:
    """What the rules see of one request."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    @property
    def service(self) -> str:
        return "dynamodb" if "x-amz-target" in self.headers else "s3"

    @property
    def operation(self) -> str:
        """DynamoDB's X-Amz-Target action, or an S3 operation name derived from method, path and query."""
        if self.service == "dynamodb":
            return self.headers["x-amz-target"].rsplit(".", 1)[-1]
        key = self.path.strip("/").partition("/")[2]
        if self.method == "GET":
            return "GetObject" if key else "ListObjects"
        if self.method == "PUT":
            return "CopyObject" if "x-amz-copy-source" in self.headers else "PutObject" if key else "CreateBucket"
        if self.method == "POST" and "delete" in self.query:
            return "DeleteObjects"
        return {"HEAD": "HeadObject", "DELETE": "DeleteObject"}.get(self.method, self.method)

    @property
    def condition(self) -> str | None:
        """The condition of a conditional write (the kind a lost answer makes dangerous), else None."""
        if self.service == "s3":
            return next((h for h in ("if-match", "if-none-match") if self.method == "PUT" and h in self.headers), None)
        if self.operation in {"PutItem", "UpdateItem", "DeleteItem"} and "ConditionExpression" in json.loads(
                self.body or b"{}"):
            return "condition"
        return None

    @property
    def key(self) -> str:
        return self.path.strip("/").partition("/")[2]


@dataclass
class FaultRules:
    """Which requests fail. Counters are per proxy, so one proxy per run gives every run the same faults."""

    fail_first_per_operation: int = 1
    lose_first_conditional_answer: bool = True
    always_fail: Callable[[Request], bool] | None = None
    log: list[str] = field(default_factory=list)
    _seen: Counter = field(default_factory=Counter)
    _lost: set = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def decide(self, request: Request) -> tuple[str, str] | None:
        """None to forward normally; ("before", error) to fail without forwarding; ("after", error) to
        forward and then fail the answer."""
        with self._lock:
            operation = f"{request.service}:{request.operation}"
            if self.always_fail is not None and self.always_fail(request):
                self.log.append(f"before {operation} {request.key} (always)")
                return "before", "throttle"
            write = f"{operation}/{request.condition}"
            if request.condition and self.lose_first_conditional_answer and write not in self._lost:
                self._lost.add(write)
                self.log.append(f"after {write} {request.key}")
                return "after", "server"
            self._seen[operation] += 1
            count = self._seen[operation]
            if count <= self.fail_first_per_operation:
                kind = "throttle" if count % 2 else "server"
                self.log.append(f"before {operation} {request.key} ({kind})")
                return "before", kind
        return None


def error_response(service: str, kind: str) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body the way S3 or DynamoDB answers when throttled or failing."""
    request_id = uuid.uuid4().hex.upper()[:16]
    if service == "s3":
        code, status, message = (("SlowDown", 503, "Please reduce your request rate.") if kind == "throttle"
                                 else ("InternalError", 500, "We encountered an internal error. Please try again."))
        body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
                f"<RequestId>{request_id}</RequestId><HostId>fault-proxy</HostId></Error>").encode()
        return status, {"Content-Type": "application/xml", "x-amz-request-id": request_id}, body
    name, status, message = (("ThrottlingException", 400, "Rate of requests exceeds the allowed throughput.")
                             if kind == "throttle" else ("InternalServerError", 500, "Internal server error"))
    body = json.dumps({"__type": DYNAMO_PREFIX + name, "message": message}).encode()
    return status, {"Content-Type": "application/x-amz-json-1.0", "x-amzn-RequestId": request_id}, body


class FaultProxy:
    """`with FaultProxy(upstream, rules) as proxy:` serves on `proxy.endpoint` until the block ends."""

    def __init__(self, upstream: str, rules: FaultRules) -> None:
        self.upstream = urlsplit(upstream)
        self.rules = rules
        self.forwarded = 0
        self._count = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, and `Expect: 100-continue` is answered

            def do_any(self) -> None:
                proxy.handle(self)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_any

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="fault-proxy", daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FaultProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        url = urlsplit(handler.path)
        headers = {name.lower(): value for name, value in handler.headers.items()}
        request = Request(handler.command, url.path, parse_qs(url.query, keep_blank_values=True), headers,
                          _read_body(handler, headers))
        decision = self.rules.decide(request)
        head = handler.command == "HEAD"
        if decision and decision[0] == "before":
            _answer(handler, *error_response(request.service, decision[1]), head=head)
            return
        status, reply_headers, body = self._forward(handler.command, handler.path, headers, request.body)
        if decision:  # "after": the write landed, the answer is lost
            _answer(handler, *error_response(request.service, decision[1]), head=head)
            return
        _answer(handler, status, reply_headers, body, head=head)

    def _forward(self, method: str, path: str, headers: dict[str, str], body: bytes):
        connection = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port, timeout=120)
        try:
            forwarded = {k: v for k, v in headers.items() if k not in HOP_BY_HOP}
            forwarded["Host"] = headers.get("host", self.upstream.netloc)
            forwarded["Content-Length"] = str(len(body))
            connection.request(method, path, body=body if method != "HEAD" else None, headers=forwarded)
            response = connection.getresponse()
            data = response.read()
            with self._count:
                self.forwarded += 1
            return response.status, {k: v for k, v in response.getheaders()}, data
        finally:
            connection.close()


def _read_body(handler: BaseHTTPRequestHandler, headers: dict[str, str]) -> bytes:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        parts = []
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while handler.rfile.readline().strip():  # trailers
                    pass
                return b"".join(parts)
            parts.append(handler.rfile.read(size))
            handler.rfile.readline()
    length = int(headers.get("content-length") or 0)
    return handler.rfile.read(length) if length else b""


def _answer(handler: BaseHTTPRequestHandler, status: int, headers: dict[str, str], body: bytes, *,
            head: bool = False) -> None:
    handler.send_response(status)
    for name, value in headers.items():
        if name.lower() not in HOP_BY_HOP:
            handler.send_header(name, value)
    # A HEAD answer carries the object's length but no body.
    length = (headers.get("Content-Length") or headers.get("content-length")) if head else None
    handler.send_header("Content-Length", str(length if length is not None else len(body)))
    handler.end_headers()
    if not head:
        handler.wfile.write(body)
