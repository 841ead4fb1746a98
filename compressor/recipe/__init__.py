"""The recipe: one YAML file that drives distillation, export and the gate.

Every section forbids unknown keys, so a typo is an error instead of a silently ignored
setting. Methods form a discriminated union on `name`, so each method validates only the
options it understands. How paths in a recipe are read: `compressor.recipe.paths`.

The modules: `strict` (the sections' base), `paths`, `methods`, `sections` (the schema and its
defaults), `schema` (JSON Schema), `messages` (validation errors as lines), `load` (files in
and out) and `differences`.
"""

from compressor.recipe.differences import recipe_differences
from compressor.recipe.load import load_recipe, parse_recipe, recipe_to_yaml
from compressor.recipe.messages import format_validation_error
from compressor.recipe.methods import (
    METHOD_MODELS,
    AMKDMethod,
    AMKDWeights,
    AttackConfig,
    BoundaryNorm,
    BSSMethod,
    CEMethod,
    KDMethod,
    MethodConfig,
    ScheduleWeights,
    TripletMethod,
)
from compressor.recipe.paths import PathSource
from compressor.recipe.schema import recipe_schema
from compressor.recipe.sections import (
    DATA_ROOT_ENV,
    DataConfig,
    ExportConfig,
    GateConfig,
    Int8Config,
    OptimizerConfig,
    OutputConfig,
    Recipe,
    ScheduleConfig,
    StudentConfig,
    TeacherConfig,
    TrainConfig,
)

__all__ = [
    "DATA_ROOT_ENV",
    "METHOD_MODELS",
    "AMKDMethod",
    "AMKDWeights",
    "AttackConfig",
    "BSSMethod",
    "BoundaryNorm",
    "CEMethod",
    "DataConfig",
    "ExportConfig",
    "GateConfig",
    "Int8Config",
    "KDMethod",
    "MethodConfig",
    "OptimizerConfig",
    "OutputConfig",
    "PathSource",
    "Recipe",
    "ScheduleConfig",
    "ScheduleWeights",
    "StudentConfig",
    "TeacherConfig",
    "TrainConfig",
    "TripletMethod",
    "format_validation_error",
    "load_recipe",
    "parse_recipe",
    "recipe_differences",
    "recipe_schema",
    "recipe_to_yaml",
]
