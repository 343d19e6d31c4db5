"""The feedback loop's core: a store of items people reported and reviewers labelled, and the way
back into training.

- `store.FeedbackStore`: tokens (hashed, scoped), submissions (idempotent), reviews, audit trail;
- `migrate.upgrade(url)`: the packaged Alembic migrations, SQLite file or PostgreSQL;
- `sampling`: uncertainty sampling near a category's threshold;
- `agreement`: per-item agreement and Cohen's kappa per category;
- `export.export_feedback`: reviewed items as a dataset in the importer's format.

A core package: it imports nothing from components, pipelines, serving or the CLI.
"""

import logging

# Alembic logs its plugins and migration context at INFO on import and on every schema check;
# `migrate.upgrade` says what it did instead. Set here, before any submodule imports alembic.
logging.getLogger("alembic").setLevel(logging.WARNING)
