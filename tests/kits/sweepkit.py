"""The small training setup the sweep and study tests share: MNIST slices and a 16-unit MLP."""

TINY_MLP = """
[data]
mirrors = []
retries = 0

[train]
val_size = 500
train_limit = 3000
test_limit = 500

[models.mlp]
arch = "mlp"
widths = [16]
lr = 0.003
lr_schedule = "constant"
batch_size = 16
steps = 20
eval_every = 10
seed = 7
"""
