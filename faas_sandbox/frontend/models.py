"""The pydantic models of the front end's OpenAPI schema (pydantic is used only here and in
``routes/calls.py``, which validates a call's body)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from ..names import KEYWORD_PATTERN
from ..policy import MAX_WALL_SECONDS, MIN_WALL_SECONDS

KeywordName = Annotated[str, StringConstraints(pattern=KEYWORD_PATTERN)]  # names.py's rule


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="allow")
    kind: str = Field(
        description="spec, unauthorized, denied, not_found, method, too_large, "
        "media_type, busy, unreachable, refused, no_executor, "
        "unavailable, timeout, cancelled, or the sandbox's kind of a "
        "failed call: compile, forbidden, runtime, memory, cpu, "
        "output, crash, ..."
    )
    message: str
    processid: str | None = None


class ErrorResponse(BaseModel):
    detail: ErrorDetail


class ConvertResponse(BaseModel):
    fahrenheit: list[Any]


class CallBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    args: list[Any] = Field(default_factory=list, description="positional arguments (JSON)")
    kwargs: dict[KeywordName, Any] = Field(
        default_factory=dict,
        description="keyword arguments (JSON); names are ASCII identifiers",
        json_schema_extra={"additionalProperties": False},
    )
    maxexectime: float | None = Field(
        None,
        ge=MIN_WALL_SECONDS,
        le=MAX_WALL_SECONDS,
        description="seconds; may lower the policy's wall limit, never raise it",
    )


class Revision(BaseModel):
    number: int = Field(description="1 for the first deploy of the name, counting up")
    fileid: str
    sha256: str
    size: int
    added: str


class CallResponse(BaseModel):
    output: list[Any]
    processid: str | None
    revision: Revision | None = Field(None, description="the revision that ran (pinned at submit)")


class AsyncAccepted(BaseModel):
    processid: str
    status_url: str


class CallStatus(BaseModel):
    processid: str
    state: Literal["waiting", "running", "successful", "failed", "cancelled"]
    function: str | None = None
    output: list[Any] = Field(default_factory=list)
    kind: str | None = Field(None, description="ok, or the failure kind once failed")
    message: str | None = None
    revision: str | None = Field(None, description="file id of the pinned revision, if any")


class LogsResponse(BaseModel):
    processid: str
    logs: list[str]


class FunctionSummary(BaseModel):
    name: str
    size: int
    revisions: int
    deployed_at: str
    fileid: str


class FunctionDetail(BaseModel):
    name: str
    current: Revision
    revisions: list[Revision]


class Health(BaseModel):
    status: Literal["ok", "no_executor"]
    executors: int | None = Field(
        None, description="executors of the type seen alive (None: unknown)"
    )
