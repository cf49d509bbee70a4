"""The builder `training.train` calls to train on a subclass plan: model, loss, transform.

Shared by `yt8m-train --subclass_plan` and the pipeline's SCNN rows, so both train
the subclass network the same way: logits model + subclass cross-entropy (eq. 11) on
the transformed stream, saving the class-probability model.
"""

from __future__ import annotations

from typing import Callable

import tensorflow as tf

from yt8m_sdnn import models, training
from yt8m_sdnn.losses import registry as loss_registry
from yt8m_sdnn.subclass import augment
from yt8m_sdnn.subclass.merge import DEFAULT_MERGE
from yt8m_sdnn.subclass.plan import SubclassPlan


def subclass_builder(plan: SubclassPlan, model_name: str, feature_size: int,
                                batch_size: int, weight_decay: float = 5e-4,
                                split: bool = True, augment_copies: bool = True,
                                loss_config: loss_registry.LossConfig = loss_registry.LossConfig(),
                                class_counts=None, model_options=None,
                                merge: str = DEFAULT_MERGE) -> Callable[[], training.Trainable]:
  """The `build` argument of `training.train` that trains on `plan`.

  `train` calls it after seeding the run, so the subclass model's initial weights
  follow the seed.

  Args:
    plan: the subclass plan (`plan.load_plan`).
    model_name: a name of `models.MODEL_REGISTRY`.
    feature_size: the input width (checked against the plan).
    batch_size: the training batch size, restored after the copies are added.
    weight_decay: L2 coefficient on every kernel.
    split: train subclasses (False: class labels with the augmented copies only).
    augment_copies: add eq. (12)'s copies (False: the split alone).
    loss_config: the loss; with `split` its focusing or class weights go into the
      subclass cross-entropy (`loss_registry.make_loss`).
    class_counts: training positives per class, for "class_balanced".
    model_options: the model's own options (e.g. {"num_mixtures": 2} for "moe").
    merge: with `split`, the `SubclassMerge` rule of the saved class-probability model
      ("max", the paper's, or "odds_sum"): what early stopping and evaluation score.

  Returns:
    A function returning the `training.Trainable`: with `split` the logits model,
    the subclass cross-entropy, Σ H_i outputs and the class-probability model to
    save; without, the registered model on the transformed stream.
  """
  plan.check_fits(feature_size=feature_size)
  transform = augment.make_subclass_transform(plan, augment=augment_copies, split=split)

  def dataset_transform(dataset: tf.data.Dataset) -> tf.data.Dataset:
    # Copies enlarge the batches; rebatching keeps every step at the batch size, so,
    # as in the paper, the augmented data set simply has more steps per epoch.
    return dataset.map(transform, num_parallel_calls=tf.data.AUTOTUNE).rebatch(batch_size)

  def build() -> training.Trainable:
    if not split:
      model = models.build_model(model_name, feature_size, plan.num_classes,
                                 weight_decay=weight_decay, **(model_options or {}))
      return training.Trainable(model, dataset_transform=dataset_transform)
    unit_to_class = [int(c) for c in plan.layout.unit_to_class]
    logits_model, class_model = models.build_subclass_model(
        model_name, feature_size, unit_to_class, plan.num_classes, weight_decay=weight_decay,
        merge=merge, **(model_options or {}))
    loss = loss_registry.make_loss(loss_config, plan.num_classes, from_logits=True,
                                   class_counts=class_counts, unit_to_class=unit_to_class)
    return training.Trainable(logits_model, loss=loss, num_outputs=len(unit_to_class),
                              model_to_save=class_model, dataset_transform=dataset_transform)

  return build
