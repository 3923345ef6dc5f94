"""``python -m sdrest``: the same as the ``sdrest`` command."""

from sdrest.entry import main

raise SystemExit(main())
