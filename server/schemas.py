"""Base payload models: every HTTP body and socket event is validated into one of these."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints

# Every string in a payload has a limit; this is the default when a field sets none.
DEFAULT_STR_MAX = 4096

Id = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
Name = Annotated[str, StringConstraints(min_length=1, max_length=100, strip_whitespace=True)]
ShortText = Annotated[str, StringConstraints(max_length=200)]
Username = Annotated[str, StringConstraints(min_length=2, max_length=64, pattern=r"^[a-z0-9][a-z0-9_.-]*$")]
Password = Annotated[str, StringConstraints(min_length=1, max_length=256)]


class Payload(BaseModel):
    """Input from a client: unknown fields and wrong types are refused."""

    model_config = ConfigDict(extra="forbid", strict=True, str_max_length=DEFAULT_STR_MAX, frozen=True)


class Query(BaseModel):
    """Query-string input: values arrive as text and are converted, unknown keys refused."""

    model_config = ConfigDict(extra="forbid", str_max_length=256, frozen=True)


class Out(BaseModel):
    """A response body."""

    model_config = ConfigDict(from_attributes=True)
