"""A bounded HTTP load generator: N concurrent keep-alive connections POST JSON bodies to one
loopback server until a fixed request count (or a time limit) is reached, and time every request.

It speaks minimal HTTP/1.1 over asyncio streams instead of using an HTTP client library: on a
2-core machine the client shares the CPU with the server it measures, and a full client costs
several times more CPU per request than the server-side work we want to see.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import numpy as np

PERCENTILES = {"p50": 50.0, "p95": 95.0, "p99": 99.0, "p99_9": 99.9}
CDF_POINTS = 400  # quantiles kept for the CDF plot (plus the exact tail percentiles)


class LoadError(ValueError):
    """Bad load settings or a target that is not on this machine; the message names the flag."""


@dataclass(frozen=True)
class LoadConfig:
    """One load run: `requests` timed requests over `concurrency` connections, after `warmup`
    untimed ones; the run stops by itself after `max_duration_s` whatever was sent."""

    requests: int = 2_000
    concurrency: int = 8
    warmup: int = 16
    timeout_s: float = 30.0
    max_duration_s: float = 300.0

    def __post_init__(self) -> None:
        for name, low in (("requests", 1), ("concurrency", 1), ("warmup", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise LoadError(f"--{name}: must be an integer >= {low}, got {value!r}")
        if self.concurrency > 1024:
            raise LoadError(f"--concurrency: at most 1024 connections, got {self.concurrency}")
        if not self.timeout_s > 0 or not self.max_duration_s > 0:
            raise LoadError("timeout_s and max_duration_s must be > 0")


@dataclass
class LoadResult:
    concurrency: int
    requests_planned: int
    requests_sent: int
    ok: int
    statuses: dict[str, int]
    duration_s: float
    throughput_rps: float
    latency_ms: dict[str, float]  # p50, p95, p99, p99_9, mean, max of successful requests
    cdf_ms: list[float] = field(default_factory=list)  # latency at CDF_POINTS evenly spaced quantiles
    stopped_by_time_limit: bool = False
    errors: list[str] = field(default_factory=list)  # first few transport errors

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def check_loopback(url: str) -> tuple[str, int]:
    """(host, port) of an http:// URL on this machine; a LoadError naming --url otherwise."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise LoadError(f"--url: expected http://127.0.0.1:PORT, got {url!r}")
    host = parts.hostname
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise LoadError(f"--url: load is only sent to this machine (127.0.0.0/8, ::1, localhost), got {host!r}")
    return host, parts.port or 80


def summarize_ms(latencies_ms: np.ndarray) -> dict[str, float]:
    """Percentiles, mean and max of latencies in ms (nan when empty)."""
    if not len(latencies_ms):
        return {**{name: float("nan") for name in PERCENTILES}, "mean": float("nan"), "max": float("nan")}
    out = {name: float(np.percentile(latencies_ms, q)) for name, q in PERCENTILES.items()}
    out["mean"] = float(np.mean(latencies_ms))
    out["max"] = float(np.max(latencies_ms))
    return {k: round(v, 3) for k, v in out.items()}


def cdf_points(latencies_ms: np.ndarray, points: int = CDF_POINTS) -> list[float]:
    """Latency at `points` quantiles evenly spaced in [0, 1] (what the CDF plot draws)."""
    if not len(latencies_ms):
        return []
    return [round(float(v), 3) for v in np.quantile(latencies_ms, np.linspace(0.0, 1.0, points))]


class _Connection:
    """One keep-alive HTTP/1.1 connection: POST a body, read one full response."""

    def __init__(self, host: str, port: int, timeout_s: float):
        self.host, self.port, self.timeout_s = host, port, timeout_s
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes | None) -> tuple[int, bytes]:
        """POST `body` as JSON, or GET `path` when `body` is None."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        if body is None:
            head, body = f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n\r\n".encode(), b""
        else:
            head = (
                f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode()
        self.writer.write(head + body)
        try:
            return await asyncio.wait_for(self._response(), self.timeout_s)
        except BaseException:
            await self.close()
            raise

    async def _response(self) -> tuple[int, bytes]:
        reader = self.reader
        raw = await reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            body = await reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                chunk = await reader.readexactly(size + 2)
                if size == 0:
                    break
                parts.append(chunk[:-2])
            body = b"".join(parts)
        else:
            body = await reader.read()
            headers["connection"] = "close"
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return status, body

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except OSError:
                pass
        self.reader = self.writer = None


async def _run(url: str, path: str, bodies: Sequence[bytes | None], config: LoadConfig) -> LoadResult:
    host, port = check_loopback(url)
    total = config.requests
    latencies = np.full(total, np.nan)
    statuses: Counter[str] = Counter()
    errors: list[str] = []
    next_index = 0
    deadline = time.perf_counter() + config.max_duration_s
    stopped = False
    ready = asyncio.Barrier(config.concurrency + 1)  # the clock starts when every connection is warm

    async def worker(slot: int) -> None:
        nonlocal next_index, stopped
        connection = _Connection(host, port, config.timeout_s)
        share = config.warmup // config.concurrency + (slot < config.warmup % config.concurrency)
        try:
            for n in range(share):  # untimed: connections open, caches warm
                try:
                    await connection.post(path, bodies[(slot + n) % len(bodies)])
                except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError):
                    pass
            await ready.wait()
            while next_index < total:
                if time.perf_counter() > deadline:
                    stopped = True
                    return
                index = next_index
                next_index += 1
                body = bodies[index % len(bodies)]
                started = time.perf_counter()
                try:
                    status, _ = await connection.post(path, body)
                except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
                    statuses["transport_error"] += 1
                    if len(errors) < 5:
                        errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                statuses[str(status)] += 1
                if 200 <= status < 300:
                    latencies[index] = (time.perf_counter() - started) * 1e3
        finally:
            await connection.close()

    tasks = [asyncio.create_task(worker(slot)) for slot in range(config.concurrency)]
    await ready.wait()
    started = time.perf_counter()
    deadline = started + config.max_duration_s
    await asyncio.gather(*tasks)
    duration = time.perf_counter() - started
    done = latencies[~np.isnan(latencies)]
    sent = int(sum(statuses.values()))
    return LoadResult(
        concurrency=config.concurrency,
        requests_planned=total,
        requests_sent=sent,
        ok=int(len(done)),
        statuses=dict(sorted(statuses.items())),
        duration_s=round(duration, 3),
        throughput_rps=round(len(done) / duration, 1) if duration > 0 else 0.0,
        latency_ms=summarize_ms(done),
        cdf_ms=cdf_points(done),
        stopped_by_time_limit=stopped,
        errors=errors,
    )


def run_load(url: str, path: str, bodies: Sequence[dict] | None, config: LoadConfig) -> LoadResult:
    """POST `bodies` (cycled) to `url` + `path` under `config`, or GET `path` when `bodies` is None;
    blocks until done."""
    if bodies is not None and not bodies:
        raise LoadError("bodies: need at least one request body")
    encoded = [None] if bodies is None else [json.dumps(b, separators=(",", ":")).encode() for b in bodies]
    return asyncio.run(_run(url.rstrip("/"), path, encoded, config))
