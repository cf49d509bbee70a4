"""tf.distribute strategies, mixed precision and the chief's right to write, by name.

Binaries pick a strategy with `--strategy` and build and train every model inside its
scope; Keras then splits each global batch across replicas and all-reduces the
gradients, and the θ accumulators (on-read SUM variables) add up across replicas:
θ is defined on each replica's local minibatch, as the paper's minibatch, and the
ratios of all replicas' minibatches are averaged (`neglection/tracking.py`).

- "default": one device (TF's default strategy).
- "mirrored": all local GPUs (or the CPU) of one machine, `MirroredStrategy`.
- "multi_worker": `MultiWorkerMirroredStrategy`; the cluster comes from the
  `TF_CONFIG` environment variable as TF documents it. tf.data shards the input by
  file across workers (its default AUTO policy), so give at least one shard per worker.
- "tpu": `TPUStrategy` on the TPU that `TPUClusterResolver` finds.

Under several workers only the chief writes artifacts (`is_chief`); the others write
to a scratch directory that is removed afterwards, as TF's multi-worker guide does.
"""

from __future__ import annotations

import json
import os

import keras
import tensorflow as tf

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
