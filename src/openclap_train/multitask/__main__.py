"""``python -m openclap_train.multitask CONFIG --run-dir DIR`` (also under torchrun)."""

import sys

from openclap_train.multitask.train import main

sys.exit(main())
