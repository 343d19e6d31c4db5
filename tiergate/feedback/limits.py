"""Sizes and names fixed by the feedback store's schema (a migration changes them, not a profile),
in a module of their own so the client can check them without importing the database layer."""

NAME_CHARS = 64
KEY_CHARS = 128
CATEGORY_CHARS = 64
REPORTER_CHARS = 128
SCOPES_CHARS = 64
ACTION_CHARS = 32
TARGET_CHARS = 128
SOURCES = ("report", "override", "appeal", "uncertainty")
MAX_ID = 2**31 - 1  # ids are INTEGER columns: 32-bit in PostgreSQL, so no item id lies above this
