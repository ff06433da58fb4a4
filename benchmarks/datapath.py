"""Scale of the data path: a million profiled-request stacks through Aggregator, summary, exports.

Runs in a child process (``python -m benchmarks.datapath``) so that its peak RSS is its own. The
synthetic data looks like real profiles: each endpoint has its own pool of a few thousand distinct
stacks, 10 to 40 frames deep, grown as random walks down a call tree (so stacks share prefixes and
frames), and each profiled request carries 10 stacks drawn from its endpoint's pool, with skewed
(Zipf-like) popularity.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import resource
import subprocess
import sys
import time
from dataclasses import dataclass

from benchmarks.settings import Mode
from benchmarks.timing import progress

STACKS_PER_REQUEST = 10


@dataclass(frozen=True)
class DatapathResult:
    stacks: int
    requests: int
    endpoints: int
    distinct_stacks: int
    mean_depth: float
    build_pool_s: float
    ingest_s: float
    ingest_us_per_request: float
    rss_start_mb: float
    rss_pool_mb: float
    peak_rss_ingest_mb: float
    summary_ms: float
    peak_rss_summary_mb: float
    store_roundtrip_ms: float
    peak_rss_mb: float
    exports: dict[str, dict[str, float]]


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(
    stacks: int, endpoints: int, pool: int, *, all_exports: bool, seed: int = 1
) -> DatapathResult:
    from wsgiprof.aggregate import Aggregator
    from wsgiprof.export import EXPORTERS
    from wsgiprof.model import Frame, ProfiledRequest, Stack, Weight
    from wsgiprof.stores import MemoryStore
    from wsgiprof.stores.base import ProcessInfo, Snapshot
    from wsgiprof.summary import build_summary

    rss_start = _rss_mb()
    rng = random.Random(seed)
    t0 = time.perf_counter()
    names = [f"GET /api/v1/resource{i}/<int:id>" for i in range(endpoints)]
    pools: list[list[Stack]] = []
    depth_sum = 0
    for e in range(endpoints):
        functions = [
            Frame(f"module{e % 37}.Class{i % 13}.method_{i}", f"/srv/app/pkg{i % 23}/mod{i}.py", i)
            for i in range(300)
        ]
        seen: set[Stack] = set()
        while len(seen) < pool:
            node = 0
            frames = []
            for step in rng.choices((1, 2, 3), k=rng.randint(10, 40)):
                node = (node * 3 + step) % len(functions)
                frames.append(functions[node])
            seen.add(tuple(frames))
        endpoint_pool = list(seen)
        depth_sum += sum(len(s) for s in endpoint_pool)
        pools.append(endpoint_pool)
    build_pool_s = time.perf_counter() - t0
    rss_pool = _rss_mb()
    weights = list(itertools.accumulate(1.0 / (rank + 1) ** 0.8 for rank in range(pool)))
    aggregator = Aggregator(max_endpoints=max(500, endpoints), stack_cap=5000)
    requests = stacks // STACKS_PER_REQUEST
    ingest_s = 0.0
    chunk = 2000
    made = 0
    while made < requests:
        batch = []
        for _ in range(min(chunk, requests - made)):
            e = rng.randrange(endpoints)
            chosen = rng.choices(pools[e], cum_weights=weights, k=STACKS_PER_REQUEST)
            batch.append(
                ProfiledRequest(
                    endpoint=names[e],
                    start=0.0,
                    wall=0.012,
                    cpu=0.010,
                    status=200,
                    stacks={stack: Weight(1, 0.0012, 0.001) for stack in chosen},
                )
            )
        made += len(batch)
        start = time.perf_counter()
        for request in batch:
            aggregator.add(request)
        ingest_s += time.perf_counter() - start
    peak_ingest = _rss_mb()
    delta = aggregator.drain()
    distinct = sum(len(p.stacks) for p in delta.values())
    snapshot = Snapshot(window_start=0.0, window_end=60.0, endpoints=delta)
    summary_times = []
    for _ in range(3):
        start = time.perf_counter()
        build_summary(snapshot, engine="pyinstrument", sample_rate=0.05)
        summary_times.append(time.perf_counter() - start)
    peak_summary = _rss_mb()
    exports: dict[str, dict[str, float]] = {}
    profiles = list(delta.values())
    largest = max(profiles, key=lambda p: len(p.stacks))
    for fmt, exporter in EXPORTERS.items():
        start = time.perf_counter()
        body = exporter.export([largest], "cpu")
        one_s = time.perf_counter() - start
        exports[fmt] = {"one_endpoint_ms": one_s * 1000, "one_endpoint_kb": len(body) / 1024}
        del body
        if all_exports:
            progress(f"data path: exporting all endpoints as {fmt}")
            start = time.perf_counter()
            body = exporter.export(profiles, "cpu")
            exports[fmt]["all_endpoints_ms"] = (time.perf_counter() - start) * 1000
            exports[fmt]["all_endpoints_mb"] = len(body) / 2**20
            del body
    store_ms = float("nan")
    if all_exports:  # full mode only: a copy of everything, slow and memory-hungry
        store = MemoryStore()
        start = time.perf_counter()
        store.flush(delta, ProcessInfo())
        store.read()
        store_ms = (time.perf_counter() - start) * 1000
    return DatapathResult(
        stacks=requests * STACKS_PER_REQUEST,
        requests=requests,
        endpoints=endpoints,
        distinct_stacks=distinct,
        mean_depth=depth_sum / (pool * endpoints),
        build_pool_s=build_pool_s,
        ingest_s=ingest_s,
        ingest_us_per_request=ingest_s / max(requests, 1) * 1e6,
        rss_start_mb=rss_start,
        rss_pool_mb=rss_pool,
        peak_rss_ingest_mb=peak_ingest,
        summary_ms=sorted(summary_times)[1] * 1000,
        peak_rss_summary_mb=peak_summary,
        store_roundtrip_ms=store_ms,
        peak_rss_mb=_rss_mb(),
        exports=exports,
    )


def run(mode: Mode) -> DatapathResult:
    progress(
        f"data path: {mode.datapath_stacks:,} stacks over {mode.datapath_endpoints} endpoints "
        "(child process)"
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.datapath",
            str(mode.datapath_stacks),
            str(mode.datapath_endpoints),
            str(mode.datapath_pool),
            *(["--all-exports"] if mode.datapath_all_exports else []),
        ],
        stdout=subprocess.PIPE,
        text=True,
        check=True,
        timeout=1800,
    )
    return DatapathResult(**json.loads(done.stdout))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("stacks", type=int)
    parser.add_argument("endpoints", type=int)
    parser.add_argument("pool", type=int)
    parser.add_argument("--all-exports", action="store_true")
    args = parser.parse_args()
    result = measure(args.stacks, args.endpoints, args.pool, all_exports=args.all_exports)
    print(json.dumps(result.__dict__))


if __name__ == "__main__":
    main()
