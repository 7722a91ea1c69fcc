"""Running the app with uvicorn: in the foreground (the CLI), with several worker processes,
or in a background thread.

uvicorn uses ``httptools`` and ``uvloop`` when they are installed (the ``serve`` extra
installs both where they exist): they parse HTTP and run the event loop in C, which
:mod:`benchmarks.serving` measured as a sizeable share of the per-request cost. So is
logging every request, which is therefore off unless asked for: ``/metrics`` counts
requests either way.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from dataclasses import asdict, dataclass
from types import TracebackType

import uvicorn
from fastapi import FastAPI

from helpers.export import Predictor

from ._app import DEFAULT_MAX_UPLOAD_BYTES, create_app

DEFAULT_HOST = "127.0.0.1"  # this machine only; pass 0.0.0.0 on purpose (in a container)
DEFAULT_PORT = 8000
SPEC_ENV = "HELPERS_SERVE_APP"  # how run_workers tells each worker process what to serve


@dataclass(frozen=True)
class AppSpec:
    """What it takes to build the app in another process: the model file and the options.

    Attributes:
        model: the model file (``.pt``, ``.ts`` or ``.onnx``; exports need their sidecar).
        backend: ``"auto"``, ``"torch"`` or ``"onnx"`` (see :meth:`Predictor.from_path`).
        threads: intra-op CPU threads per request (``None``: the runtime's default).
        checkpoint: the checkpoint to explain with, for an export.
        max_upload_bytes: the largest request body accepted.
        max_concurrency: the most requests classified at once (``None``: the cores).
    """

    model: str
    backend: str = "auto"
    threads: int | None = 1
    checkpoint: str | None = None
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    max_concurrency: int | None = None

    def create_app(self) -> FastAPI:
        """Load the model and build the app (:func:`helpers.serve.create_app`).

        Raises:
            FileNotFoundError: for a missing model file or sidecar.
            ValueError: for a model that cannot be loaded (see :meth:`Predictor.from_path`).
        """
        predictor = Predictor.from_path(
            self.model, self.backend, threads=self.threads, checkpoint=self.checkpoint
        )
        return create_app(
            predictor,
            max_upload_bytes=self.max_upload_bytes,
            max_concurrency=self.max_concurrency,
        )


def app_from_environment() -> FastAPI:
    """The app described by ``$HELPERS_SERVE_APP`` (uvicorn's factory in each worker)."""
    return AppSpec(**json.loads(os.environ[SPEC_ENV])).create_app()


def run_server(
    app: FastAPI,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    log_level: str = "info",
    access_log: bool = False,
) -> None:
    """Serve ``app`` with uvicorn in this process until interrupted (Ctrl+C or SIGTERM).

    Args:
        app: from :func:`helpers.serve.create_app`.
        host: the address to listen on; the loopback interface by default.
        port: the TCP port.
        log_level: uvicorn's log level.
        access_log: log a line per request (costly at hundreds of requests per second).
    """
    uvicorn.run(
        app, host=host, port=port, log_level=log_level, access_log=access_log, server_header=False
    )


def run_workers(
    spec: AppSpec,
    *,
    workers: int,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    log_level: str = "info",
    access_log: bool = False,
) -> None:
    """Serve the app of ``spec`` from ``workers`` processes sharing one port, until interrupted.

    Each worker loads its own copy of the model and runs its own event loop, so the Python
    work of requests (parsing, decoding, JSON) runs on several cores at once; a single
    process runs it on one core at a time, whatever its thread count. Each worker also
    keeps its own metrics: ``/metrics`` shows the counts of the worker that answered it.
    To scrape complete counts, run one worker per container and scale the containers.

    Args:
        spec: the model and options each worker builds its app from.
        workers: how many processes (uvicorn restarts one that dies).
        host: the address to listen on; the loopback interface by default.
        port: the TCP port.
        log_level: uvicorn's log level.
        access_log: log a line per request.

    Raises:
        ValueError: for fewer than one worker.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}.")
    os.environ[SPEC_ENV] = json.dumps(asdict(spec))  # inherited by the worker processes
    uvicorn.run(
        f"{__name__}:app_from_environment",
        factory=True,
        workers=workers,
        host=host,
        port=port,
        log_level=log_level,
        access_log=access_log,
        server_header=False,
    )


class BackgroundServer:
    """A uvicorn server in a daemon thread, on a port it bound itself; a context manager.

    Use it in notebooks, tests and benchmarks, where the caller goes on running::

        with start_server(app) as server:
            urllib.request.urlopen(server.url + "/health")

    Attributes:
        url: ``http://host:port`` of the running server.
    """

    def __init__(self, app: FastAPI, host: str, port: int, log_level: str) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))  # port 0: the system picks a free one
        bound_host, bound_port = self._socket.getsockname()[:2]
        self.url = f"http://{bound_host}:{bound_port}"
        config = uvicorn.Config(app, log_level=log_level, server_header=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    @property
    def running(self) -> bool:
        """Whether the server's thread is still alive."""
        return self._thread.is_alive()

    def start(self, timeout: float = 30.0) -> BackgroundServer:
        """Start the thread and wait until the server accepts connections."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"The server at {self.url} did not start.")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the server to finish its requests and exit; wait for the thread."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._socket.close()

    def __enter__(self) -> BackgroundServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def start_server(
    app: FastAPI, *, host: str = DEFAULT_HOST, port: int = 0, log_level: str = "warning"
) -> BackgroundServer:
    """Start ``app`` in a background thread and return once it accepts connections.

    Args:
        app: from :func:`helpers.serve.create_app`.
        host: the address to listen on; the loopback interface by default.
        port: the TCP port; 0 lets the system pick a free one (see ``server.url``).
        log_level: uvicorn's log level.

    Returns:
        The running :class:`BackgroundServer`; stop it with ``stop()`` or a ``with`` block.

    Raises:
        OSError: when the address cannot be bound.
        RuntimeError: when the server does not start within 30 seconds.
    """
    return BackgroundServer(app, host, port, log_level).start()
