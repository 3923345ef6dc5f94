"""``python -m sdrest``: the same as the ``sdrest`` command."""

from sdrest.cli import main

raise SystemExit(main())
