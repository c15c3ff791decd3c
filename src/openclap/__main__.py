import sys

from openclap.cli import main

sys.exit(main())
