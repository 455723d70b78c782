"""`python -m continuum.operator.cli`: the `continuum` command, as the tests and the benchmark
start the operator (the interpreter they run in, whichever `continuum` is on the PATH)."""

import sys

from continuum.operator.cli import main

sys.exit(main())
