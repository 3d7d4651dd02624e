"""The cluster spec: `TF_CONFIG` as every tf.distribute launcher hands it over, validated into a `Cluster`.

    {"cluster": {"worker": ["host1:23456", "host2:23456"]}, "task": {"type": "worker", "index": 0}}

Only the task types of a synchronous all-reduce run are accepted (`worker`, and at most one `chief`); roles follow
tf.distribute's order: the chief task first, then the workers, and rank 0 is the chief.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from edge.errors import UserError

TF_CONFIG = "TF_CONFIG"
JOBS = ("chief", "worker")  # the only task types a synchronous all-reduce run has (no ps, no evaluator)


@dataclass(frozen=True)
class Cluster:
    """A validated TF_CONFIG: the cluster's workers and this process's place in it."""

    jobs: dict[str, list[str]]  # task type -> "host:port" addresses
    task_type: str
    task_index: int

    @property
    def num_workers(self) -> int:
        return sum(len(v) for v in self.jobs.values())

    @property
    def worker_id(self) -> int:
        """This worker's rank: the chief task first, then the workers in order (tf.distribute's order)."""
        n_chief = len(self.jobs.get("chief", []))
        return self.task_index if self.task_type == "chief" else n_chief + self.task_index

    @property
    def is_chief(self) -> bool:
        return self.worker_id == 0

    @property
    def address(self) -> str:
        return self.jobs[self.task_type][self.task_index]


def _bad(problem: str) -> UserError:
    return UserError(f"{TF_CONFIG} is not a usable cluster spec: {problem}. Expected e.g. "
                     '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}')


def _check_address(job: str, i: int, address: Any) -> str:
    if not isinstance(address, str) or address.count(":") < 1:
        raise _bad(f"cluster.{job}[{i}] must be a 'host:port' string, got {address!r}")
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise _bad(f"cluster.{job}[{i}] = {address!r} needs a host and a port 1..65535")
    return address


def parse_tf_config(text: str | None) -> Cluster | None:
    """Validate a TF_CONFIG string; None when it is unset or empty (a single-process run)."""
    if text is None or not text.strip():
        return None
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _bad(f"it is not JSON ({exc.msg} at character {exc.pos})") from exc
    if not isinstance(spec, dict):
        raise _bad(f"it must be a JSON object, got {type(spec).__name__}")
    cluster, task = spec.get("cluster"), spec.get("task")
    if not isinstance(cluster, dict) or not cluster:
        raise _bad("'cluster' is missing or not an object of task type -> addresses")
    if not isinstance(task, dict):
        raise _bad("'task' is missing or not an object with 'type' and 'index'")
    unknown = sorted(set(cluster) - set(JOBS))
    if unknown:
        raise _bad(f"task types {unknown} are not used here (training is synchronous all-reduce: list the machines "
                   f"under 'worker', optionally one 'chief'; there is no parameter server or evaluator)")
    jobs: dict[str, list[str]] = {}
    for job, addresses in cluster.items():
        if not isinstance(addresses, list) or not addresses:
            raise _bad(f"cluster.{job} must be a non-empty list of 'host:port' strings")
        jobs[job] = [_check_address(job, i, a) for i, a in enumerate(addresses)]
    if len(jobs.get("chief", [])) > 1:
        raise _bad(f"there can be one chief, cluster.chief lists {len(jobs['chief'])}")
    everyone = [a for job in JOBS for a in jobs.get(job, [])]
    dupes = sorted({a for a in everyone if everyone.count(a) > 1})
    if dupes:
        raise _bad(f"addresses {dupes} appear twice")
    task_type, index = task.get("type"), task.get("index")
    if not isinstance(task_type, str) or task_type not in jobs:
        raise _bad(f"task.type must be one of {sorted(jobs)}, got {task_type!r}")
    if isinstance(index, bool) or not isinstance(index, int):
        raise _bad(f"task.index must be an integer, got {index!r}")
    if not 0 <= index < len(jobs[task_type]):
        raise _bad(f"task.index {index} is out of range: cluster.{task_type} has {len(jobs[task_type])} entries")
    return Cluster(jobs, task_type, index)
