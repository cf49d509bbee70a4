"""tf.distribute strategies, mixed precision and the chief's right to write, by name.

Binaries pick a strategy with `--strategy` and build and train every model inside its
scope; Keras then splits each global batch across replicas and all-reduces the
gradients, and the θ accumulators (on-read SUM variables) add up across replicas:
θ is defined on each replica's local minibatch, as the paper's minibatch, and the
ratios of all replicas' minibatches are averaged (`neglection/tracking.py`).

- "default": one device (TF's default strategy).
- "mirrored": all local GPUs (or the CPU) of one machine, `MirroredStrategy`.
- "multi_worker": `MultiWorkerMirroredStrategy`; the cluster comes from the
  `TF_CONFIG` environment variable as TF documents it. The reader asks tf.data to
  shard the input by file across workers, so give at least one shard per worker.
- "tpu": `TPUStrategy` on the TPU that `TPUClusterResolver` finds.

Under several workers only the chief writes artifacts (`is_chief`); the others write
to a scratch directory that is removed afterwards, as TF's multi-worker guide does.
Host-side passes (the partition statistics, evaluation) read each worker's share of
the shards (`worker_files`) and exchange their mergeable partial results with the
strategy's own all-gather (`merge_across_workers`, `gather_from_workers`), so every
worker ends with the whole.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import json
import os
from typing import Callable, Sequence, TypeVar

import keras
import numpy as np
import tensorflow as tf

Statistics = TypeVar("Statistics")
Result = TypeVar("Result")

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


class _MultiWorkerStrategy(tf.distribute.MultiWorkerMirroredStrategy):
  """`MultiWorkerMirroredStrategy` whose `reduce` also takes a nest of per-replica values.

  Keras 3.15's `fit` fails under the plain strategy (keras-team/keras#20585): it
  reduces the first (features, labels) batch as one nest to build the model, where the
  collective strategy's `reduce` takes a single per-replica value, and it reduces the
  scalar loss along an axis 0 it does not have. This reduces leaf by leaf, scalars
  across replicas only.
  """

  def reduce(self, reduce_op, value, axis=None):
    parent = super()

    def reduce_leaf(leaf):
      # Keras also asks for a MEAN along axis 0 of scalar logs (the loss); a scalar
      # has no axis 0, and the mean across replicas is what it means.
      local = self.experimental_local_results(leaf)
      leaf_axis = None if axis is not None and local and local[0].shape.rank == 0 else axis
      return parent.reduce(reduce_op, leaf, leaf_axis)

    return tf.nest.map_structure(reduce_leaf, value)


def make_strategy(name: str) -> tf.distribute.Strategy:
  """The strategy called `name` (see `STRATEGIES`).

  Raises:
    ValueError: an unknown name, or "multi_worker" without a usable TF_CONFIG.
  """
  if name == "default":
    return tf.distribute.get_strategy()
  if name == "mirrored":
    return tf.distribute.MirroredStrategy()
  if name == "multi_worker":
    config = os.environ.get("TF_CONFIG")
    try:
      cluster = json.loads(config or "")["cluster"]
    except (ValueError, KeyError, TypeError):
      raise ValueError("--strategy=multi_worker needs the TF_CONFIG environment variable "
                       "with a 'cluster' and a 'task' (see TF's multi-worker guide). "
                       f"Received: TF_CONFIG={config!r}") from None
    del cluster
    return _MultiWorkerStrategy()
  if name == "tpu":
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)
  raise ValueError(f"Expected one of {list(STRATEGIES)}. Received: strategy={name!r}")


def set_precision(policy: str) -> None:
  """Sets Keras' global dtype policy: "float32" or mixed float16 / bfloat16.

  Under a mixed policy the layers compute in 16 bits with float32 weights; the output
  layers of `models.py` stay float32, so losses, θ and scores are float32, and Keras
  wraps the optimizer in a loss scale for float16.

  Raises:
    ValueError: an unknown policy.
  """
  if policy not in PRECISIONS:
    raise ValueError(f"Expected one of {list(PRECISIONS)}. Received: mixed_precision={policy!r}")
  keras.config.set_dtype_policy(policy)


def is_chief(strategy: tf.distribute.Strategy | None = None) -> bool:
  """Whether this process writes artifacts: always, except non-chief multi-worker tasks."""
  strategy = strategy or tf.distribute.get_strategy()
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
    return True
  task_type, task_id = resolver.task_type, resolver.task_id
  return task_type in (None, "chief") or (
      task_type == "worker" and task_id == 0 and "chief" not in resolver.cluster_spec().jobs)


def writable_dir(directory: str, strategy: tf.distribute.Strategy | None = None) -> str:
  """`directory` for the chief; a per-task scratch folder inside it for other workers."""
  if is_chief(strategy):
    return directory
  resolver = (strategy or tf.distribute.get_strategy()).cluster_resolver
  return os.path.join(directory, ".workers", f"{resolver.task_type}-{resolver.task_id}")


def _is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
  return (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
          and getattr(strategy, "cluster_resolver", None) is not None)


def num_workers(strategy: tf.distribute.Strategy | None = None) -> int:
  """Worker processes in the cluster (1 without a multi-worker strategy)."""
  strategy = strategy or tf.distribute.get_strategy()
  if not _is_multi_worker(strategy):
    return 1
  jobs = strategy.cluster_resolver.cluster_spec().as_dict()
  return sum(len(jobs.get(job, [])) for job in ("chief", "worker"))


def worker_index(strategy: tf.distribute.Strategy | None = None) -> int:
  """This process's rank among the workers: the chief first, then the workers in order."""
  strategy = strategy or tf.distribute.get_strategy()
  if not _is_multi_worker(strategy):
    return 0
  resolver = strategy.cluster_resolver
  has_chief = "chief" in resolver.cluster_spec().jobs
  if resolver.task_type == "chief":
    return 0
  return int(resolver.task_id) + (1 if has_chief else 0)


def worker_files(files: Sequence[str], strategy: tf.distribute.Strategy | None = None
                 ) -> list[str]:
  """This worker's share of `files`: every n-th file, n workers (all of them alone).

  Raises:
    ValueError: fewer files than workers (a worker would have nothing to read).
  """
  workers = num_workers(strategy)
  if len(files) < workers:
    raise ValueError(f"{workers} workers need at least {workers} shards to share; "
                     f"received {len(files)}")
  return list(files[worker_index(strategy)::workers])


_COLLECTIVE_DTYPES = tuple(np.dtype(t) for t in
                           (np.float16, np.float32, np.float64, np.int32, np.int64))


def _gather(strategy: tf.distribute.Strategy, rows: np.ndarray) -> np.ndarray:
  """Concatenates along axis 0 what every replica contributes; replica order is global."""
  value = strategy.run(lambda: tf.constant(rows))
  return strategy.gather(value, axis=0).numpy()


def gather_from_workers(array, strategy: tf.distribute.Strategy | None = None
                        ) -> list[np.ndarray]:
  """Every worker's `array` (any length along axis 0), in worker order, on every worker."""
  strategy = strategy or tf.distribute.get_strategy()
  array = np.asarray(array)
  workers = num_workers(strategy)
  if workers == 1:
    return [array]
  # Replicas are numbered worker by worker; a worker's replicas hold the same array.
  stride = strategy.num_replicas_in_sync // workers
  scalar = array.ndim == 0
  rows = array.reshape(1) if scalar else array
  lengths = _gather(strategy, np.array([rows.shape[0]], np.int64))[::stride]
  longest = int(lengths.max())
  if longest == 0:
    return [rows[:0]] * workers
  # Collectives carry float16/32/64 and int32/64 only; smaller integers and booleans
  # travel as int32 and come back in their own dtype.
  carried = rows.dtype if rows.dtype in _COLLECTIVE_DTYPES else np.dtype(np.int32)
  padded = np.zeros((longest,) + rows.shape[1:], carried)
  padded[:rows.shape[0]] = rows
  gathered = _gather(strategy, padded).reshape((-1, longest) + rows.shape[1:])[::stride]
  parts = [part[:length].astype(rows.dtype, copy=False) for part, length in zip(gathered, lengths)]
  return [part.reshape(()) for part in parts] if scalar else parts


def merge_across_workers(statistics: Statistics,
                         strategy: tf.distribute.Strategy | None = None) -> Statistics:
  """Merges a dataclass of partial statistics (with `merge`) over all workers.

  Every field is gathered from every worker and the partial objects are merged in
  worker order, so each worker gets the same statistics of all the shards. Alone (no
  multi-worker strategy) it returns `statistics` unchanged.
  """
  strategy = strategy or tf.distribute.get_strategy()
  workers = num_workers(strategy)
  if workers == 1:
    return statistics
  parts = [{} for _ in range(workers)]
  for field in dataclasses.fields(statistics):
    value = getattr(statistics, field.name)
    gathered = gather_from_workers(value, strategy)
    for part, worker_value in zip(parts, gathered):
      part[field.name] = worker_value if isinstance(value, np.ndarray) else type(value)(
          worker_value.item())
  partials = [type(statistics)(**part) for part in parts]
  return functools.reduce(lambda left, right: left.merge(right), partials)


def run_outside_strategy(function: Callable[[], Result]) -> Result:
  """Runs `function` where no strategy scope is active, and returns its result.

  Host-side passes keep their running sums in plain `tf.Variable`s updated in place;
  inside a strategy's scope those would become mirrored variables, which support no
  scatter updates. Strategy scopes are per thread, so a fresh thread has none.
  """
  if not tf.distribute.has_strategy():
    return function()
  with concurrent.futures.ThreadPoolExecutor(max_workers=1) as executor:
    return executor.submit(function).result()
