"""``python -m fastmlp``: the ``fastmlp`` command line."""
from fastmlp.cli import main

raise SystemExit(main())
