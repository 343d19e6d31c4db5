"""The base of every config model: unknown keys are errors, loaded values are immutable."""

from pydantic import BaseModel, ConfigDict, ValidationError


class StrictModel(BaseModel):
    """A pydantic model that forbids unknown keys (a typo is an error, not a silent default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def format_validation_error(error: ValidationError) -> str:
    """One readable line per problem, each naming the key path (e.g. categories.3.tier)."""
    parts = []
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        parts.append(f"{location}: {message}" if location else message)
    return "; ".join(parts)
