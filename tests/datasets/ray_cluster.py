"""A real local Ray cluster for tests: a head and workers started with ``ray start``, all on
127.0.0.1 with ports of their own and session files in a temporary directory; stopped by the ids
of the processes it started (never ``ray stop``, which would stop every Ray on the machine)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalRayCluster:
    def __init__(self, workers: int = 2, cpus: int = 1, timeout: float = 120, env: dict[str, str] | None = None):
        # a short path: Ray's unix sockets live under it (at most 107 characters)
        self.temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        # a throwaway cluster on loopback: no usage reports, and no token auth (which would read or
        # write ~/.ray/auth_token, shared with any other Ray on the machine)
        self.env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled", **(env or {})}
        """The nodes' environment (their workers inherit it); drivers run with it too."""
        self.nodes: list[subprocess.Popen] = []
        self.logs: list[list[str]] = []
        try:
            self._start(["--head", "--port", str(self.port), "--include-dashboard", "false"], cpus, timeout)
            for _ in range(workers):
                self._start(["--address", self.address], cpus, timeout)
        except BaseException:
            self.stop()
            raise

    def _start(self, role: list[str], cpus: int, timeout: float) -> None:
        ports = {flag: str(free_port()) for flag in (
            "--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port",
            "--dashboard-agent-grpc-port", "--runtime-env-agent-port", "--metrics-export-port")}
        argv = [RAY, "start", *role, "--node-ip-address", "127.0.0.1", "--num-cpus", str(cpus), "--temp-dir",
                self.temp_dir, "--disable-usage-stats", "--object-store-memory", str(200 * 2 ** 20), "--block",
                *[x for kv in ports.items() for x in kv]]
        node = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True, env=self.env)
        self.nodes.append(node)
        lines: list[str] = []
        self.logs.append(lines)
        started = threading.Event()

        def read() -> None:  # keep draining the node's output so it never blocks on a full pipe
            assert node.stdout is not None
            for line in node.stdout:
                lines.append(line)
                if "Ray runtime started" in line:
                    started.set()

        threading.Thread(target=read, daemon=True).start()
        deadline = time.monotonic() + timeout
        while not started.wait(0.2):
            if node.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ray start {' '.join(role)} did not start:\n{''.join(lines)[-3000:]}")

    def _processes(self) -> list[tuple[int, str]]:
        """This cluster's processes: those naming its session directory, and all their descendants
        (Ray workers retitle themselves "ray::...", so they are found by their parents)."""
        parent, cmdline = {}, {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            parent[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
            cmdline[int(entry.name)] = cmd
        ours = {pid for pid, cmd in cmdline.items() if self.temp_dir in cmd} | {n.pid for n in self.nodes}
        grew = True
        while grew:
            more = {pid for pid, ppid in parent.items() if ppid in ours} - ours
            ours |= more
            grew = bool(more)
        return [(pid, cmdline[pid]) for pid in sorted(ours) if pid in cmdline]

    def stop(self) -> None:
        for _ in range(50):  # by id: the processes of this cluster only
            left = [(pid, cmd) for pid, cmd in self._processes() if pid != os.getpid()]
            if not left:
                break
            for pid, _ in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)
        for node in self.nodes:
            node.wait()
        shutil.rmtree(self.temp_dir, ignore_errors=True)
