"""How MNIST is split: the training images a batch may draw, the validation images that
choose, the test images scored once. The one definition every stage reads."""

from __future__ import annotations

from dataclasses import dataclass

from mnist_webgpu.core.sections import TrainConfig

MNIST_TRAIN, MNIST_TEST = 60000, 10000


@dataclass(frozen=True)
class Split:
    """Index ranges into the MNIST training set; the test set is separate."""

    n_train: int  # images [0, n_train) are the only ones a training batch may draw
    n_val: int  # images [n_train, n_train + n_val) choose the checkpoint, the sweep's trials, the form
    n_test: int  # the first n_test test images are scored once, at the end

    @property
    def val(self) -> slice:
        return slice(self.n_train, self.n_train + self.n_val)


def mnist_split(train: TrainConfig) -> Split:
    total = min(train.train_limit or MNIST_TRAIN, MNIST_TRAIN)
    return Split(total - train.val_size, train.val_size, min(train.test_limit or MNIST_TEST, MNIST_TEST))
