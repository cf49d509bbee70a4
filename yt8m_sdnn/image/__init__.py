"""The paper's multiclass image experiments (CIFAR-10/100, SVHN; section 3.2, Table 1)."""
