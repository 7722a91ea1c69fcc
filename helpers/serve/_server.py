"""Running the app with uvicorn: in the foreground (the CLI), or in a background thread."""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType

import uvicorn
from fastapi import FastAPI

DEFAULT_HOST = "127.0.0.1"  # this machine only; pass 0.0.0.0 on purpose (in a container)
DEFAULT_PORT = 8000


def run_server(
    app: FastAPI, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, log_level: str = "info"
) -> None:
    """Serve ``app`` with uvicorn until interrupted (Ctrl+C or SIGTERM).

    Args:
        app: from :func:`helpers.serve.create_app`.
        host: the address to listen on; the loopback interface by default.
        port: the TCP port.
        log_level: uvicorn's log level.
    """
    uvicorn.run(app, host=host, port=port, log_level=log_level, server_header=False)


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
