"""What a FastAPI dependency costs per request: CPU time of a POST route with a JSON body and 0 to 4
async dependencies (the list route's former services, pipeline, request id and principal), and with
the one dependency that returns all four (`serving.deps.list_call`'s shape), driven in process
through the ASGI interface (no socket, no server: only FastAPI's own work is measured).

    python -m benchmarks.dependency_cost [--requests N]

Prints microseconds of CPU per request (this thread's CPU time, so other load on a shared machine
does not count), the median of 5 interleaved rounds per variant.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request, Response
from pydantic import BaseModel


class Body(BaseModel):
    user_id: str
    surface: str = "home"
    page: int = 0
    k: int = 10


async def services(request: Request) -> Any:
    return request.app.state


async def pipeline(state: Annotated[Any, Depends(services)]) -> Any:
    return state


async def request_id(request: Request) -> str:
    return "request-id"


async def principal(request: Request) -> str:
    return "principal"


async def all_four(request: Request) -> tuple[Any, Any, str, str]:
    state = request.app.state
    return state, state, "request-id", "principal"


Services = Annotated[Any, Depends(services)]
Pipeline = Annotated[Any, Depends(pipeline)]
RequestId = Annotated[str, Depends(request_id)]
Principal = Annotated[str, Depends(principal)]
AllFour = Annotated[tuple[Any, Any, str, str], Depends(all_four)]


def variants() -> dict[str, FastAPI]:
    """One app per variant, each with one POST /r route."""
    apps = {name: FastAPI() for name in ("0 dependencies", "1 dependency", "2 dependencies", "3 dependencies",
                                         "4 dependencies", "1 dependency returning 4")}

    @apps["0 dependencies"].post("/r")
    async def r0(body: Body) -> Response:
        return Response(b"{}")

    @apps["1 dependency"].post("/r")
    async def r1(body: Body, a: Services) -> Response:
        return Response(b"{}")

    @apps["2 dependencies"].post("/r")
    async def r2(body: Body, a: Services, b: Pipeline) -> Response:
        return Response(b"{}")

    @apps["3 dependencies"].post("/r")
    async def r3(body: Body, a: Services, b: Pipeline, c: RequestId) -> Response:
        return Response(b"{}")

    @apps["4 dependencies"].post("/r")
    async def r4(body: Body, a: Services, b: Pipeline, c: RequestId, d: Principal) -> Response:
        return Response(b"{}")

    @apps["1 dependency returning 4"].post("/r")
    async def r5(body: Body, call: AllFour) -> Response:
        return Response(b"{}")

    return apps


async def cpu_us_per_request(app: FastAPI, requests: int) -> float:
    body = json.dumps({"user_id": "196", "surface": "feed", "k": 10}).encode()
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/r", "raw_path": b"/r", "query_string": b"", "root_path": "",
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 2), "state": {}}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        return None

    started = time.thread_time()
    for _ in range(requests):
        await app(dict(scope), receive, send)
    return (time.thread_time() - started) / requests * 1e6


async def measure(requests: int, rounds: int = 5) -> dict[str, float]:
    apps = variants()
    for app in apps.values():  # warm up: route compilation, caches
        await cpu_us_per_request(app, 200)
    samples: dict[str, list[float]] = {name: [] for name in apps}
    for _ in range(rounds):
        for name, app in apps.items():
            samples[name].append(await cpu_us_per_request(app, requests))
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5_000, help="requests per variant and round")
    args = parser.parse_args()
    results = asyncio.run(measure(args.requests))
    base = results["0 dependencies"]
    for name, us in results.items():
        print(f"{name:26s} {us:7.1f} us CPU per request  (+{us - base:5.1f} us over none)")


if __name__ == "__main__":
    main()
