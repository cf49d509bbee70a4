"""tf.distribute: θ on replicas, two CPU workers, mixed precision and the strategy flag.

The multi-worker and two-replica cases run in subprocesses: TF fixes its devices and
cluster at start-up, and a test must not change the process the other tests share.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from yt8m_sdnn import distribute, models
from yt8m_sdnn.data import synthetic

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")

# θ with two replicas of global batch 2B equals θ on one device with batch B over the
# same sequence of examples: the paper's minibatch is each replica's local batch.
TWO_REPLICAS = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from yt8m_sdnn import models
    from yt8m_sdnn.neglection.monitor import attach_neglection_monitor

    rng = np.random.default_rng(0)
    features = rng.normal(size=(256, 16)).astype(np.float32)
    labels = (rng.random((256, 6)) < 0.3).astype(np.float32)
    initial = models.build_logistic(16, 6).get_weights()

    def theta(strategy, batch_size):
      with strategy.scope():
        model = models.build_logistic(16, 6)
        model.set_weights(initial)
        wrapper, monitor = attach_neglection_monitor(model, tau=256 // batch_size)
        # A zero learning rate keeps the weights, so both runs see the same model.
        wrapper.compile(optimizer=keras.optimizers.SGD(0.0), loss="binary_crossentropy")
      dataset = tf.data.Dataset.from_tensor_slices((features, labels)).batch(batch_size)
      wrapper.fit(dataset, epochs=1, callbacks=[monitor], verbose=0)
      return monitor.history[-1]["theta"]

    devices = [device.name for device in tf.config.list_logical_devices("CPU")]
    mirrored = theta(tf.distribute.MirroredStrategy(devices), 64)
    single = theta(tf.distribute.OneDeviceStrategy(devices[0]), 32)
    print(json.dumps({"mirrored": [float(v) for v in mirrored],
                      "single": [float(v) for v in single]}))
""")


def test_theta_is_defined_on_each_replicas_minibatch():
  result = subprocess.run([sys.executable, "-c", TWO_REPLICAS], env=ENV, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  values = json.loads(result.stdout.strip().splitlines()[-1])
  np.testing.assert_allclose(values["mirrored"], values["single"], rtol=1e-5)


def _free_ports(count: int) -> list[int]:
  sockets = [socket.socket() for _ in range(count)]
  for sock in sockets:
    sock.bind(("127.0.0.1", 0))
  ports = [sock.getsockname()[1] for sock in sockets]
  for sock in sockets:
    sock.close()
  return ports


def _run_binary(name: str, *flags: str, env=None, **kwargs) -> subprocess.Popen:
  return subprocess.Popen([sys.executable, "-m", f"bin.{name}", *flags], cwd=ROOT,
                          env=env or ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, **kwargs)


def test_two_cpu_workers_train_and_evaluate_like_one_process(tmp_path):
  data = tmp_path / "data"
  synthetic.generate(synthetic.SynthConfig(output_dir=str(data), num_classes=12, num_train=512,
                                           num_validate=128, num_shards=4, num_hard_classes=2))
  ports = _free_ports(2)
  cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
  train_dir = tmp_path / "cnn"
  flags = [f"--train_data={data}/train", f"--eval_data={data}/validate",
           f"--train_dir={train_dir}", "--model=logistic", "--num_epochs=2",
           "--num_classes=12", "--batch_size=64", "--strategy=multi_worker", "--seed=0"]
  workers = [_run_binary("yt8m_train", *flags, env=dict(ENV, TF_CONFIG=json.dumps(
      {"cluster": cluster, "task": {"type": "worker", "index": index}}))) for index in range(2)]
  outputs = []
  try:
    for worker in workers:
      outputs.append(worker.communicate(timeout=240))
  finally:
    for worker in workers:
      worker.kill()
  for worker, (_, stderr) in zip(workers, outputs):
    assert worker.returncode == 0, stderr[-3000:]
    assert "--strategy=multi_worker: 2 replicas in sync, 2 workers" in stderr
  # Only the chief wrote; the other worker's scratch folder is gone.
  assert (train_dir / "model.keras").exists()
  assert not (train_dir / ".workers").exists() or not any((train_dir / ".workers").iterdir())
  # Synchronous training: both workers end with the same loss.
  # (The last epoch's progress line: "epoch 2/2, step N/N, loss X, ..., epoch done in ...")
  last_losses = [[line for line in stdout.splitlines() + stderr.splitlines()
                  if "epoch done in" in line][-1].split("loss ")[1].split(",")[0]
                 for stdout, stderr in outputs]
  assert last_losses[0] == last_losses[1]
  # The workers' metrics are those of one process evaluating the saved model.
  distributed = json.loads((train_dir / "eval_metrics.json").read_text())
  single = _run_binary("yt8m_eval", f"--eval_data={data}/validate", f"--train_dir={train_dir}",
                       "--batch_size=64")
  _, stderr = single.communicate(timeout=240)
  assert single.returncode == 0, stderr[-3000:]
  alone = json.loads((train_dir / "eval_metrics.json").read_text())
  assert distributed["num_videos"] == alone["num_videos"] == 128
  # Exact score ties across videos rank by accumulation order (metrics.py), which is the
  # workers' merge order there and file order here: one swapped tie near the end of the
  # pooled list moves GAP by ~1/(rank · labels), 2.4e-6 in one run of this test. A video
  # lost or counted twice would move it by more than 1e-3.
  for key in ("gap", "hit_at_one", "perr", "map"):
    assert alone[key] == pytest.approx(distributed[key], abs=1e-4)


def test_multi_worker_without_tf_config_is_a_clear_error(monkeypatch):
  monkeypatch.delenv("TF_CONFIG", raising=False)
  with pytest.raises(ValueError, match="needs the TF_CONFIG environment variable"):
    distribute.make_strategy("multi_worker")
  with pytest.raises(ValueError, match=r"Expected one of \['default', 'mirrored'"):
    distribute.make_strategy("parameter_server")


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_keeps_the_output_float32(policy):
  previous = keras.config.dtype_policy()
  try:
    distribute.set_precision(policy)
    model = models.build_cnn(1152, 5)
    assert model.get_layer("conv").compute_dtype == policy.split("_")[1]
    assert model.output.dtype == "float32"
    scores = model(np.random.default_rng(0).normal(size=(2, 1152)).astype(np.float32))
    assert scores.dtype == "float32" and np.isfinite(np.asarray(scores)).all()
    _, class_model = models.build_subclass_model("cnn", 1152, [0, 1, 2, 3, 4, 2], 5)
    assert class_model.output.dtype == "float32"
  finally:
    keras.config.set_dtype_policy(previous)
  with pytest.raises(ValueError, match="Expected one of"):
    distribute.set_precision("float8")


def test_two_cpu_workers_partition_like_one_process(tmp_path):
  data = tmp_path / "data"
  synthetic.generate(synthetic.SynthConfig(output_dir=str(data), num_classes=12, num_train=600,
                                           num_validate=16, num_shards=3, num_hard_classes=2))
  neglection = tmp_path / "neglection.json"
  neglection.write_text(json.dumps({"num_classes": 12, "selected": [0, 3, 7]}))
  common = [f"--train_data={data}/train", f"--neglection={neglection}", "--num_classes=12",
            "--batch_size=64"]
  ports = _free_ports(2)
  cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
  workers = [_run_binary("yt8m_partition", *common, f"--output={tmp_path}/plan2.npz",
                         "--strategy=multi_worker", env=dict(ENV, TF_CONFIG=json.dumps(
                             {"cluster": cluster, "task": {"type": "worker", "index": index}})))
             for index in range(2)]
  alone = _run_binary("yt8m_partition", *common, f"--output={tmp_path}/plan1.npz")
  try:
    outputs = [process.communicate(timeout=240) for process in workers + [alone]]
  finally:
    for process in workers + [alone]:
      process.kill()
  for process, (_, stderr) in zip(workers + [alone], outputs):
    assert process.returncode == 0, stderr[-3000:]
  assert "2 workers" in outputs[0][1]
  from yt8m_sdnn.subclass import plan as plan_lib
  distributed = plan_lib.load_plan(str(tmp_path / "plan2.npz"))
  single = plan_lib.load_plan(str(tmp_path / "plan1.npz"))
  np.testing.assert_array_equal(distributed.selected, single.selected)
  np.testing.assert_array_equal(distributed.subclass_counts, single.subclass_counts)
  np.testing.assert_allclose(distributed.mean, single.mean, rtol=1e-12)
  np.testing.assert_allclose(distributed.thresholds, single.thresholds, rtol=1e-9)
  np.testing.assert_array_equal(distributed.anchors, single.anchors)


# θ under two worker processes equals θ of one process over the same minibatches:
# with a zero learning rate the weights stay the initial ones, each worker's replica
# reads one shard in batches of 32, and one process reads both shards in turn.
THETA_RUN = textwrap.dedent("""
    import json, os, sys
    import keras
    import tensorflow as tf
    from yt8m_sdnn import distribute, models
    from yt8m_sdnn.data import reader
    from yt8m_sdnn.neglection.monitor import attach_neglection_monitor

    data, output, strategy_name = sys.argv[1], sys.argv[2], sys.argv[3]
    strategy = distribute.make_strategy(strategy_name)
    workers = distribute.num_workers(strategy)
    with strategy.scope():
      keras.utils.set_random_seed(0)
      model = models.build_logistic(1152, 12)
      wrapper, monitor = attach_neglection_monitor(model, tau=8 // workers, top_k_classes=3)
      wrapper.compile(optimizer=keras.optimizers.SGD(0.0), loss="binary_crossentropy")
    config = reader.ReaderConfig(data, num_classes=12, batch_size=32 * workers,
                                 deterministic=True, cycle_length=1)
    wrapper.fit(reader.build_dataset(config), epochs=1, steps_per_epoch=8 // workers,
                callbacks=[monitor], verbose=0)
    monitor.flush()
    theta = [float(value) for value in monitor.history[-1]["theta"]]
    if distribute.is_chief(strategy):
      with open(output, "w") as stream:
        json.dump({"theta": theta, "selected": [int(c) for c in monitor.select()]}, stream)
""")


def test_two_cpu_workers_measure_the_same_theta(tmp_path):
  data = tmp_path / "data"
  synthetic.generate(synthetic.SynthConfig(output_dir=str(data), num_classes=12, num_train=256,
                                           num_validate=16, num_shards=2, num_hard_classes=2))
  script = tmp_path / "theta.py"
  script.write_text(THETA_RUN)
  ports = _free_ports(2)
  cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
  processes = [subprocess.Popen(
      [sys.executable, str(script), f"{data}/train", str(tmp_path / "two.json"), "multi_worker"],
      cwd=ROOT, env=dict(ENV, TF_CONFIG=json.dumps(
          {"cluster": cluster, "task": {"type": "worker", "index": index}})),
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for index in range(2)]
  processes.append(subprocess.Popen(
      [sys.executable, str(script), f"{data}/train", str(tmp_path / "one.json"), "default"],
      cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
  try:
    outputs = [process.communicate(timeout=240) for process in processes]
  finally:
    for process in processes:
      process.kill()
  for process, (_, stderr) in zip(processes, outputs):
    assert process.returncode == 0, stderr[-3000:]
  two = json.loads((tmp_path / "two.json").read_text())
  one = json.loads((tmp_path / "one.json").read_text())
  assert two["selected"] == one["selected"]
  np.testing.assert_allclose(two["theta"], one["theta"], rtol=1e-5)
