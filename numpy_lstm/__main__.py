"""`python -m numpy_lstm ...` is `numpy-lstm ...`."""
import sys

from .cli import main

sys.exit(main())
