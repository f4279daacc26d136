#!/usr/bin/env python3
"""Run kwok, the fake kubelet of the `kwok` driver's Nodes, against an API server.

The tests (a session fixture of tests/e2e) and `tools/run --provider kwok` both start it
here, the same way: the `kwok` binary tools/build-control-plane builds (v0.8.0), the
driver's stages (operator/nodecluster/providers/kwok/stages.yaml), managing only Nodes
labelled `kwok.x-k8s.io/node=fake` (so it never takes over a real kubelet's Node when
pointed at a real cluster), with node leases (so the node lifecycle controller does not
mark the Nodes Unknown), and its health endpoint on a free loopback port, which `start`
waits for. kwok exits with the process that started it (setpriv's death signal, where
there is setpriv), as the control plane's components do.

Only the standard library is used, as in controlplane.py, so `python tools/kwok.py
--kubeconfig FILE` works from a checkout:

    python tools/kwok.py --kubeconfig "$KUBECONFIG"      # until Ctrl-C
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import IO

ROOT = Path(__file__).resolve().parents[1]
STAGES = ROOT / "operator" / "nodecluster" / "providers" / "kwok" / "stages.yaml"
"""The driver's stages (also nodecluster.providers.kwok.STAGES)."""
SELECTOR = "kwok.x-k8s.io/node=fake"
"""The Nodes kwok manages (also nodecluster.providers.kwok.nodes.KWOK_SELECTOR)."""
LEASE_SECONDS = 40
"""Node lease duration, as kwok's own in-cluster deployment sets it."""
LOG_TAIL_LINES = 30


class KwokError(RuntimeError):
    """kwok did not start or stopped: the message carries the end of its log."""


def find_binary() -> Path:
    """The kwok binary: on PATH, else the one tools/build-control-plane builds."""
    found = shutil.which("kwok")
    if found:
        return Path(found)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from controlplane import default_bin_dir

    return default_bin_dir() / "kwok"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class KwokProcess:
    """One kwok process. Use as a context manager, or call start() and stop()."""

    def __init__(
        self,
        kubeconfig: str | os.PathLike[str],
        log_path: str | os.PathLike[str],
        *,
        binary: str | os.PathLike[str] | None = None,
        stages: str | os.PathLike[str] = STAGES,
        selector: str = SELECTOR,
    ) -> None:
        self.kubeconfig = Path(kubeconfig)
        self.log_path = Path(log_path)
        self.binary = Path(binary) if binary is not None else None
        self.stages = Path(stages)
        self.selector = selector
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def __enter__(self) -> KwokProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def command(self) -> list[str]:
        """kwok's command line."""
        binary = self.binary or find_binary()
        return [
            str(binary),
            f"--kubeconfig={self.kubeconfig}",
            f"--config={self.stages}",
            "--manage-all-nodes=false",
            f"--manage-nodes-with-label-selector={self.selector}",
            f"--node-lease-duration-seconds={LEASE_SECONDS}",
            f"--server-address=127.0.0.1:{self.port}",
        ]

    def start(self, timeout: float = 60.0) -> KwokProcess:
        """Start kwok and return once its health endpoint answers; KwokError (with its
        log) if it exits or does not answer within `timeout` seconds."""
        if not self.stages.is_file():
            raise KwokError(f"kwok's stages are missing: {self.stages}")
        self.port = _free_port()
        command = self.command()
        setpriv = shutil.which("setpriv")
        if setpriv and threading.current_thread() is threading.main_thread():
            command = [setpriv, "--pdeathsig", "KILL", "--", *command]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("wb")
        try:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as err:
            self.stop()
            raise KwokError(f"kwok could not be started ({command[0]}): {err}") from err
        deadline = time.monotonic() + timeout
        while not self._healthy():
            if self.process.poll() is not None:
                code = self.process.returncode
                self.stop()
                raise KwokError(f"kwok exited with code {code}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise KwokError(f"kwok did not answer within {timeout:g}s:\n{self.log_tail()}")
            time.sleep(0.1)
        return self

    def _healthy(self) -> bool:
        url = f"http://127.0.0.1:{self.port}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                return bool(answer.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def check_alive(self) -> None:
        """KwokError, with its log, if kwok exited: a test should say so, not time out."""
        if self.process is None or self.process.poll() is not None:
            code = None if self.process is None else self.process.returncode
            raise KwokError(f"kwok is not running (exit code {code}):\n{self.log_tail()}")

    def stop(self) -> None:
        """Stop kwok (SIGTERM, then SIGKILL after 10 s); idempotent."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=10)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The end of kwok's log."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


def main(argv: list[str] | None = None) -> int:
    """`python tools/kwok.py --kubeconfig FILE`: run kwok until Ctrl-C."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--kubeconfig", required=True, help="the API server's kubeconfig")
    parser.add_argument("--log", default="kwok.log", help="kwok's log file (default kwok.log)")
    args = parser.parse_args(argv)
    kwok = KwokProcess(args.kubeconfig, args.log)
    try:
        kwok.start()
        print(f"kwok running (log: {args.log}); Ctrl-C stops it", flush=True)
        while True:
            kwok.check_alive()
            time.sleep(1.0)
    except KeyboardInterrupt:
        return 130
    except KwokError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        kwok.stop()


if __name__ == "__main__":
    sys.exit(main())
