"""Subclass partition of a data set held in memory: Algorithm 1 by a sort, or k-means.

For small data sets (the paper's CIFAR and SVHN experiments, tests, notebooks) the
features fit in memory, and two things become possible that the streaming pass of
`partition.py` does not offer: the per-example subclass assignment, and k-means with
any number of subclasses, as the paper uses for its multiclass experiments.

Both methods return a `SubclassPlan`, so the online transform and the subclass model
take them alike:
- "algorithm1": Algorithm 1 by sorting each class's distances to m, the split kept as
  the threshold between the ⌊n_i/2⌋-th and next distance (so the online transform
  reproduces it; an exact tie at the split goes to subclass 2, an anchor tie to the
  first observation). Same split, anchors and counts as the streaming partition of
  the same data; thresholds equal up to the rounding of m.
- "kmeans": scikit-learn's `KMeans` on each selected class. Subclasses are ordered
  by the distance of their centroid to m, farthest first (as in Algorithm 1, subclass 1
  is the far one). Observations go to their nearest centroid (`augment.assign_subclasses`,
  which the online transform uses too). Anchors of eq. (12): the farther ⌊H/2⌋
  subclasses take their member farthest from m, the nearer ones their member nearest
  to m; for H = 2 this is Algorithm 1's pair (farthest of subclass 1, nearest of
  subclass 2). The paper doubles the classes by augmentation before k-means; here
  k-means sees the original observations and the transform augments afterwards, as
  for Algorithm 1.

`subclass_training_arrays` is the one call for numpy arrays and a Keras model of one's
own: the selected classes split (Algorithm 1 in numpy, or k-means), the eq. (12)
copies appended, the subclass multi-hot labels, and the `SubclassLayout` that
`SubclassCrossEntropy` and `SubclassMerge` take. With Algorithm 1 it needs neither
TensorFlow nor scikit-learn (it runs `arrays.py`), so it works on every Keras backend;
TensorFlow is imported by `partition_in_memory` only, when called.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple, Sequence

import numpy as np

from yt8m_sdnn.subclass import arrays, statistics
from yt8m_sdnn.subclass import plan as plan_lib
from yt8m_sdnn.subclass.layout import SubclassLayout

METHODS = plan_lib.METHODS
# The YT8M features (`data.formats.VISUAL_AUDIO`), written out: `data.formats` imports
# TensorFlow, and this module imports it only inside `partition_in_memory`.
_VISUAL_AUDIO = ("mean_rgb", "mean_audio")


@dataclasses.dataclass(frozen=True, eq=False)
class InMemoryPartition:
  """A plan and the subclass of every example.

  Attributes:
    plan: the subclass plan (same contents as the streaming partition's).
    subclasses: (n, k) int64, the 0-based subclass of example n in selected class s,
      -1 where example n is not in that class.
  """
  plan: plan_lib.SubclassPlan
  subclasses: np.ndarray


def _kmeans_class(members: np.ndarray, mean: np.ndarray, num_subclasses: int, seed: int,
                  class_id: int) -> np.ndarray:
  """k-means centroids of one class, farthest from m first."""
  # scikit-learn is needed by this method only; Algorithm 1 runs without it.
  from sklearn.cluster import KMeans  # pylint: disable=import-outside-toplevel

  if members.shape[0] < num_subclasses:
    raise ValueError(f"class {class_id} has {members.shape[0]} observations, fewer than "
                     f"num_subclasses={num_subclasses}")
  # float32 members stay float32 (scikit-learn fits in the input's dtype): a float64
  # copy of a large image class would double its memory for no useful precision.
  kmeans = KMeans(n_clusters=num_subclasses, n_init=10, random_state=seed).fit(members)
  centroids = kmeans.cluster_centers_.astype(np.float64)
  order = np.argsort(-np.linalg.norm(centroids - mean, axis=1), kind="stable")
  return centroids[order]


def _kmeans_anchors(members: np.ndarray, distances: np.ndarray, subclasses: np.ndarray,
                    num_subclasses: int, class_id: int) -> np.ndarray:
  """(H, f) anchors: far subclasses' farthest member, near subclasses' nearest one."""
  anchors = np.zeros((num_subclasses, members.shape[1]), np.float32)
  for subclass in range(num_subclasses):
    rows = np.flatnonzero(subclasses == subclass)
    if not rows.size:
      raise ValueError(f"class {class_id}: k-means subclass {subclass + 1} of "
                       f"{num_subclasses} is empty (duplicate observations?)")
    if subclass < num_subclasses // 2:
      anchors[subclass] = members[rows[np.argmax(distances[rows])]]
    else:
      anchors[subclass] = members[rows[np.argmin(distances[rows])]]
  return anchors


def partition_in_memory(features: np.ndarray, labels: np.ndarray, selected: Sequence[int],
                        method: str = plan_lib.ALGORITHM1, num_subclasses: int = 2,
                        seed: int = 0, feature_names: Sequence[str] = _VISUAL_AUDIO,
                        extrapolation: float = plan_lib.DEFAULT_EXTRAPOLATION
                        ) -> InMemoryPartition:
  """Splits each selected class of an in-memory data set into subclasses.

  Args:
    features: (n, f) features, as the reader yields them (L2-normalized modalities).
    labels: (n, num_classes) multi-hot labels.
    selected: the classes to split, most neglected first.
    method: "algorithm1" (Algorithm 1, two subclasses) or "kmeans".
    num_subclasses: H; must be 2 for "algorithm1".
    seed: k-means initialization seed.
    feature_names: the features in `features`, recorded in the plan.
    extrapolation: λ of eq. (12), recorded in the plan.

  Returns:
    The plan and each example's subclasses.

  Raises:
    ValueError: an unknown method, num_subclasses other than 2 for Algorithm 1,
      mismatched shapes, a class id out of range, or (k-means) a class with fewer
      observations than subclasses.

  Example:
    result = partition_in_memory(x_train, y_train, selected=[3, 5], method="kmeans")
    dataset = dataset.map(augment.make_subclass_transform(result.plan))
  """
  # TensorFlow computes the distances and the assignment as the streaming passes do
  # (same ops, same rounding); imported here so the module imports without it.
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from yt8m_sdnn.subclass import augment, passes  # pylint: disable=import-outside-toplevel
  if method not in METHODS:
    raise ValueError(f"Expected method to be one of {list(METHODS)}. Received: "
                     f"method={method!r}")
  if method == plan_lib.ALGORITHM1 and num_subclasses != 2:
    raise ValueError("Algorithm 1 splits a class in two; num_subclasses must be 2 (use "
                     f"method='kmeans' for more). Received: num_subclasses={num_subclasses}")
  features = np.asarray(features, np.float32)
  labels = np.asarray(labels, np.float32)
  if features.ndim != 2 or labels.ndim != 2 or features.shape[0] != labels.shape[0]:
    raise ValueError(f"expected features (n, f) and labels (n, num_classes); got "
                     f"{features.shape} and {labels.shape}")
  num_classes = labels.shape[1]
  selected = statistics.check_selected(selected, num_classes)
  if features.shape[0] == 0:
    raise ValueError("no observation: the mean m is undefined")
  mean = features.mean(axis=0, dtype=np.float64)  # accumulates in float64, copies nothing
  with tf.device(passes.PASS_DEVICE):
    distances = passes.distances_to_mean(tf.constant(features), tf.constant(mean)).numpy()
  k, f = selected.size, features.shape[1]
  anchors = np.zeros((k, num_subclasses, f), np.float32)
  if method == plan_lib.ALGORITHM1:
    thresholds = np.full(k, np.inf)
    for index, class_id in enumerate(selected):
      rows = np.flatnonzero(labels[:, class_id] > 0.5)
      if not rows.size:
        continue
      thresholds[index], farthest, nearest = arrays.algorithm1_class(distances[rows])
      anchors[index] = features[rows[[farthest, nearest]]]
    method_arrays = {"thresholds": thresholds}
  else:
    method_arrays = {"centroids": np.stack([
        _kmeans_class(features[labels[:, c] > 0.5], mean, num_subclasses, seed, int(c))
        for c in selected]) if k else np.zeros((0, num_subclasses, f))}
  # Counts and k-means anchors need the assignment; a placeholder plan computes it.
  draft = plan_lib.SubclassPlan(
      num_classes=num_classes, feature_size=f, feature_names=tuple(feature_names),
      selected=selected, mean=mean, anchors=anchors,
      subclass_counts=np.zeros((k, num_subclasses), np.int64), method=method,
      extrapolation=extrapolation, **method_arrays)
  with tf.device(passes.PASS_DEVICE):
    subclasses = augment.assign_subclasses(tf.constant(features), tf.constant(labels),
                                           draft).numpy()
  if method == plan_lib.KMEANS:
    for index, class_id in enumerate(selected):
      rows = np.flatnonzero(subclasses[:, index] >= 0)
      anchors[index] = _kmeans_anchors(features[rows], distances[rows],
                                       subclasses[rows, index], num_subclasses, int(class_id))
  counts = np.stack([(subclasses == j).sum(axis=0) for j in range(num_subclasses)], axis=-1)
  plan = dataclasses.replace(draft, anchors=anchors, subclass_counts=counts)
  return InMemoryPartition(plan=plan, subclasses=subclasses)


class SubclassTrainingArrays(NamedTuple):
  """What `subclass_training_arrays` returns; unpacks as (features, labels, layout).

  Attributes:
    features: (n + copies, f) float32, the originals then the eq. (12) copies.
    labels: (n + copies, layout.num_units) float32 subclass multi-hot labels, one
      column per output unit of the subclass network.
    layout: the units: `layout.unit_to_class` for `SubclassCrossEntropy` and
      `SubclassMerge`, `layout.num_units` the width of the subclass output layer,
      `layout.num_classes` that of the merged class scores.
  """
  features: np.ndarray
  labels: np.ndarray
  layout: SubclassLayout


def subclass_training_arrays(features: np.ndarray, labels: np.ndarray,
                             selected: Sequence[int], augment: bool = True,
                             extrapolation: float = plan_lib.DEFAULT_EXTRAPOLATION,
                             method: str = plan_lib.ALGORITHM1, num_subclasses: int = 2,
                             seed: int = 0) -> SubclassTrainingArrays:
  """The subclass training set of an in-memory multilabel data set, in one call.

  Splits each selected class into subclasses (Algorithm 1, or k-means), labels every
  example in the subclass it falls in (a split class's own column keeps the members of
  its first subclass, the other subclasses get columns num_classes, num_classes + 1,
  ... in the layout's order), and with `augment` appends one eq. (12) copy
  x' = λ(x − anchor) + x of every example of a selected class, labelled as its
  original (an example in several selected classes extrapolates from the anchor of
  the most neglected one, first in `selected`). The same rules as the tf.data
  transform (`augment.make_subclass_transform`, tested equal); copies come after all
  originals, so fit with `shuffle=True` (Keras' default for arrays).

  Algorithm 1 runs in numpy (`arrays.partition_arrays`, `arrays.subclass_arrays`), so
  this works on every Keras backend without TensorFlow; "kmeans" goes through
  `partition_in_memory` (TensorFlow and scikit-learn). For the plan itself (to save
  it, or to transform a tf.data stream) call those directly.

  Args:
    features: (n, f) features as the model sees them.
    labels: (n, num_classes) multi-hot (or one-hot) class labels.
    selected: the classes to split, most neglected first, e.g. `monitor.select()`.
    augment: append the eq. (12) copies (the paper's recipe); False relabels only.
    extrapolation: λ of eq. (12) (the paper's 0.5).
    method: "algorithm1" (two subclasses, the paper's video recipe) or "kmeans".
    num_subclasses: H; 2 for Algorithm 1.
    seed: k-means initialization seed.

  Returns:
    `SubclassTrainingArrays(features, labels, layout)`.

  Raises:
    ValueError: empty or mismatched arrays, a selected class out of range or repeated,
      an unknown method, or num_subclasses other than 2 for Algorithm 1.

  Example:
    x_sub, y_sub, layout = subclass_training_arrays(x, y, monitor.select())
    logits = keras.layers.Dense(layout.num_units)(hidden)
    probabilities = SubclassMerge(layout.unit_to_class, layout.num_classes)(
        keras.layers.Activation("sigmoid")(logits))
    train_model.compile("adam", SubclassCrossEntropy(layout.unit_to_class,
                                                     from_logits=True))
  """
  if method not in METHODS:
    raise ValueError(f"Expected method to be one of {list(METHODS)}. Received: "
                     f"method={method!r}")
  if method == plan_lib.ALGORITHM1:
    if num_subclasses != 2:
      raise ValueError("Algorithm 1 splits a class in two; num_subclasses must be 2 (use "
                       f"method='kmeans' for more). Received: num_subclasses={num_subclasses}")
    plan = arrays.partition_arrays(features, labels, selected, feature_names=_VISUAL_AUDIO,
                                   extrapolation=extrapolation)
  else:
    plan = partition_in_memory(features, labels, selected, method=method,
                               num_subclasses=num_subclasses, seed=seed,
                               extrapolation=extrapolation).plan
  new_features, new_labels = arrays.subclass_arrays(features, labels, plan, split=True,
                                                    augment=bool(augment))
  return SubclassTrainingArrays(new_features, new_labels, plan.layout)
