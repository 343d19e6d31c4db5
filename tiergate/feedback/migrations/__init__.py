"""Alembic migrations of the feedback store, shipped in the package and run by `tiergate.feedback.migrate`."""
