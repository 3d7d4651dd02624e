"""tf.distribute training with real processes on 127.0.0.1: 2 workers (MultiWorkerMirroredStrategy), 2 logical CPU
devices (MirroredStrategy), SIGKILL of a worker and --resume, and every bad start (TF_CONFIG, unreachable worker,
other data, other config) ending in a clear error with no run folder left behind.

Equivalence tolerance: N replicas compute the single-device step up to float summation order (gradients and
BatchNorm statistics are sums split over replicas), so weights agree to 1e-5 absolute after a few steps.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edge.errors import UserError
from edge.procedural_garments import write_dataset
from trainer import checkpoints
from trainer.cluster_spec import parse_tf_config
from trainer.local_cluster import start_workers, tf_config, wait_all

ATOL = 1e-5
SEED = 3
# Bounded waits for the loaded 2-core test machine: a dead peer is noticed after 10 s of silence.
FAST_FAILURE = {"ATELIER_DIST_HEARTBEAT_TIMEOUT_S": "10", "ATELIER_DIST_STARTUP_TIMEOUT_S": "240"}


def _args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["--data", str(data), "--out", str(out), "--preset", "tiny", "--seed", str(SEED), "--epochs", "2",
            "--steps-per-checkpoint", "2", "--no-progress", *extra]


def _ckpt(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def _assert_same_training(reference: Path, other: Path) -> None:
    a, b = _ckpt(reference), _ckpt(other)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(b[key], a[key], rtol=0, atol=ATOL, err_msg=key)


def _no_traceback(text: str) -> None:
    assert "Traceback" not in text, text[-3000:]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, garment_dir: Path) -> Path:
    """The single-process run (one device, same global batch 16): its final checkpoint, step 8."""
    from trainer.config import preset
    from trainer.train import train

    out = tmp_path_factory.mktemp("dist") / "single"
    train(preset("tiny", epochs=2, data_dir=str(garment_dir), seed=SEED, steps_per_checkpoint=2), out,
          progress=False)
    return out / "checkpoints" / "ckpt-000000008.npz"


@pytest.mark.parametrize("text, problem", [
    ("not json", "it is not JSON"),
    ('["worker"]', "must be a JSON object"),
    ('{"cluster": {"worker": ["127.0.0.1:2222"]}}', "'task' is missing"),
    ('{"task": {"type": "worker", "index": 0}}', "'cluster' is missing"),
    ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}', "out of range"),
    ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": "1"}}', "must be an integer"),
    ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": true}}', "must be an integer"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}', "task.type must be one of"),
    ('{"cluster": {"worker": "a:1"}, "task": {"type": "worker", "index": 0}}', "non-empty list"),
    ('{"cluster": {"worker": ["a"]}, "task": {"type": "worker", "index": 0}}', "'host:port'"),
    ('{"cluster": {"worker": ["a:99999"]}, "task": {"type": "worker", "index": 0}}', "port 1..65535"),
    ('{"cluster": {"worker": ["a:1", "a:1"]}, "task": {"type": "worker", "index": 0}}', "appear twice"),
    ('{"cluster": {"worker": ["a:1"], "ps": ["b:2"]}, "task": {"type": "worker", "index": 0}}', "no parameter server"),
])
def test_malformed_tf_config_names_the_problem(text: str, problem: str) -> None:
    with pytest.raises(UserError, match="TF_CONFIG is not a usable cluster spec") as err:
        parse_tf_config(text)
    assert problem in str(err.value)


def test_tf_config_roles_follow_tf_distribute_order() -> None:
    assert parse_tf_config("") is None and parse_tf_config(None) is None
    spec = {"cluster": {"chief": ["c:1"], "worker": ["w:1", "w:2"]}, "task": {"type": "worker", "index": 1}}
    cluster = parse_tf_config(json.dumps(spec))
    assert (cluster.num_workers, cluster.worker_id, cluster.is_chief, cluster.address) == (3, 2, False, "w:2")
    chief = parse_tf_config(tf_config(["127.0.0.1:1", "127.0.0.1:2"], 0))
    assert chief.is_chief and chief.worker_id == 0 and chief.num_workers == 2


def test_bad_tf_config_on_the_command_line_is_a_clear_error(tmp_path: Path, garment_dir: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "atelier", "train", *_args(garment_dir, tmp_path / "run")],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TF_CONFIG": '{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {}}'})
    assert done.returncode == 2 and "TF_CONFIG is not a usable cluster spec" in done.stderr
    _no_traceback(done.stderr)
    assert not (tmp_path / "run").exists()


def test_two_logical_devices_train_what_one_device_trains(reference: Path, garment_dir: Path,
                                                          tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "atelier", "train", *_args(garment_dir, tmp_path / "mirrored"),
                           "--cpu-devices", "2"], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert done.returncode == 0, done.stderr[-3000:]
    _assert_same_training(reference, tmp_path / "mirrored" / "checkpoints" / "ckpt-000000008.npz")


def test_two_workers_match_one_and_resume_after_a_worker_is_killed(reference: Path, garment_dir: Path,
                                                                   tmp_path: Path) -> None:
    run = tmp_path / "cluster"
    args = [_args(garment_dir, run), _args(garment_dir, tmp_path / "unused-on-worker-1")]
    workers = start_workers(args, tmp_path / "logs-1", env=FAST_FAILURE)
    # Kill worker 1 (not the chief) with SIGKILL once the chief has written its first step checkpoint.
    deadline = time.monotonic() + 400
    while not checkpoints.list_checkpoints(run / "checkpoints"):
        assert workers[0].process.poll() is None, workers[0].output()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint in time"
        time.sleep(0.2)
    workers[1].process.send_signal(signal.SIGKILL)
    codes = wait_all(workers, timeout_s=240)
    chief_log = workers[0].output()
    assert codes == [2, -9], chief_log[-3000:]
    assert "a peer was lost" in chief_log and "restart every worker with --resume" in chief_log
    _no_traceback(chief_log)
    kept = checkpoints.list_checkpoints(run / "checkpoints")
    assert kept and kept[-1].name != "ckpt-000000008.npz"  # stopped mid-run
    assert not (tmp_path / "unused-on-worker-1").exists()  # the other workers never write the run folder

    # Restart every worker with --resume: the run goes on from the chief's last checkpoint to the end.
    workers = start_workers([[*a, "--resume"] for a in args], tmp_path / "logs-2", env=FAST_FAILURE)
    codes = wait_all(workers, timeout_s=500)
    assert codes == [0, 0], workers[0].output()[-3000:] + workers[1].output()[-3000:]
    assert "resuming from" in workers[0].output()
    _assert_same_training(reference, run / "checkpoints" / "ckpt-000000008.npz")
    report = json.loads((run / "data_report.json").read_text())
    assert [w["n_used"] for w in report["workers"]] == [40, 32] and report["n_used"] == 72  # each read its shard


def test_workers_with_other_data_or_config_stop_before_writing(garment_dir: Path, tmp_path: Path) -> None:
    other = write_dataset(tmp_path / "other", n_per_class=20, size_px=48, seed=8)
    run = tmp_path / "run"
    # Three workers (a global batch of 18): worker 1 has other photos, worker 2 another seed.
    args = [_args(garment_dir, run, "--batch-size", "18"), _args(other, run, "--batch-size", "18"),
            _args(garment_dir, run, "--batch-size", "18", "--seed", "4")]
    workers = start_workers(args, tmp_path / "logs", env=FAST_FAILURE)
    codes = wait_all(workers, timeout_s=400)
    chief_log = workers[0].output()
    assert codes == [2, 2, 2], chief_log[-3000:]
    assert "worker(s) [1] see different training data" in chief_log
    assert "worker(s) [2] run a different training config" in chief_log
    _no_traceback(chief_log)
    assert not run.exists()  # nothing a --resume could trust


def test_an_unreachable_worker_is_a_clear_error_after_a_bounded_wait(garment_dir: Path, tmp_path: Path) -> None:
    from trainer.local_cluster import free_ports

    addresses = [f"127.0.0.1:{p}" for p in free_ports(2)]
    # Only worker 0 is started: worker 1's address never answers.
    workers = start_workers([_args(garment_dir, tmp_path / "run")], tmp_path / "logs", addresses=addresses,
                            env={"ATELIER_DIST_STARTUP_TIMEOUT_S": "20"})
    codes = wait_all(workers, timeout_s=300)
    log = workers[0].output()
    assert codes == [-9], log[-3000:]  # ended by its watchdog: TensorFlow blocks signals while joining
    assert "could not join the cluster within 20 s" in log and addresses[1] in log
    assert not (tmp_path / "run").exists()
