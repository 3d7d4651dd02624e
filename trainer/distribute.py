"""Training on several devices or machines with TensorFlow's own engine (tf.distribute): no scheduler of ours.

- Several machines: `MultiWorkerMirroredStrategy`, driven by the standard `TF_CONFIG` cluster spec each launcher
  (Kubernetes, Slurm, a shell loop) hands to every worker; the same `atelier train` command runs on each.
- Several devices on one host: `MirroredStrategy` over the GPUs, or over logical CPU devices
  (`tf.config.set_logical_device_configuration`) so CI runs the code path a 4-GPU box runs.

The global batch is the config's `batch_size`; replica r of R computes rows [r*b, (r+1)*b) of it (b = batch / R),
and every random draw of a step is made for the whole global batch from the step's stateless seed and sliced, so N
replicas compute what one replica with the same global batch computes (up to float summation order).

Roles: worker 0 (or the `chief` task) is the chief; it alone writes the run folder. The others write to a
temporary folder that is removed at the end. At start every worker enters a handshake (an all-gather) carrying a
hash of its config and of its file list: a worker with other data or another config stops the run before anything
is written. Waits are bounded: a watchdog ends a worker that cannot reach the cluster, the coordination service's
heartbeats turn a dead peer into an error on the others, and collectives time out.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge.errors import UserError
from trainer.cluster_spec import JOBS, TF_CONFIG, Cluster, parse_tf_config

log = logging.getLogger(__name__)



def _seconds(name: str, default: float) -> float:
    text = os.environ.get(name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError as exc:
        raise UserError(f"{name} must be a number of seconds, got {text!r}") from exc
    if not value > 0:
        raise UserError(f"{name} must be a positive number of seconds, got {text!r}")
    return value


@dataclass(frozen=True)
class Timeouts:
    """How long a worker waits before it calls a peer lost (environment variables override each, in seconds)."""

    # Startup: every worker must have joined the cluster and passed the handshake by then.
    startup_s: float = field(default_factory=lambda: _seconds("ATELIER_DIST_STARTUP_TIMEOUT_S", 300.0))
    # A peer that stops sending heartbeats this long is dead (coordination service).
    heartbeat_s: float = field(default_factory=lambda: _seconds("ATELIER_DIST_HEARTBEAT_TIMEOUT_S", 30.0))
    # One collective (an all-reduce of a step) may wait this long for its peers.
    collective_s: float = field(default_factory=lambda: _seconds("ATELIER_DIST_COLLECTIVE_TIMEOUT_S", 600.0))


@dataclass
class Topology:
    """The strategy and where this process sits in it."""

    strategy: Any  # tf.distribute.Strategy
    kind: str  # "single", "mirrored" (one host, several devices) or "multi-worker"
    num_workers: int = 1
    worker_id: int = 0
    local_replicas: int = 1
    cluster: Cluster | None = None
    timeouts: Timeouts = field(default_factory=Timeouts)

    @property
    def is_chief(self) -> bool:
        return self.worker_id == 0

    @property
    def num_replicas(self) -> int:
        return self.num_workers * self.local_replicas

    def describe(self) -> str:
        if self.kind == "single":
            return "one device"
        where = f"worker {self.worker_id} of {self.num_workers}, " if self.kind == "multi-worker" else ""
        return f"{where}{self.num_replicas} replicas ({self.kind})"


_WATCHDOG = """
import os, select, signal, sys
parent, seconds, message = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
ready, _, _ = select.select([sys.stdin], [], [], seconds)
if not ready:  # the parent is still stuck (it closes our stdin when done, or it died)
    sys.stderr.write("error: " + message + chr(10))
    sys.stderr.flush()
    os.kill(parent, signal.SIGKILL)
"""


class _Watchdog:
    """Ends this process with a clear message if a phase TensorFlow cannot interrupt outlives its bound.

    Joining a cluster blocks inside TensorFlow's C++ runtime while holding the GIL (it retries an unreachable peer
    forever and answers neither SIGTERM nor a Python thread), so the bound is kept by a small watcher process: it
    prints the message and kills this one with SIGKILL unless the phase ends first (we close its stdin).
    """

    def __init__(self, seconds: float, what: str):
        self.seconds, self.what = seconds, what
        self._watcher: subprocess.Popen | None = None

    def __enter__(self) -> _Watchdog:
        log.info("waiting up to %.0f s: %s", self.seconds, self.what.split(":")[0])
        self._watcher = subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(self.seconds),
                                          self.what], stdin=subprocess.PIPE)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._watcher is not None
        self._watcher.stdin.close()  # type: ignore[union-attr]
        self._watcher.wait()


def _split_cpu(n: int) -> list[str]:
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * n)
    except RuntimeError as exc:  # TensorFlow's devices were initialised before the split was asked for
        raise UserError(f"cannot split the CPU into {n} devices once TensorFlow has started ({exc}); "
                        "ask for the split before anything else runs") from exc
    return [d.name for d in tf.config.list_logical_devices("CPU")]


def _multi_worker(cluster: Cluster, timeouts: Timeouts):
    import tensorflow as tf
    from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
    from tensorflow.python.eager import context

    # The coordination service is what MultiWorkerMirroredStrategy configures by itself, here with bounded waits:
    # a peer silent for heartbeat_s is declared dead and the collectives of the others fail with UnavailableError.
    leader = "/job:chief/replica:0/task:0" if "chief" in cluster.jobs else "/job:worker/replica:0/task:0"
    context.context().configure_coordination_service(
        service_type="standalone", service_leader=leader,
        cluster_register_timeout_in_ms=int(timeouts.startup_s * 1000),
        heartbeat_timeout_in_ms=int(timeouts.heartbeat_s * 1000),
        shutdown_barrier_timeout_in_ms=int(timeouts.heartbeat_s * 1000),
        coordinated_jobs=[coordination_config_pb2.CoordinatedJob(name=job, num_tasks=len(cluster.jobs[job]))
                          for job in JOBS if job in cluster.jobs])
    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=timeouts.collective_s)
    others = ", ".join(a for a in (cluster.jobs.get("chief", []) + cluster.jobs.get("worker", []))
                       if a != cluster.address)
    with _Watchdog(timeouts.startup_s, f"worker {cluster.worker_id} ({cluster.address}) could not join the "
                   f"cluster within {timeouts.startup_s:.0f} s: is every worker started with the same TF_CONFIG "
                   f"cluster, and can this machine reach {others}? (ATELIER_DIST_STARTUP_TIMEOUT_S sets the wait)"):
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)


def make_topology(cpu_devices: int | None = None, timeouts: Timeouts | None = None) -> Topology:
    """Choose the strategy: TF_CONFIG -> multi-worker; several GPUs or `cpu_devices` > 1 -> mirrored; else one.

    Call it before TensorFlow runs anything else in the process (the CPU split and the cluster need that).
    """
    import tensorflow as tf

    timeouts = timeouts or Timeouts()
    cluster = parse_tf_config(os.environ.get(TF_CONFIG))
    if cpu_devices is not None and cpu_devices < 1:
        raise UserError(f"--cpu-devices must be at least 1, got {cpu_devices}")
    if cluster is not None and cluster.num_workers > 1:
        if cpu_devices and cpu_devices > 1:
            raise UserError("--cpu-devices splits one host; with TF_CONFIG each worker uses its own devices")
        strategy = _multi_worker(cluster, timeouts)
        local = strategy.num_replicas_in_sync // cluster.num_workers
        return Topology(strategy, "multi-worker", cluster.num_workers, cluster.worker_id, local, cluster, timeouts)
    if cluster is not None:
        log.info("TF_CONFIG lists one task: training in this process alone")
    if cpu_devices and cpu_devices > 1:
        devices = _split_cpu(cpu_devices)
        return Topology(tf.distribute.MirroredStrategy(devices), "mirrored", local_replicas=len(devices))
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return Topology(tf.distribute.MirroredStrategy(), "mirrored", local_replicas=len(gpus))
    return Topology(tf.distribute.get_strategy(), "single")


# --- the global batch, split over replicas


def replica_rows(per_replica: Any) -> tuple[Any, Any]:
    """(first row, global batch) of this replica's slice of the global batch, inside a replica context."""
    import tensorflow as tf

    ctx = tf.distribute.get_replica_context()
    replicas = ctx.num_replicas_in_sync if ctx is not None else 1
    rid = ctx.replica_id_in_sync_group if ctx is not None else 0
    return tf.cast(rid, tf.int32) * per_replica, per_replica * replicas


def fit_logs(logs: dict[str, Any]) -> dict[str, Any]:
    """train_step's scalar logs in a shape fit() can average over workers.

    Keras averages each log over replicas with `strategy.reduce(MEAN, v, axis=0)` under
    MultiWorkerMirroredStrategy, which rejects scalars: there each value travels as shape [1] and comes back as the
    cross-worker mean, a scalar, the same on every worker.
    """
    import tensorflow as tf

    if isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
        return {k: tf.reshape(v, [1]) for k, v in logs.items()}
    return logs


def check_batch(batch_size: int, topology: Topology) -> None:
    if batch_size % topology.num_replicas:
        raise UserError(f"the batch size {batch_size} (the global batch) must split evenly over the "
                        f"{topology.num_replicas} replicas ({topology.describe()}); choose a multiple of "
                        f"{topology.num_replicas}")


def synchronize_batch_norm(*models) -> None:
    """BatchNorm over the global batch (statistics all-reduced), so N replicas normalise as one would."""
    import keras

    for model in models:
        for layer in model._flatten_layers():
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.synchronized = True


# --- the handshake: same config, same data, every worker ready


def fingerprint(obj: Any) -> bytes:
    """16 bytes of SHA-256 over a JSON-able object (sorted keys)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).digest()[:16]


def _all_gather_rows(topology: Topology, row: np.ndarray) -> np.ndarray:
    """Every worker's int32 row, stacked in worker order (one row per worker)."""
    import tensorflow as tf

    strategy = topology.strategy
    values = row[None, :].astype(np.int32)

    @tf.function
    def gather():
        # The tensor is made inside the replica function: one captured from outside sits on no collective device.
        return strategy.run(lambda: tf.distribute.get_replica_context().all_gather(tf.constant(values), axis=0))

    out = strategy.experimental_local_results(gather())[0].numpy()
    return out[::topology.local_replicas]


def handshake(topology: Topology, ok: bool, config_hash: bytes, data_hash: bytes,
              numbers: list[int]) -> np.ndarray:
    """Compare every worker's config and data hashes; return each worker's `numbers` (rows in worker order).

    A worker that failed before the handshake (ok False) still enters it, so the others stop with a clear error
    instead of waiting for it. Raises UserError naming the workers that differ from the chief.
    """
    if topology.kind != "multi-worker":
        return np.asarray([numbers], np.int32)
    row = np.concatenate([[int(ok)], np.frombuffer(config_hash + data_hash, np.uint8), numbers]).astype(np.int32)
    wait = topology.timeouts.startup_s
    with _Watchdog(wait, f"worker {topology.worker_id}: the other workers did not reach the start handshake "
                   f"within {wait:.0f} s (ATELIER_DIST_STARTUP_TIMEOUT_S sets the wait)"):
        rows = _all_gather_rows(topology, row)
    failed = [w for w in range(len(rows)) if not rows[w, 0]]
    if failed:
        raise UserError(f"worker(s) {failed} could not start (see their logs); nothing was written. Fix it and "
                        "start every worker again")
    configs, datas = rows[:, 1:17], rows[:, 17:33]
    bad_config = [w for w in range(len(rows)) if not np.array_equal(configs[w], configs[0])]
    bad_data = [w for w in range(len(rows)) if not np.array_equal(datas[w], datas[0])]
    problems = []
    if bad_data:
        problems.append(f"worker(s) {bad_data} see different training data from the chief (worker 0): the file "
                        "list (class folders, names and sizes) must be identical on every machine")
    if bad_config:
        problems.append(f"worker(s) {bad_config} run a different training config from the chief (worker 0): "
                        "start every worker with the same `atelier train` options")
    if problems:
        raise UserError("; ".join(problems) + ". Nothing was written")
    return rows[:, 33:]


def broadcast_from_chief(topology: Topology, variables: list) -> None:
    """Give every worker the chief's values of `variables` (after the chief restored a checkpoint).

    An all-reduce SUM in which the other workers contribute zeros: x + 0 = x exactly, in any order.
    """
    import tensorflow as tf

    if topology.kind != "multi-worker":
        return
    strategy = topology.strategy
    chief = topology.is_chief

    groups: dict[str, list] = {}  # one all-reduce per dtype (a batched all-reduce needs one dtype)
    for var in variables:
        groups.setdefault(str(var.dtype), []).append(var)
    for group in groups.values():

        @tf.function
        def sync(group=group):
            def replica_fn():
                ctx = tf.distribute.get_replica_context()
                first = tf.equal(ctx.replica_id_in_sync_group, 0) if chief else tf.constant(False)
                values = [tf.where(first, t, tf.zeros_like(t)) for t in (tf.convert_to_tensor(v) for v in group)]
                return ctx.all_reduce(tf.distribute.ReduceOp.SUM, values)

            reduced = strategy.run(replica_fn)
            return [strategy.experimental_local_results(r)[0] for r in reduced]

        for var, value in zip(group, sync(), strict=True):
            var.assign(value)


def broadcast_json(topology: Topology, obj: Any) -> Any:
    """The chief's JSON-able `obj` on every worker (the others pass None)."""
    if topology.kind != "multi-worker":
        return obj
    data = json.dumps(obj).encode() if topology.is_chief else b""
    sizes = _all_gather_rows(topology, np.asarray([len(data)], np.int32))
    size = int(sizes[0, 0])
    padded = np.zeros(size, np.int32)
    padded[:len(data)] = np.frombuffer(data, np.uint8)
    rows = _all_gather_rows(topology, padded)
    return json.loads(bytes(rows[0].astype(np.uint8)).decode())


def collective_errors() -> tuple[type[BaseException], ...]:
    """The errors a lost peer raises in a collective (UnavailableError after the heartbeat, DeadlineExceeded...)."""
    import tensorflow as tf

    return (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.AbortedError,
            tf.errors.CancelledError, tf.errors.InternalError, tf.errors.FailedPreconditionError)


def lost_peer(topology: Topology, exc: BaseException, last_checkpoint: str) -> UserError:
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    log.error("collective failed on worker %d: %s", topology.worker_id, exc)
    return UserError(f"worker {topology.worker_id}: training stopped because a peer was lost "
                     f"({type(exc).__name__}: {first_line[:200]}). The last checkpoint is {last_checkpoint}; "
                     "restart every worker with --resume to continue from it")
