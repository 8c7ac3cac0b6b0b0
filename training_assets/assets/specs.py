"""Observable training config: the base model's identity and the recipe, seen by content hash.

Split in two so that changing the learning rate retrains the adapter but never re-converts the base model.
"""

from dagster import DataVersion, observable_source_asset

from mixtrain.identity import spec_hash
from mixtrain.resources import ProjectResource


@observable_source_asset(group_name="training", description="Which base model the recipe names (and its revision).")
def base_model_spec(project: ProjectResource) -> DataVersion:
    training = project.load().spec.training
    spec = {"base_model": training.base_model}
    if training.base_model_revision is not None:  # unset: the same version as before revisions existed
        spec["revision"] = training.base_model_revision
    return DataVersion(spec_hash(spec))


@observable_source_asset(group_name="training", description="The LoRA recipe (everything but the base model).")
def training_recipe(project: ProjectResource) -> DataVersion:
    recipe = project.load().spec.training.model_dump(mode="json")
    recipe.pop("base_model")
    recipe.pop("base_model_revision")
    return DataVersion(spec_hash(recipe))


@observable_source_asset(group_name="training", description="The distillation section (student, KD recipe, mode).")
def distillation_recipe(project: ProjectResource) -> DataVersion:
    return DataVersion(spec_hash(project.load().spec.distillation.model_dump(mode="json")))
