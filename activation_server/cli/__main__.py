"""``python -m mechscope.activation_server.cli``: the same as the ``mechscope`` command."""

import sys

from . import main

sys.exit(main())
