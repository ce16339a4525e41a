"""Requests per second through admap's OpenAI-compatible client, against a chat-completions server on loopback.

The server is `benchmarks/chat_server.py` (the client tests' too): a `ThreadingHTTPServer` on
127.0.0.1 that answers each request after a fixed ``--latency`` (default 20 ms), so that the
number of requests in flight matters. For each ``--concurrency`` level (default 1, 8 and 64)
`OpenAIGenerator.generate` sends ``--requests`` distinct requests (default 200); each timed call
includes creating the client and its event loop, as every real call does. The cache-hit path is
`generate_cached` with a `ResponseCache` in a temporary folder that already holds every reply:
no request reaches the server, and the time is reading the entries back.

    python benchmarks/bench_clients.py --out results/bench_clients.json

Each figure is the median of ``--repeats`` runs (default 3). The exit code is 0 unless a request
failed: this is a measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Run as a script, this folder is on sys.path and the repository, which holds the `benchmarks` package, is not.
sys.path.insert(0, str(REPO))

from admap.generate.cache import ResponseCache  # noqa: E402
from admap.generate.openai_api import OpenAIGenerator  # noqa: E402
from admap.generate.runner import generate_cached  # noqa: E402
from benchmarks import chat_server  # noqa: E402

KEY_ENV = "ADMAP_BENCH_KEY"  # unset: the loopback server needs no key


class ServerProcess:
    """benchmarks/chat_server.py in a process of its own, so that it does not share the client's GIL."""

    def __init__(self, latency: float):
        self.latency = latency
        self.process: subprocess.Popen | None = None
        self.url = ""

    def __enter__(self) -> ServerProcess:
        command = [sys.executable, chat_server.__file__, "--latency", str(self.latency)]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        line = self.process.stdout.readline().strip()
        if not line.startswith("serving "):
            self.__exit__()
            raise RuntimeError(f"the chat server did not start: {line!r}")
        self.url = line.split(" ", 1)[1]
        return self

    def __exit__(self, *exc) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def _call(self, method: str, path: str) -> dict:
        request = urllib.request.Request(f"{self.url}/{path}", method=method, data=b"" if method == "POST" else None)
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def count(self) -> int:
        return self._call("GET", "stats")["requests"]

    @property
    def max_in_flight(self) -> int:
        return self._call("GET", "stats")["max_in_flight"]

    def reset(self) -> None:
        self._call("POST", "reset")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="requests per measurement (default: %(default)s)")
    parser.add_argument(
        "--concurrency", type=int, nargs="+", default=[1, 8, 64], help="levels to measure (default: 1 8 64)"
    )
    parser.add_argument("--latency", type=float, default=0.02, help="server seconds per request (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure; the median is kept (default: 3)")
    parser.add_argument(
        "--server",
        choices=("process", "thread"),
        default="process",
        help="run the server in its own process (default) or in a thread of this one, sharing its GIL",
    )
    parser.add_argument("--out", help="also write the results as one JSON line to this file")
    return parser.parse_args(argv)


def conversations(tag: str, n: int) -> list[list[dict]]:
    return [[{"role": "user", "content": f"benchmark {tag} request {i}: say something short."}] for i in range(n)]


def client(server, concurrency: int) -> OpenAIGenerator:
    return OpenAIGenerator(
        model="bench-model", base_url=server.url, api_key_env=KEY_ENV, concurrency=concurrency, progress=False
    )


def measure(run, repeats: int) -> tuple[float, list[float]]:
    seconds = []
    for repeat in range(repeats):
        start = time.perf_counter()
        run(repeat)
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), seconds


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.pop(KEY_ENV, None)
    n = args.requests
    rows: list[dict] = []
    failures = 0
    if args.server == "process":
        serving = ServerProcess(args.latency)
    else:
        serving = chat_server.ChatServer(latency=args.latency)
    with serving as server:
        client(server, 1).generate(conversations("warm-up", 2))  # imports openai, opens the first sockets
        server.reset()

        for level in args.concurrency:
            generator = client(server, level)

            def run(repeat: int, generator=generator, level=level) -> None:
                nonlocal failures
                results = generator.generate(conversations(f"c{level}-r{repeat}", n))
                failures += sum(not c.ok for c in results)

            before = server.count()
            seconds, runs = measure(run, args.repeats)
            assert server.count() - before == n * args.repeats, "every request reaches the server once"
            rows.append(
                {
                    "path": f"client, concurrency {level}",
                    "concurrency": level,
                    "requests": n,
                    "seconds": seconds,
                    "runs_s": runs,
                    "requests_per_s": n / seconds,
                    "ceiling_per_s": level / args.latency if args.latency else None,
                    "server_max_in_flight": server.max_in_flight,
                }
            )
            server.reset()

        top = max(args.concurrency)
        with tempfile.TemporaryDirectory(prefix="admap-bench-cache-") as folder:
            cache = ResponseCache(folder)
            generator = client(server, top)
            convs = conversations("cached", n)
            start = time.perf_counter()
            results, _ = generate_cached(generator, convs, cache=cache)
            fill_seconds = time.perf_counter() - start
            failures += sum(not c.ok for c in results)
            before = server.count()

            def hit(repeat: int) -> None:
                replies, stats = generate_cached(generator, convs, cache=cache)
                assert stats.cache_hits == n and all(c.ok for c in replies)

            seconds, runs = measure(hit, args.repeats)
            assert server.count() == before, "a cache hit sends no request"
            rows.append(
                {
                    "path": "cache hit (generate_cached)",
                    "concurrency": None,
                    "requests": n,
                    "seconds": seconds,
                    "runs_s": runs,
                    "requests_per_s": n / seconds,
                    "ceiling_per_s": None,
                    "server_max_in_flight": None,
                    "cache_fill_s": fill_seconds,
                }
            )

    base = rows[0]["requests_per_s"]
    by_level = {row["concurrency"]: row for row in rows if row["concurrency"] is not None}
    for row in rows:
        if row["concurrency"] is not None:
            row["ratio"] = {"against": f"concurrency {rows[0]['concurrency']}", "value": row["requests_per_s"] / base}
        else:
            row["ratio"] = {
                "against": f"concurrency {top}",
                "value": row["requests_per_s"] / by_level[top]["requests_per_s"],
            }

    where = "its own process" if args.server == "process" else "a thread of the client's process"
    print(f"admap OpenAI-compatible client; loopback server benchmarks/chat_server.py in {where}")
    print(f"server latency {args.latency * 1000:g} ms per request")
    print(f"{n} requests per run, median of {args.repeats}; {platform.python_version()}, {os.cpu_count()} CPUs")
    print()
    header = f"{'path':<30} {'seconds':>8} {'req/s':>9} {'ceiling':>8} {'in flight':>9}  ratio"
    print(header)
    print("-" * (len(header) + 24))
    for row in rows:
        ceiling = f"{row['ceiling_per_s']:.0f}" if row["ceiling_per_s"] else "-"
        in_flight = str(row["server_max_in_flight"]) if row["server_max_in_flight"] is not None else "-"
        ratio = f"{row['ratio']['value']:.2f}x vs {row['ratio']['against']}"
        rate = row["requests_per_s"]
        print(f"{row['path']:<30} {row['seconds']:>8.3f} {rate:>9.1f} {ceiling:>8} {in_flight:>9}  {ratio}")
    cached = rows[-1]
    print()
    print(f"ceiling: concurrency / latency. Filling the cache (concurrency {top}): {cached['cache_fill_s']:.3f} s.")
    if failures:
        print(f"WARNING: {failures} requests failed")

    if args.out:
        record = {
            "benchmark": "bench_clients",
            "latency_s": args.latency,
            "server": args.server,
            "requests": n,
            "repeats": args.repeats,
            "failures": failures,
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "rows": rows,
        }
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(record) + "\n")
        print(f"wrote {args.out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
