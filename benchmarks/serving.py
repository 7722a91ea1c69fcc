"""Serving benchmark: the runtimes side by side, then the web service under a bounded load.

Two parts, run one after the other on this machine with the fast residual CNN of the book
(``resnet9_narrow``, 32x32 inputs):

1. **Runtimes.** Eager PyTorch, TorchScript and ONNX Runtime run the same network on the same
   inputs: single-image latency (p50 and p95 of every call) and batched throughput (batches
   of 64). The three are timed in interleaved rounds, so that load from other programs hits
   them alike, and each speed-up is the median of the per-round ratios. Two more rows time
   what a request costs besides the network: :meth:`helpers.export.Predictor.predict` on
   encoded bytes (decode, resize, normalise, ONNX Runtime, top-5), for a 32x32 PNG and for
   a 640x480 JPEG photo.
2. **The service.** ``python -m helpers serve`` (uvicorn, ONNX backend) runs in a
   *subprocess*, so that the client and the server do not share a GIL, on a free loopback
   port. A closed-loop client (worker threads, each with its own keep-alive
   ``http.client`` connection, each sending its next request when the last is answered)
   POSTs 32x32 PNG files to ``/predict`` as multipart forms, as the upload page does, at 1,
   4 and 16 concurrent clients; it reports requests per second, latency percentiles,
   answers by status (5xx apart) and answers whose label differs from the Predictor's, and
   the CPU time server and client spent per request.

The targets are checked, not assumed: ONNX Runtime at least 2x faster than eager PyTorch for
one image; at 16 concurrent clients at least 300 requests/s with a p99 latency under 50 ms
and no 5xx answer over 5,000 requests.

The weights are the quick-profile ResNet-9 of the training chapter when its checkpoint exists
(``hp.train.fit_or_load(hp.recipes.recipe_config("resnet9", "quick"), ...)`` leaves it in
``data/checkpoints/resnet9_quick/best.pt``), else random: latency does not depend on the
weights, and the page says which were used. Nothing is trained.

Usage::

    python -m benchmarks.serving             # about 2 minutes; writes book/benchmarks/serving.md
    python -m benchmarks.serving --tiny      # seconds: a few calls and requests, writes nothing
"""

from __future__ import annotations

import argparse
import http.client
import io
import itertools
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import helpers as hp
from benchmarks._report import markdown_table, write_report

MODEL = "resnet9"  # the recipe: resnet9_narrow in the quick profile
BATCH = 64  # images per batch for the throughput column
CONCURRENCY = (1, 4, 16)  # concurrent clients
REQUESTS = {1: 1_000, 4: 2_000, 16: 5_000}  # requests sent at each concurrency
TARGET_SPEEDUP = 2.0  # ONNX Runtime vs eager PyTorch, one image, p50
TARGET_RPS = 300.0  # requests/s at 16 concurrent clients
TARGET_P99_MS = 50.0  # p99 latency at 16 concurrent clients
WARMUP_REQUESTS = 100  # per concurrency, not counted


@dataclass(frozen=True)
class Sizes:
    """How much a run measures."""

    rounds: int = 7  # interleaved rounds of part 1
    calls: int = 60  # single-image calls per runtime per round
    batches: int = 3  # batches of BATCH per runtime per round
    requests: dict[int, int] = field(default_factory=lambda: dict(REQUESTS))
    warmup: int = WARMUP_REQUESTS


TINY = Sizes(rounds=2, calls=5, batches=1, requests={c: 8 * c for c in CONCURRENCY}, warmup=4)


# ----------------------------------------------------------------------------------------------
# The model and its exports
# ----------------------------------------------------------------------------------------------


def load_model() -> tuple[hp.train.TrainedModel, str]:
    """The quick-profile ResNet-9 when its checkpoint exists, else random weights; and which."""
    cfg = hp.recipes.recipe_config(MODEL, "quick")
    best = hp.train.resolve_checkpoint_dir(cfg) / "best.pt"
    if best.is_file():
        trained = hp.train.load_trained(best, device="cpu")
        return trained, f"the quick-profile checkpoint `{best.name}` of `{cfg.train.run_name}`"
    hp.runtime.seed_everything(0)
    trained = hp.train.TrainedModel(
        model=hp.models.create_model_from_config(cfg.model).eval(),
        config=cfg,
        class_names=list(hp.data.CIFAR10_CLASSES),
        epoch=0,
        history=[],
        path=Path("random-init.pt"),  # no such file: nothing to explain with
        mean=hp.data.CIFAR10_MEAN,
        std=hp.data.CIFAR10_STD,
    )
    return trained, "randomly initialised weights (no quick-profile checkpoint was found)"


def _encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    """``image`` encoded as ``fmt``."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def sample_uploads(count: int = 16) -> list[bytes]:
    """``count`` 32x32 PNG files: synthetic test images of every class."""
    data = hp.data.make_synthetic_data(1, 2, image_size=32, seed=1)
    pictures = data.test_images[:count].permute(0, 2, 3, 1).numpy()  # (N, H, W, C) uint8
    return [_encode(Image.fromarray(picture), "PNG") for picture in pictures]


def photo_upload() -> bytes:
    """A 640x480 JPEG with smooth gradients and noise, the size of a small phone photo."""
    rows, cols = np.mgrid[0:480, 0:640]
    noise = np.random.default_rng(0).integers(0, 40, size=(480, 640, 3))
    pixels = np.stack([cols * 255 // 640, rows * 255 // 480, (rows + cols) % 256], axis=-1)
    return _encode(Image.fromarray((pixels + noise).clip(0, 255).astype(np.uint8)), "JPEG")


# ----------------------------------------------------------------------------------------------
# Part 1: the runtimes side by side
# ----------------------------------------------------------------------------------------------

Call = Callable[[], object]


def runtime_calls(
    trained: hp.train.TrainedModel, paths: dict[str, Path], threads: int
) -> dict[str, tuple[Call, Call]]:
    """Per runtime: a single-image call and a batch call, on fixed random inputs."""
    torch.set_num_threads(threads)
    size = trained.config.data.image_size
    one, batch = torch.randn(1, 3, size, size), torch.randn(BATCH, 3, size, size)  # (B, C, H, W)
    model = trained.model.cpu().eval()
    scripted = hp.export.load_torchscript(paths["torchscript"])
    session = hp.export.onnx_session(paths["onnx"], threads=threads)
    name = session.get_inputs()[0].name
    one_np, batch_np = one.numpy(), batch.numpy()

    def torch_call(module: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> Call:
        def call() -> object:
            with torch.inference_mode():
                return module(x)

        return call

    return {
        "eager PyTorch": (torch_call(model, one), torch_call(model, batch)),
        "TorchScript": (torch_call(scripted, one), torch_call(scripted, batch)),
        "ONNX Runtime": (
            lambda: session.run(None, {name: one_np}),
            lambda: session.run(None, {name: batch_np}),
        ),
    }


def predictor_calls(predictor: hp.export.Predictor) -> dict[str, tuple[Call, Call]]:
    """The Predictor's whole path from encoded bytes to the top-5, one image and a batch."""
    png, photo = sample_uploads(1)[0], photo_upload()
    return {
        "Predictor, 32x32 PNG": (
            lambda: predictor.predict(png),
            lambda: predictor.predict([png] * BATCH),
        ),
        "Predictor, 640x480 JPEG": (
            lambda: predictor.predict(photo),
            lambda: predictor.predict([photo] * BATCH),
        ),
    }


def _timed(call: Call, times: int) -> list[float]:
    """Seconds of each of ``times`` calls."""
    seconds = []
    for _ in range(times):
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    return seconds


@dataclass
class _Timings:
    """Every single-image call, and the per-round medians, of one row."""

    single: list[float] = field(default_factory=list)
    round_single: list[float] = field(default_factory=list)  # median of each round
    round_batch: list[float] = field(default_factory=list)  # median batch seconds per round


def measure_runtimes(calls: dict[str, tuple[Call, Call]], sizes: Sizes) -> dict[str, _Timings]:
    """Time every row in interleaved rounds, after one warm-up round."""
    for one, batch in calls.values():
        _timed(one, 5)
        _timed(batch, 1)
    timings = {name: _Timings() for name in calls}
    for _ in range(sizes.rounds):
        for name, (one, batch) in calls.items():
            single = _timed(one, sizes.calls)
            timings[name].single += single
            timings[name].round_single.append(statistics.median(single))
            timings[name].round_batch.append(statistics.median(_timed(batch, sizes.batches)))
    return timings


def _ratio(numerator: list[float], denominator: list[float]) -> float:
    """The median of the per-round ratios."""
    return statistics.median(a / b for a, b in zip(numerator, denominator, strict=True))


def runtime_rows(timings: dict[str, _Timings]) -> list[dict[str, float | str]]:
    """One row per runtime: latency percentiles, throughput, and speed-ups over eager."""
    eager = timings["eager PyTorch"]
    rows = []
    for name, t in timings.items():
        p50, p95 = np.percentile(t.single, [50, 95]) * 1e3
        rows.append(
            {
                "runtime": name,
                "p50_ms": float(p50),
                "p95_ms": float(p95),
                "speedup_1": _ratio(eager.round_single, t.round_single),
                "images_per_s": BATCH / statistics.median(t.round_batch),
                "speedup_batch": _ratio(eager.round_batch, t.round_batch),
            }
        )
    return rows


def runtime_table(rows: list[dict[str, float | str]]) -> str:
    """Part 1's Markdown table."""
    header = [
        "runtime",
        "batch 1: p50 (ms)",
        "p95 (ms)",
        "vs eager",
        f"batch {BATCH}: images/s",
        "vs eager",
    ]
    cells = [
        [
            row["runtime"],
            f"{row['p50_ms']:.2f}",
            f"{row['p95_ms']:.2f}",
            f"{row['speedup_1']:.2f}x",
            f"{row['images_per_s']:,.0f}",
            f"{row['speedup_batch']:.2f}x",
        ]
        for row in rows
    ]
    return markdown_table(header, cells)


# ----------------------------------------------------------------------------------------------
# Part 2: the service under load
# ----------------------------------------------------------------------------------------------


def _free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _tree_cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of process ``pid`` and its descendants (0 once gone)."""
    proc = Path(f"/proc/{pid}")
    try:
        fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        children = [
            int(child)
            for task in (proc / "task").iterdir()
            for child in (task / "children").read_text().split()
        ]
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
    return own + sum(_tree_cpu_seconds(child) for child in children)


class ServerProcess:
    """``python -m helpers serve`` in a subprocess on a free loopback port; a context manager.

    Args:
        model: the ``.onnx`` file (its sidecar next to it).
        options: further ``serve`` arguments, e.g. ``["--threads", "1"]``.
        log: where the server's output goes.
    """

    def __init__(self, model: Path, options: Sequence[str], log: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.command = [sys.executable, "-m", "helpers", "serve", "--model", str(model)]
        self.command += ["--port", str(self.port), *options]
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ServerProcess:
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(self.command, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.2)
        self.__exit__(None, None, None)
        tail = self.log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"The server did not start: {' '.join(self.command)}\n{tail}")

    def cpu_seconds(self) -> float:
        """CPU time the server and its worker processes have used so far (Linux: /proc)."""
        assert self.process is not None
        return _tree_cpu_seconds(self.process.pid)

    def __exit__(self, *_: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def multipart(data: bytes, boundary: str = "benchmark-boundary-7e3f") -> tuple[bytes, str]:
    """A multipart form with ``data`` as the field ``file``, as the upload page sends it."""
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="image.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    return (
        head + data + f"\r\n--{boundary}--\r\n".encode(),
        f"multipart/form-data; boundary={boundary}",
    )


@dataclass
class LoadResult:
    """What the client saw at one concurrency, against one server setup."""

    server: str  # the setup's label
    clients: int
    seconds: float
    latencies: list[float]  # of every answered request, in seconds
    statuses: Counter[str]  # "200", "503", ..., or "no answer"
    wrong: int  # 200 answers whose label differs from the Predictor's
    server_cpu: float  # seconds, all server processes
    client_cpu: float  # seconds, the benchmark's own process

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    @property
    def server_errors(self) -> int:
        """5xx answers, plus requests that got no answer at all."""
        failed = sum(n for status, n in self.statuses.items() if status.startswith("5"))
        return failed + self.statuses.get("no answer", 0)


def _client(
    url: str,
    bodies: Sequence[tuple[bytes, str]],
    expected: Sequence[str],
    tickets: Iterator[int],
    total: int,
    start: threading.Barrier,
    out: list[tuple[list[float], Counter[str], int]],
) -> None:
    """One client: a keep-alive connection, one request at a time, until the tickets run out."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    latencies, statuses, wrong = [], Counter(), 0
    start.wait()
    while (ticket := next(tickets)) < total:  # next() on a count is atomic in CPython
        body, content_type = bodies[ticket % len(bodies)]
        begin = time.perf_counter()
        try:
            connection.request(
                "POST", "/predict", body=body, headers={"Content-Type": content_type}
            )
            response = connection.getresponse()
            payload = response.read()
        except (OSError, http.client.HTTPException):
            statuses["no answer"] += 1
            connection.close()
            connection = http.client.HTTPConnection(host, int(port), timeout=60)
            continue
        latencies.append(time.perf_counter() - begin)
        statuses[str(response.status)] += 1
        if response.status == 200:
            wrong += json.loads(payload)["label"] != expected[ticket % len(expected)]
    connection.close()
    out.append((latencies, statuses, wrong))


def _process_cpu() -> float:
    """CPU time of this process (all threads), user and system."""
    times = os.times()
    return times.user + times.system


def run_load(
    server: ServerProcess,
    uploads: Sequence[bytes],
    expected: Sequence[str],
    clients: int,
    total: int,
    label: str = "",
) -> LoadResult:
    """``total`` requests from ``clients`` concurrent clients; timed from the first to the last."""
    bodies = [multipart(data) for data in uploads]
    tickets, start = itertools.count(), threading.Barrier(clients + 1)
    out: list[tuple[list[float], Counter[str], int]] = []
    threads = [
        threading.Thread(
            target=_client, args=(server.url, bodies, expected, tickets, total, start, out)
        )
        for _ in range(clients)
    ]
    for thread in threads:
        thread.start()
    server_cpu, client_cpu = server.cpu_seconds(), _process_cpu()
    start.wait()
    begin = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - begin
    return LoadResult(
        server=label,
        clients=clients,
        seconds=seconds,
        latencies=[value for latencies, _, _ in out for value in latencies],
        statuses=sum((statuses for _, statuses, _ in out), Counter()),
        wrong=sum(wrong for _, _, wrong in out),
        server_cpu=server.cpu_seconds() - server_cpu,
        client_cpu=_process_cpu() - client_cpu,
    )


# Server setups: the command line's defaults (one process), and two worker processes.
SETUPS: dict[str, tuple[tuple[str, ...], tuple[int, ...]]] = {
    "1 process": ((), CONCURRENCY),
    "2 workers": (("--workers", "2"), (max(CONCURRENCY),)),
}


def measure_service(
    model: Path,
    options: Sequence[str],
    uploads: Sequence[bytes],
    expected: Sequence[str],
    sizes: Sizes,
) -> list[LoadResult]:
    """Each setup of :data:`SETUPS`: start it, then load it at each of its concurrencies."""
    results = []
    with tempfile.TemporaryDirectory() as folder:
        for label, (extra, concurrencies) in SETUPS.items():
            log = Path(folder) / "server.log"
            with ServerProcess(model, [*options, *extra], log) as server:
                for clients in concurrencies:
                    run_load(server, uploads, expected, clients, sizes.warmup)  # warm-up
                    total = sizes.requests[clients]
                    result = run_load(server, uploads, expected, clients, total, label)
                    results.append(result)
                    print("  " + " | ".join(service_cells(result)), flush=True)
    return results


def _percentiles_ms(result: LoadResult) -> list[float]:
    """p50, p95, p99 of the answered requests, in milliseconds."""
    if not result.latencies:
        return [float("nan")] * 3
    return [float(v) for v in np.percentile(result.latencies, [50, 95, 99]) * 1e3]


def service_cells(result: LoadResult) -> list[str]:
    """One row of part 2's table."""
    others = {s: n for s, n in result.statuses.items() if s != "200" and not s.startswith("5")}
    p50, p95, p99 = _percentiles_ms(result)
    per_request = 1e3 / max(result.requests, 1)
    return [
        result.server,
        str(result.clients),
        f"{result.requests:,}",
        f"{result.requests / result.seconds:,.0f}",
        f"{p50:.1f}",
        f"{p95:.1f}",
        f"{p99:.1f}",
        str(result.server_errors),
        ", ".join(f"{s}: {n}" for s, n in sorted(others.items())) or "0",
        str(result.wrong),
        f"{result.server_cpu * per_request:.2f} / {result.client_cpu * per_request:.2f}",
        f"{(result.server_cpu + result.client_cpu) / result.seconds:.2f}",
    ]


SERVICE_HEADER = [
    "server",
    "clients",
    "requests",
    "requests/s",
    "p50 (ms)",
    "p95 (ms)",
    "p99 (ms)",
    "5xx",
    "other errors",
    "wrong labels",
    "CPU ms/request: server / client",
    "cores used",
]


# ----------------------------------------------------------------------------------------------
# Targets, the page, the command line
# ----------------------------------------------------------------------------------------------


def _verdict(text: str, ok: bool) -> str:
    return f"- {text}: **{'met' if ok else 'missed'}**"


def check_targets(rows: list[dict[str, float | str]], loads: list[LoadResult]) -> list[str]:
    """One line per target and server setup: the measured value and whether it is met."""
    onnx = next(row for row in rows if row["runtime"] == "ONNX Runtime")
    speedup = float(onnx["speedup_1"])
    lines = [
        _verdict(
            f"ONNX Runtime vs eager PyTorch, one image: {speedup:.2f}x "
            f"(target: at least {TARGET_SPEEDUP:.0f}x)",
            speedup >= TARGET_SPEEDUP,
        )
    ]
    for result in (r for r in loads if r.clients == max(CONCURRENCY)):
        rps, p99 = result.requests / result.seconds, _percentiles_ms(result)[2]
        where = f"{result.server}, {result.clients} clients, {result.requests:,} requests"
        lines += [
            _verdict(
                f"{where}: {rps:,.0f} requests/s (target: {TARGET_RPS:.0f})", rps >= TARGET_RPS
            ),
            _verdict(
                f"{where}: p99 {p99:.1f} ms (target: under {TARGET_P99_MS:.0f} ms)",
                p99 < TARGET_P99_MS,
            ),
            _verdict(
                f"{where}: {result.server_errors} 5xx or unanswered (target: 0)",
                result.server_errors == 0,
            ),
        ]
    return lines


def explain_limits(rows: list[dict[str, float | str]], loads: list[LoadResult]) -> str:
    """What bounds the service, from the measured costs (a paragraph for the page)."""
    by_name = {str(row["runtime"]): row for row in rows}
    network = float(by_name["ONNX Runtime"]["p50_ms"])
    whole = float(by_name["Predictor, 32x32 PNG"]["p50_ms"])
    single = next(r for r in loads if r.server == "1 process" and r.clients == max(CONCURRENCY))
    server_ms = 1e3 * single.server_cpu / max(single.requests, 1)
    python_ms = max(server_ms - network, 1e-3)
    used = (single.server_cpu + single.client_cpu) / single.seconds
    return (
        f"What bounds the service: at {single.clients} clients each request cost the server "
        f"{server_ms:.2f} ms of CPU time. About {network:.2f} ms of it is the network's "
        f"forward pass in ONNX Runtime, which releases the GIL; the Predictor's whole path "
        f"(decode, preprocess, forward, top-5) takes about {whole:.2f} ms, and the rest is "
        f"HTTP, multipart parsing, JSON and metrics. The Python part, about {python_ms:.2f} "
        f"ms, runs one request at a time in one process, which bounds a process near "
        f"{1e3 / python_ms:,.0f} requests/s however many cores it has; worker processes "
        f"lift that bound with the cores they get. Server and client together used "
        f"{used:.2f} of this machine's {os.cpu_count()} cores in that run: other programs "
        f"took the rest, and requests waiting for a core are what stretch the tail latency."
    )


def get_args_parser() -> argparse.ArgumentParser:
    """The benchmark's command line; every help string says its default."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.serving", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="intra-op threads of every runtime in part 1, and the server's --threads (default: 1)",
    )
    parser.add_argument(
        "--serve-args",
        default="",
        help="more arguments for python -m helpers serve, as one string (default: none)",
    )
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="a few calls and requests; writes no page (default: off)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Run both parts, print the tables and the targets, and write the page after a full run."""
    args = get_args_parser().parse_args(argv)
    sizes = TINY if args.tiny else Sizes()
    start, load = time.perf_counter(), os.getloadavg()[0]
    trained, weights = load_model()
    with tempfile.TemporaryDirectory() as folder:
        paths = hp.export.export_model(trained, folder, version=trained.config.model.name)
        predictor = hp.export.Predictor.from_path(paths["onnx"], threads=args.threads)
        calls = {**runtime_calls(trained, paths, args.threads), **predictor_calls(predictor)}
        print(f"{trained.config.model.name} with {weights}; {args.threads} thread(s)", flush=True)
        rows = runtime_rows(measure_runtimes(calls, sizes))
        print(runtime_table(rows), flush=True)
        uploads = sample_uploads()
        expected = [top[0][0] for top in predictor.predict(uploads, topk=1)]
        options = ["--threads", str(args.threads), *args.serve_args.split()]
        loads = measure_service(paths["onnx"], options, uploads, expected, sizes)
    service = markdown_table(SERVICE_HEADER, [service_cells(result) for result in loads])
    targets, limits = check_targets(rows, loads), explain_limits(rows, loads)
    print(service, *targets, limits, sep="\n", flush=True)
    minutes = (time.perf_counter() - start) / 60
    print(f"benchmark wall time: {minutes:.1f} min (load average {load:.1f} at the start)")
    if args.tiny:
        return
    body = page_body(
        f"`{trained.config.model.name}` with {weights}",
        " ".join(options),
        [runtime_table(rows), service, "\n".join(targets), limits],
        load,
        minutes,
    )
    print(f"written to {write_report('serving', 'Serving: runtimes and the web service', body)}")


def page_body(
    model: str, serve_options: str, sections: list[str], load: float, minutes: float
) -> str:
    """The page section below the command and machine line."""
    runtimes, service, targets, limits = sections
    return f"""
{model}: latency does not depend on the weights. Load average {load:.1f} when the run
started, on {os.cpu_count()} cores; the run took {minutes:.1f} min.

### Runtimes

One image and batches of {BATCH}, with one intra-op thread for every runtime (as the server
runs them), timed in interleaved rounds; speed-ups are medians of per-round ratios. The
Predictor rows add what a request costs besides the network: decoding the upload,
resizing, normalising and the top-5, for a 32x32 PNG and a 640x480 JPEG photo (which
libjpeg decodes at 1/8 scale, as the ETL step does).

{runtimes}

### The web service

`python -m helpers serve --model model.onnx {serve_options}` (uvicorn with httptools and
uvloop, ONNX Runtime, no access log: the command line's defaults) in a subprocess, alone
(*1 process*) and with `--workers 2`. Closed-loop clients (threads with keep-alive
connections, in the benchmark's own process, on the same cores) POST 32x32 PNG files to
`/predict` as multipart forms, as the upload page does, after {WARMUP_REQUESTS} warm-up
requests. Latency is the client's, from sending a request to reading the whole answer;
*wrong labels* counts answers that differ from the Predictor's in-process answer for the
same file; *cores used* is the CPU time of server and client divided by the wall time.

{service}

Targets:

{targets}

{limits}
"""


if __name__ == "__main__":
    main()
