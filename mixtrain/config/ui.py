"""The ``dagster:`` section: how the project's assets present themselves in the Dagster UI.

Owners and extra tags are per project (the team that runs a project answers for its data), so they live in
mixtrain.yaml rather than in the asset code that every project shares."""

from __future__ import annotations

from pydantic import Field, field_validator

from mixtrain.config.base import Strict

DEFAULT_OWNERS = ("team:mixtrain",)


class DagsterSection(Strict):
    owners: list[str] = Field(
        default_factory=lambda: list(DEFAULT_OWNERS),
        description="owners of every asset: e-mail addresses or team:<name> (Dagster's two forms)",
    )
    tags: dict[str, str] = Field(default_factory=dict, description="extra tags on every asset (e.g. cost centre)")
    git_url: str | None = Field(
        None, description="repository URL (GitHub or GitLab): code references then open the file there, not locally"
    )
    git_branch: str = Field("main", description="the branch (or commit) git_url links to")

    @field_validator("owners")
    @classmethod
    def _owner_form(cls, owners: list[str]) -> list[str]:
        # Dagster rejects other forms only when the code location loads; saying so at project load names the line.
        bad = [o for o in owners if not (o.startswith("team:") and len(o) > 5) and "@" not in o]
        if bad:
            raise ValueError(f"owners must be e-mail addresses or team:<name>, got {bad}")
        return owners
