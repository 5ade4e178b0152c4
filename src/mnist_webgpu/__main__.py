"""`python -m mnist_webgpu <stage> ...`: the entry point every doit task runs (pipeline/stages.py)."""

import sys

from mnist_webgpu.pipeline import stages

if __name__ == "__main__":
    sys.exit(stages.main())
