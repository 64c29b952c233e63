"""`python -m chroma_migrate` is the same as the `chroma-migrate` console script."""

from chroma_migrate.cli import main

raise SystemExit(main())
