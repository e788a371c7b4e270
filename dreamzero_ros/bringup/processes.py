"""Child processes for the bringup runner, the demo and the process tests (no rclpy).

Each node runs in its own process group (session) so stopping it also stops anything it spawned;
its output is streamed line by line with a `[name]` prefix and kept in a bounded buffer for tests
and error reports. A `ProcessGroup` stops every member in reverse start order: SIGINT (rclpy shuts
down cleanly), then SIGTERM, then SIGKILL — no orphans.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import TextIO

LogSink = Callable[[str], None]


def _default_sink(stream: TextIO = sys.stdout) -> LogSink:
    lock = threading.Lock()

    def write(line: str) -> None:
        with lock:
            stream.write(line + "\n")
            stream.flush()

    return write


class ManagedProcess:
    """One child process in its own session with prefixed, buffered output."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        required: bool = True,
        sink: LogSink | None = None,
        echo: bool = True,
        buffer_lines: int = 2000,
        cwd: str | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = env
        self.required = required
        self.cwd = cwd
        self._sink = sink or _default_sink()
        self._echo = echo
        self.lines: collections.deque[str] = collections.deque(maxlen=buffer_lines)
        self._lines_lock = threading.Lock()
        self._proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> ManagedProcess:
        self._proc = subprocess.Popen(
            self.argv,
            env=self.env,
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            bufsize=1,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._pump, name=f"log-{self.name}", daemon=True)
        self._reader.start()
        return self

    def _pump(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for raw in self._proc.stdout:
            line = raw.rstrip("\n")
            with self._lines_lock:
                self.lines.append(line)
            if self._echo:
                self._sink(f"[{self.name}] {line}")

    def output(self) -> str:
        with self._lines_lock:
            return "\n".join(self.lines)

    def wait_for_line(self, predicate: Callable[[str], bool], timeout: float) -> str | None:
        """First buffered or future output line matching `predicate`, or None at the deadline."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lines_lock:
                for line in self.lines:
                    if predicate(line):
                        return line
            if not self.running and (self._reader is None or not self._reader.is_alive()):
                return None
            time.sleep(0.05)
        return None

    def send_signal(self, sig: int) -> None:
        if self._proc is None or self._proc.poll() is not None:
            return
        try:
            os.killpg(self._proc.pid, sig)
        except ProcessLookupError:
            pass

    def wait(self, timeout: float | None = None) -> int | None:
        if self._proc is None:
            return None
        try:
            code = self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        if self._reader is not None:
            self._reader.join(timeout=2.0)
        return code

    def stop(self, timeout: float = 5.0, interrupted: bool = False) -> int | None:
        """SIGINT (unless `interrupted`: the caller sent it), then SIGTERM, then SIGKILL to the whole process
        group; returns the exit code. A second SIGINT would land in the node's clean-up."""
        if self._proc is None:
            return None
        for sig, grace in ((signal.SIGINT, timeout), (signal.SIGTERM, 2.0), (signal.SIGKILL, 2.0)):
            if self._proc.poll() is not None:
                break
            if not (interrupted and sig == signal.SIGINT):
                self.send_signal(sig)
            if self.wait(grace) is not None:
                break
        # The leader may be gone while children it spawned in the group are not.
        try:
            os.killpg(self._proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        return self.wait(1.0)


class ProcessGroup:
    """Processes started together and stopped together (reverse order)."""

    def __init__(self) -> None:
        self.processes: list[ManagedProcess] = []

    def add(self, process: ManagedProcess) -> ManagedProcess:
        self.processes.append(process)
        return process

    def start(self, process: ManagedProcess) -> ManagedProcess:
        return self.add(process).start()

    def first_required_exit(self) -> ManagedProcess | None:
        """A required process that has exited, if any."""
        return next((p for p in self.processes if p.required and p.returncode is not None), None)

    def stop_all(self, timeout: float = 5.0) -> dict[str, int | None]:
        for p in reversed(self.processes):
            if p.running:
                p.send_signal(signal.SIGINT)
        codes: dict[str, int | None] = {}
        for p in reversed(self.processes):
            # every one still running was just interrupted (one that was not running has exited: stop returns)
            codes[p.name] = p.stop(timeout, interrupted=True)
        return codes

    def exit_report(self, codes: dict[str, int | None], lines: int = 40) -> str:
        """Each process that did not exit 0 in `codes` (from stop_all) with the last `lines` of its output."""
        by_name = {p.name: p for p in self.processes}
        parts = [f"{name} exited {code}:\n" + "\n".join(by_name[name].output().splitlines()[-lines:])
                 for name, code in codes.items() if code != 0 and name in by_name]
        return "\n".join(parts) or "every process exited 0"

    def __enter__(self) -> ProcessGroup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()
