"""A cluster of `atelier train` workers on this host (127.0.0.1): the shell loop of docs/training.md, in Python.

For tests, benches and a one-host trial of a multi-worker run. It only starts processes with a TF_CONFIG each;
TensorFlow does the rest. Real clusters get their TF_CONFIG from the launcher (Kubernetes, Slurm, a shell loop).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


def free_ports(n: int) -> list[int]:
    """n TCP ports free on 127.0.0.1 right now (held open together, so they differ)."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def tf_config(addresses: list[str], index: int) -> str:
    """The TF_CONFIG of worker `index` of a cluster of `addresses` ("host:port")."""
    return json.dumps({"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}})


@dataclass
class Worker:
    index: int
    process: subprocess.Popen
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.is_file() else ""


def start_workers(train_args: list[list[str]], log_dir: Path, *, env: dict[str, str] | None = None,
                  cpus: list[int] | None = None, nice: int = 0, addresses: list[str] | None = None) -> list[Worker]:
    """Start one `python -m atelier train ARGS` per entry of `train_args` (worker i gets train_args[i]).

    Args:
        log_dir: each worker's stdout and stderr go to worker-<i>.log there.
        env: extra environment for every worker.
        cpus: pin worker i to core cpus[i] with taskset (benches).
        nice: niceness of the workers.
        addresses: the cluster's addresses (default: free ports on 127.0.0.1, one per worker).
    """
    n = len(train_args)
    addresses = addresses or [f"127.0.0.1:{p}" for p in free_ports(n)]
    log_dir.mkdir(parents=True, exist_ok=True)
    workers = []
    for i, args in enumerate(train_args):
        command = [sys.executable, "-m", "atelier", "train", *args]
        if cpus is not None and shutil.which("taskset"):
            command = ["taskset", "-c", str(cpus[i]), *command]
        if nice:
            command = ["nice", "-n", str(nice), *command]
        worker_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {}), "TF_CONFIG": tf_config(addresses, i)}
        log = log_dir / f"worker-{i}.log"
        with open(log, "w") as fh:
            workers.append(Worker(i, subprocess.Popen(command, env=worker_env, stdout=fh, stderr=subprocess.STDOUT),
                                  log))
    return workers


def wait_all(workers: list[Worker], timeout_s: float) -> list[int]:
    """Every worker's exit code; a worker still running after timeout_s is killed (its code is then -9)."""
    import time

    deadline = time.monotonic() + timeout_s
    codes = []
    for w in workers:
        try:
            codes.append(w.process.wait(timeout=max(deadline - time.monotonic(), 0.1)))
        except subprocess.TimeoutExpired:
            w.process.kill()
            codes.append(w.process.wait())
    return codes
