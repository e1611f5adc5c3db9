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
from pathlib import Path
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


# ---------------------------------------------------------------------------------------------------
# wrk: the C load generator of the real-path section (it leaves the cores to the server)
# ---------------------------------------------------------------------------------------------------
WRK_INSTALL_HINT = "scripts/bench-deps.sh"
WRK_PERCENTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p99_9": 99.9}
_WRK_MARKER = "@@recsys-wrk-json@@"


class WrkMissing(LoadError):
    """wrk is not installed; the message names the script that installs it."""


def find_wrk(executable: str = "wrk") -> str:
    """The path of the wrk executable, or WrkMissing with a one-line message naming the install script."""
    import shutil

    found = shutil.which(executable)
    if not found:
        raise WrkMissing(f"wrk is not installed (looked for {executable!r}): run `bash {WRK_INSTALL_HINT}` "
                         "(apt-get install wrk) and rerun, or skip the real-path section with --no-real-path")
    return found


def wrk_version(executable: str) -> str:
    import subprocess

    result = subprocess.run([executable, "--version"], capture_output=True, text=True)
    first = (result.stdout or result.stderr).strip().splitlines()
    return first[0].split(" [")[0] if first else "wrk"


def _lua_string(text: str) -> str:
    level = 0
    while f"]{'=' * level}]" in text:
        level += 1
    return f"[{'=' * level}[{text}]{'=' * level}]"


def wrk_script(path: str, bodies: Sequence[dict], threads: int, cdf_points_: int = 101) -> str:
    """The Lua script: thread t of `threads` POSTs bodies[t], bodies[t + threads], ... round-robin
    (all pre-formatted once), counts responses per status, and prints one JSON line at the end:
    summary, socket errors, statuses, wrk's latency percentiles and a CDF (microseconds)."""
    encoded = ",\n".join(_lua_string(json.dumps(b, separators=(",", ":"))) for b in bodies)
    percentiles = ", ".join(f"{q:g}" for q in WRK_PERCENTILES.values())
    return f"""-- generated by benchmarks/loadgen.py (wrk_script)
local path = {_lua_string(path)}
local bodies = {{
{encoded}
}}
local THREADS = {threads}
local PERCENTILES = {{ {percentiles} }}
local CDF_POINTS = {cdf_points_}
local prepared, position = {{}}, 0
local threads, next_id = {{}}, 0
statuses = {{}}

function setup(thread)
  thread:set("thread_id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  local headers = {{ ["Content-Type"] = "application/json" }}
  for i, body in ipairs(bodies) do
    prepared[i] = wrk.format("POST", path, headers, body)
  end
  position = thread_id or 0
end

function request()
  local r = prepared[(position % #prepared) + 1]
  position = position + THREADS
  return r
end

function response(status, headers, body)
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
end

local function number(x)
  return string.format("%.3f", x)
end

function done(summary, latency, requests)
  local merged = {{}}
  for _, thread in ipairs(threads) do
    local counts = thread:get("statuses") or {{}}
    for key, n in pairs(counts) do merged[key] = (merged[key] or 0) + n end
  end
  local out = {{}}
  for key, n in pairs(merged) do table.insert(out, string.format('"%s":%d', key, n)) end
  local pct = {{}}
  for _, q in ipairs(PERCENTILES) do
    table.insert(pct, string.format('"%s":%s', tostring(q), number(latency:percentile(q))))
  end
  local cdf = {{}}
  for i = 0, CDF_POINTS - 1 do
    local q = 100.0 * i / (CDF_POINTS - 1)
    if q <= 0 then
      table.insert(cdf, number(latency.min))
    elseif q >= 100 then
      table.insert(cdf, number(latency.max))  -- wrk's percentile(100) is 0
    else
      table.insert(cdf, number(latency:percentile(q)))
    end
  end
  local e = summary.errors
  io.write("{_WRK_MARKER}", string.format(
    '{{"duration_us":%d,"requests":%d,"bytes":%d,' ..
    '"errors":{{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}},' ..
    '"latency_us":{{"min":%s,"max":%s,"mean":%s,"stdev":%s,"percentiles":{{%s}},"cdf":[%s]}},"statuses":{{%s}}}}',
    summary.duration, summary.requests, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    number(latency.min), number(latency.max), number(latency.mean), number(latency.stdev),
    table.concat(pct, ","), table.concat(cdf, ","), table.concat(out, ",")), "\\n")
end
"""


@dataclass
class WrkResult:
    """One wrk run: completed requests over the run, throughput of 2xx responses, and wrk's own
    latency distribution (every completed request, whatever its status)."""

    concurrency: int
    threads: int
    duration_s: float
    requests: int
    ok: int  # 2xx responses
    non_2xx: int
    statuses: dict[str, int]
    socket_errors: dict[str, int]  # connect, read, write, timeout (wrk's counters)
    lists_per_s: float  # 2xx responses per second
    requests_per_s: float
    latency_ms: dict[str, float]  # p50, p90, p99, p99_9, mean, stdev, min, max
    cdf_ms: list[float] = field(default_factory=list)  # latency at 101 evenly spaced quantiles
    bytes_per_response: float = 0.0

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def run_wrk(executable: str, url: str, script: Path, concurrency: int, duration_s: float, threads: int = 1,
            timeout_s: float = 10.0) -> WrkResult:
    """`wrk -t threads -c concurrency -d duration_s --latency -s script url` against a loopback URL."""
    import subprocess

    check_loopback(url)
    if concurrency < threads:
        raise LoadError(f"--concurrency: wrk needs at least one connection per thread ({threads}), got {concurrency}")
    if not duration_s > 0:
        raise LoadError(f"--wrk-duration: must be > 0 seconds, got {duration_s}")
    argv = [executable, "-t", str(threads), "-c", str(concurrency), "-d", f"{max(1, round(duration_s))}s",
            "--timeout", f"{max(1, round(timeout_s))}s", "--latency", "-s", str(script), url]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=duration_s + timeout_s + 60)
    line = next((ln for ln in result.stdout.splitlines() if ln.startswith(_WRK_MARKER)), None)
    if result.returncode != 0 or line is None:
        raise LoadError(f"wrk failed (exit {result.returncode}): {(result.stderr or result.stdout).strip()[-1000:]}")
    data = json.loads(line[len(_WRK_MARKER):])
    statuses = {k: int(v) for k, v in sorted(data["statuses"].items())}
    ok = sum(n for s, n in statuses.items() if s.startswith("2"))
    duration = data["duration_us"] / 1e6
    lat = data["latency_us"]
    latency = {name: round(lat["percentiles"][f"{q:g}"] / 1e3, 3) for name, q in WRK_PERCENTILES.items()}
    latency.update({k: round(lat[k] / 1e3, 3) for k in ("mean", "stdev", "min", "max")})
    errors = data["errors"]
    return WrkResult(
        concurrency=concurrency, threads=threads, duration_s=round(duration, 3), requests=int(data["requests"]),
        ok=ok, non_2xx=sum(statuses.values()) - ok, statuses=statuses,
        socket_errors={k: int(errors[k]) for k in ("connect", "read", "write", "timeout")},
        lists_per_s=round(ok / duration, 1) if duration > 0 else 0.0,
        requests_per_s=round(data["requests"] / duration, 1) if duration > 0 else 0.0,
        latency_ms=latency, cdf_ms=[round(v / 1e3, 3) for v in lat["cdf"]],
        bytes_per_response=round(data["bytes"] / max(1, data["requests"]), 1),
    )
