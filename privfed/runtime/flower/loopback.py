"""A throw-away Flower deployment on 127.0.0.1: one SuperLink and N SuperNodes as child processes.

Used by the integration test and for local trials. Everything binds to 127.0.0.1 only (free ports picked by the
OS), runs in ``--insecure`` mode (plain HTTP: acceptable on loopback only), keeps Flower's files in a private
``FLWR_HOME``, turns off Flower's telemetry, update check and runtime dependency installation, and is torn down
by process-group id (each process is started in its own session; nothing is killed by name). It never uses
Flower's Ray-based simulation engine, which listens on every interface.

Threat model: none beyond the loopback interface; do not use this for anything but local trials.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

__all__ = ["LoopbackDeployment", "free_port", "free_ports", "CONNECTION"]

CONNECTION = "privfed-loopback"
HOST = "127.0.0.1"


def free_port() -> int:
    """A loopback port free right now, below the kernel's ephemeral range (see :func:`free_ports`)."""
    return free_ports(1)


def free_ports(count: int) -> int:
    """The first of ``count`` consecutive loopback ports that are free right now, chosen below the kernel's
    ephemeral range. A port the kernel hands out for ``bind(0)`` lies inside that range, where any outgoing
    connection (a SuperNode dialling the SuperLink) may take it before the server meant for it binds it: a node
    then fails with "address already in use". Ports below the range are never given to outgoing connections."""
    low, _ = _ephemeral_range()
    first = max(1024, low - 12_000)
    for _ in range(200):
        base = first + int.from_bytes(os.urandom(4), "big") % (low - count - first)
        if all(_bindable(base + i) for i in range(count)):
            return base
    raise RuntimeError(f"no {count} consecutive free loopback ports below {low}")


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default; other systems use ranges above it too


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _wait_listening(port: int, process: subprocess.Popen, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with code {process.returncode}")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.5)
            if sock.connect_ex((HOST, port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not listen on {HOST}:{port} within {timeout:g} s")


def _parents() -> dict[int, int]:
    """pid -> parent pid of every visible process (Linux /proc; empty elsewhere)."""
    table: dict[int, int] = {}
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_bytes()
                table[int(entry.name)] = int(stat.rsplit(b")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    return table


def _descendants(roots: list[int]) -> list[int]:
    parents = _parents()
    found: list[int] = []
    frontier = list(roots)
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in found]
        found.extend(children)
        frontier.extend(children)
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return stat.rsplit(b")", 1)[1].split()[0] != b"Z"


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _die_with_parent() -> None:
    """In the child before exec (Linux): get SIGKILL if the process that started it dies, so a killed test run
    leaves no SuperLink or SuperNode behind (Flower's own helpers watch their parents the same way)."""
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:
            pass


def toml_value(value: Any) -> str:
    """One TOML value (bool, number, or a basic string) for generated Flower config files and node configs."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


@dataclass
class LoopbackDeployment:
    """``with LoopbackDeployment(workdir, nodes=3) as deployment: deployment.run(app_dir, {...})``."""

    workdir: Path
    nodes: int = 3
    #: extra node-config entries for every node (partition-id and num-partitions are always set)
    node_config: Mapping[str, Any] = field(default_factory=dict)
    #: extra node-config entries per partition (e.g. each node's own signing-key), over ``node_config``
    node_configs: Mapping[int, Mapping[str, Any]] = field(default_factory=dict)
    startup_timeout: float = 60.0
    superlink_port: int = 0
    #: node-local data: node i gets node-config data-path=DATA_ROOT/node-i (as loopback.sh --data-root)
    data_root: Path | None = None
    #: start SuperNodes with privfed's short idle poll (privfed.runtime.flower.fastnode) instead of Flower's 3 s
    fast_nodes: bool = True
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir)
        self.home = self.workdir / "flwr-home"
        self.logs = self.workdir / "logs"

    # --- environment -----------------------------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        bindir = str(Path(sys.executable).parent)
        env.update(
            PATH=bindir + os.pathsep + env.get("PATH", ""),  # flower-superexec / flwr-clientapp from this venv
            FLWR_HOME=str(self.home),
            FLWR_TELEMETRY_ENABLED="0",
            FLWR_DISABLE_UPDATE_CHECK="1",
            FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION="1",
            FLWR_SUPEREXEC_TASK_POLL_INTERVAL="0.1",  # start ServerApp/ClientApp processes sooner (default 1 s)
            PYTHONUNBUFFERED="1",
        )
        # nodes that train at the same time share this machine's cores instead of each taking all of them
        env.setdefault("PRIVFED_CLIENTAPP_THREADS", str(max(1, (os.cpu_count() or 1) // max(1, self.nodes))))
        return env

    def _tool(self, name: str) -> str:
        path = Path(sys.executable).parent / name
        return str(path) if path.exists() else name

    def _supernode(self) -> list[str]:
        """Flower's SuperNode, through privfed's launcher that shortens its idle poll (``fast_nodes``; see
        :mod:`privfed.runtime.flower.fastnode`), or ``flower-supernode`` itself."""
        if self.fast_nodes:
            return [sys.executable, "-m", "privfed.runtime.flower.fastnode"]
        return [self._tool("flower-supernode")]

    def _spawn(self, key: str, argv: list[str]) -> subprocess.Popen:
        self.logs.mkdir(parents=True, exist_ok=True)
        out = open(self.logs / f"{key}.log", "wb")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=self.env(),
                                   cwd=self.workdir, start_new_session=True, preexec_fn=_die_with_parent)
        out.close()
        self.processes[key] = process
        return process

    # --- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> "LoopbackDeployment":
        self.home.mkdir(parents=True, exist_ok=True)
        self.superlink_port = self.superlink_port or free_port()
        (self.home / "config.toml").write_text(
            f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\n'
            f'address = "{HOST}:{self.superlink_port}"\ninsecure = true\n', encoding="utf-8")
        link = self._spawn("superlink", [self._tool("flower-superlink"), "--insecure", "--host", HOST,
                                         "--port", str(self.superlink_port),
                                         "--disable-runtime-dependency-installation"])
        _wait_listening(self.superlink_port, link, self.startup_timeout, "flower-superlink")
        waiting = [self.start_node(partition, wait=False) for partition in range(self.nodes)]
        for partition, (node, port) in enumerate(waiting):
            _wait_listening(port, node, self.startup_timeout, f"flower-supernode {partition}")
        return self

    def start_node(self, partition: int, wait: bool = True) -> tuple[subprocess.Popen, int]:
        """Start the SuperNode holding ``partition`` (its Runtime API on a free loopback port)."""
        port = free_port()
        config = {"partition-id": partition, "num-partitions": self.nodes, **self.node_config}
        if self.data_root is not None:
            config["data-path"] = str(Path(self.data_root).resolve() / f"node-{partition}")
        config.update(self.node_configs.get(partition, {}))  # per-node settings last: they name this node's own files
        node = self._spawn(f"supernode-{partition}", [
            *self._supernode(), "--insecure", "--superlink", f"{HOST}:{self.superlink_port}",
            "--host", HOST, "--port", str(port), "--max-wait-time", str(int(self.startup_timeout)),
            "--node-config", " ".join(f"{k}={toml_value(v)}" for k, v in config.items())])
        if wait:
            _wait_listening(port, node, self.startup_timeout, f"flower-supernode {partition}")
        return node, port

    def stop(self, grace: float = 5.0) -> None:
        """Stop every process this deployment started and their descendants (Flower starts SuperExec, ServerApp and
        ClientApp processes in sessions of their own): SIGTERM by pid, then SIGKILL whatever is left."""
        started = [p.pid for p in self.processes.values()]
        pids = [pid for pid in _descendants(started) if pid not in started] + started
        for pid in pids:
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
            time.sleep(0.1)
        for pid in pids:
            _signal(pid, signal.SIGKILL)
        for process in self.processes.values():
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass

    def kill_node(self, partition: int) -> None:
        """Stop one SuperNode (and its descendants) at once, as a crash would."""
        process = self.processes[f"supernode-{partition}"]
        for pid in [*_descendants([process.pid]), process.pid]:
            _signal(pid, signal.SIGKILL)
        process.wait(timeout=10)

    def __enter__(self) -> "LoopbackDeployment":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- runs ------------------------------------------------------------------------------------------------
    def submit(self, app_dir: str | Path, run_config: Mapping[str, Any], timeout: float = 120.0) -> str:
        """``flwr run APP privfed-loopback --run-config FILE``; returns Flower's output (it holds the run id)."""
        overrides = self.workdir / f"run-config-{time.monotonic_ns()}.toml"
        overrides.write_text("".join(f"{k} = {toml_value(v)}\n" for k, v in run_config.items()), encoding="utf-8")
        argv = [self._tool("flwr"), "run", str(Path(app_dir).resolve()), CONNECTION, "--run-config", str(overrides)]
        done = subprocess.run(argv, env=self.env(), cwd=self.workdir, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"flwr run failed ({done.returncode}): {done.stdout[-2000:]} {done.stderr[-2000:]}")
        return done.stdout

    def wait_report(self, path: str | Path, timeout: float) -> dict[str, Any]:
        """The ServerApp's JSON report once written (bounded wait)."""
        path = Path(path)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if path.exists():
                return json.loads(path.read_text(encoding="utf-8"))
            if self.processes["superlink"].poll() is not None:
                raise RuntimeError("flower-superlink exited during the run")
            time.sleep(0.5)
        raise TimeoutError(f"no report at {path} within {timeout:g} s\n{self.log_tail()}")

    def run(self, app_dir: str | Path, run_config: Mapping[str, Any], timeout: float = 120.0) -> dict[str, Any]:
        """Submit a run that writes ``report`` and wait for that report."""
        report = Path(run_config.get("report") or self.workdir / f"report-{time.monotonic_ns()}.json")
        self.submit(app_dir, {**run_config, "report": str(report)})
        return self.wait_report(report, timeout)

    def log_tail(self, chars: int = 3000) -> str:
        parts = []
        for key in self.processes:
            text = (self.logs / f"{key}.log").read_text(encoding="utf-8", errors="replace")
            parts.append(f"--- {key} ---\n{text[-chars:]}")
        return "\n".join(parts)
