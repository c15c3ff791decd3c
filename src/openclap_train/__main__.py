"""``python -m openclap_train CONFIG --run-dir DIR`` (also ``torchrun --nproc_per_node N -m openclap_train ...``)."""

import sys

from openclap_train.train import main

if __name__ == "__main__":
    sys.exit(main())
