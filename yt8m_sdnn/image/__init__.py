"""The paper's multiclass image experiments (CIFAR-10/100, SVHN; section 3.2, Table 1).

data → input_pipeline (with augment) → models → training, which runs the baseline or,
through `subclass`, the SDNN; `demo` compares the two over seeds.
"""
