"""Subclasses of the neglected classes: layout, Algorithm 1's partition, plan, augmentation."""
