"""A fault-injecting S3 proxy on loopback, in front of a real S3 server (tests/seaweed.py): the
store trouble a nightly run meets on a real network, on demand.

    proxy = FaultProxy(s3, FaultRates(slow_down=0.02, reset_after=0.01), seed=7)
    with proxy as faulty:                      # an S3Server whose endpoint is the proxy
        run(..., env=faulty.env)
    proxy.injected                             # Counter: faults injected, by kind

Per request, drawn from a seeded random.Random (one draw, so at most one fault a request):

    internal_error  500 InternalError, S3's XML error body; the request is not forwarded
    slow_down       503 SlowDown (throttling), likewise
    reset_before    the connection is reset before the request is forwarded (nothing happened)
    reset_after     the request is forwarded and done upstream, then the connection is reset:
                    for a PUT, a lost answer after a successful write
    slow            the request is forwarded, and its answer sent `slow_s` seconds later

A reset is a close with SO_LINGER 0: the client reads ECONNRESET, with no answer at all.

Targeted faults, for deterministic tests, come before the random ones:

    proxy.target("GET", "*/images/S00003.png")              # every such GET: 503 SlowDown
    proxy.target("PUT", "*/_versions/*", "reset_after", times=1)   # the first one only

Requests run on several threads, so which request draws which number depends on timing: a seed
gives the same rates and the same mix of faults, not the same faulty request.
"""

from __future__ import annotations

import fnmatch
import http.server
import random
import secrets
import socket
import struct
import sys
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, fields
from email.utils import formatdate
from typing import Optional

from tests.seaweed import Answer, CountingProxy, S3Server

KINDS = ("internal_error", "slow_down", "reset_before", "reset_after", "slow")
# storage options that cut botocore's own retries short (s3fs still retries a throttled GET
# itself): for tests of the job's own tries, so a refusal costs seconds, not minutes
NO_CLIENT_RETRIES = {"config_kwargs": {"retries": {"max_attempts": 1}}}
ERRORS = {  # kind: (status, reason, S3 error code, message), as AWS words them
    "internal_error": (500, "Internal Server Error", "InternalError",
                       "We encountered an internal error. Please try again."),
    "slow_down": (503, "Slow Down", "SlowDown", "Please reduce your request rate."),
}


@dataclass(frozen=True)
class FaultRates:
    """The probability of each kind of fault per request (their sum at most 1)."""

    internal_error: float = 0.0
    slow_down: float = 0.0
    reset_before: float = 0.0
    reset_after: float = 0.0
    slow: float = 0.0
    slow_s: float = 2.0  # how late a slow answer comes

    def __post_init__(self) -> None:
        rates = [getattr(self, kind) for kind in KINDS]
        if min(rates) < 0 or sum(rates) > 1:
            raise ValueError(f"fault rates must be >= 0 and sum to at most 1: {self}")

    def __str__(self) -> str:
        return " ".join(f"{f.name}={getattr(self, f.name):g}" for f in fields(self) if getattr(self, f.name))


@dataclass
class Target:
    """A fault for the requests of one method whose 'bucket/key' matches a glob pattern:
    every time (times=None), or the first `times` times."""

    method: str
    pattern: str
    kind: str = "slow_down"
    times: Optional[int] = None
    hits: int = 0

    def takes(self, method: str, key: str) -> bool:
        return (method == self.method and fnmatch.fnmatchcase(key, self.pattern)
                and (self.times is None or self.hits < self.times))


class FaultProxy(CountingProxy):
    """CountingProxy's relay, with faults injected at `rates` from `seed`, and targeted ones."""

    def __init__(self, upstream: S3Server, rates: FaultRates = FaultRates(), seed: int = 0):
        super().__init__(upstream)
        self.lock = threading.Lock()  # the relay answers on many threads
        self.rates, self.random = rates, random.Random(seed)
        self.targets: list[Target] = []
        self.injected: Counter[str] = Counter()
        self.server.handle_error = self.client_gone

    def client_gone(self, request: object, address: object) -> None:
        """Quiet about clients that hung up (a killed run is part of the test); else the traceback."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            http.server.ThreadingHTTPServer.handle_error(self.server, request, address)

    def configure(self, rates: FaultRates, seed: Optional[int] = None) -> None:
        """New random rates (FaultRates() for none), and a new seed if given."""
        with self.lock:
            self.rates = rates
            if seed is not None:
                self.random.seed(seed)

    def target(self, method: str, pattern: str, kind: str = "slow_down", times: Optional[int] = None) -> Target:
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; one of {KINDS}")
        added = Target(method.upper(), pattern, kind, times)
        with self.lock:
            self.targets.append(added)
        return added

    def clear_targets(self) -> None:
        with self.lock:
            self.targets.clear()

    def choose(self, method: str, key: str) -> Optional[str]:
        """The fault for this request, if any, counted as injected."""
        with self.lock:
            kind = None
            for target in self.targets:
                if target.takes(method, key):
                    target.hits += 1
                    kind = target.kind
                    break
            else:
                draw = self.random.random()
                for name in KINDS:
                    if draw < getattr(self.rates, name):
                        kind = name
                        break
                    draw -= getattr(self.rates, name)
            if kind:
                self.injected[kind] += 1
            return kind

    def handle(self, request: http.server.BaseHTTPRequestHandler, body: bytes) -> None:
        key = urllib.parse.unquote(urllib.parse.urlsplit(request.path).path).lstrip("/")
        kind = self.choose(request.command, key)
        if kind is None:
            super().handle(request, body)
        elif kind in ERRORS:
            self.answer(request, error_answer(kind, key, request.command))
        elif kind == "reset_before":
            reset(request)
        elif kind == "reset_after":
            self.forward(request, body)  # done upstream; the answer never reaches the client
            reset(request)
        else:  # slow
            answer = self.forward(request, body)
            time.sleep(self.rates.slow_s)
            self.answer(request, answer)


def error_answer(kind: str, key: str, method: str) -> Answer:
    """S3's error answer: XML body, request ids, no body for a HEAD."""
    status, reason, code, message = ERRORS[kind]
    request_id = secrets.token_hex(8).upper()
    headers = [("Content-Type", "application/xml"), ("x-amz-request-id", request_id),
               ("x-amz-id-2", secrets.token_urlsafe(48)), ("Date", formatdate(usegmt=True)), ("Server", "AmazonS3")]
    if method == "HEAD":
        return Answer(status, reason, headers, b"")
    resource = "/" + key
    body = ('<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>{message}</Message><Resource>{resource}</Resource>"
            f"<RequestId>{request_id}</RequestId><HostId>{headers[2][1]}</HostId></Error>")
    return Answer(status, reason, headers, body.encode())


def reset(request: http.server.BaseHTTPRequestHandler) -> None:
    """Drop the client's connection with a TCP RST and no answer. The socket's read file holds a
    reference to it, so both are closed: only then does the kernel close it (and, with linger 0,
    reset it). The handler's own clean-up after this finds a closed socket and lets it be."""
    connection = request.connection
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    request.close_connection = True
    request.rfile.close()
    connection.close()
