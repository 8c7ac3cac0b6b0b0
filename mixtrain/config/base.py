"""What every config section shares: strict, frozen pydantic models and the one error a bad project raises."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ProjectError(ValueError):
    """A project file is missing or invalid; the message names the file and field."""


class Strict(BaseModel):
    """Unknown keys are errors (a typo in YAML must not be silently ignored) and a loaded config is immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ProjectNotFoundError(ProjectError):
    """The directory holds no ``mixtrain.yaml`` (or does not exist): a command run from the wrong place, which
    the CLI answers by saying how to name the project."""
