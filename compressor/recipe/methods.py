"""The `method:` section: which distillation method trains the student, with its options.

The methods form a union discriminated by `name`, so each validates only the options it
understands: an option of another method is an unknown key, not a silently ignored setting.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, model_validator

from compressor.recipe.strict import Strict, started


class AttackConfig(Strict):
    """Boundary-supporting sample search (BSS, Heo et al. 2019)."""

    fraction: float = Field(
        0.25, gt=0.0, le=1.0, description="Attacked share of each batch (BSS: 64 per 256)."
    )
    step_size: float = Field(0.3, gt=0.0, description="eta in the BSS update.")
    epsilon: float = Field(1e-4, ge=0.0, description="Pushes slightly past the boundary.")
    max_steps: int = Field(10, ge=1, le=100, description="Gradient search: attack updates.")
    keep: Literal["all", "boundary"] = Field(
        "all", description="'all' uses every result (reference); 'boundary' only (b, k) hits."
    )
    search: Literal["gradient", "refined", "interpolation"] = Field(
        "gradient",
        description="'gradient': the BSS attack along the teacher's input gradient (reference); "
        "'refined': that attack, then the segment from the base image to its result bisected "
        "back to the teacher's b/k crossing, which the attack's last step overshoots; "
        "'interpolation': bisect the segment from the base image to a batch image of class k "
        "for the teacher's b/k crossing (no input gradients; docs/METHOD.md).",
    )
    halvings: int = Field(
        8,
        ge=1,
        le=24,
        description="Refined and interpolation search: bisection steps; the sample lies within "
        "2^-halvings of the segment past the crossing (float32 resolves no finer than 2^-24).",
    )

    @model_validator(mode="after")
    def _no_setting_the_search_ignores(self, info: ValidationInfo) -> AttackConfig:
        """A setting of another search is a user who believes it steers this one."""
        if started(info):
            return self
        unused = [
            name
            for name, searches in _SEARCHES_USING.items()
            if self.search not in searches and getattr(self, name) != _DEFAULTS[name]
        ]
        if unused:
            owners = " and ".join(_SEARCHES_USING[unused[0]])  # one pair for all unused
            raise ValueError(
                f"search {self.search!r} does not use {', '.join(unused)} (settings of the "
                f"{owners} searches); remove them, or pick a search that uses them"
            )
        return self


# The settings of one search or two: the others would ignore them.
_SEARCHES_USING = {
    "step_size": ("gradient", "refined"),
    "epsilon": ("gradient", "refined"),
    "max_steps": ("gradient", "refined"),
    "halvings": ("refined", "interpolation"),
}
_DEFAULTS = {name: field.default for name, field in AttackConfig.model_fields.items()}


# How the student's BatchNorm layers treat the boundary samples (compressor.methods.boundary_norm).
BoundaryNorm = Literal["update", "batch", "running"]
BOUNDARY_NORM_HELP = (
    "Student BatchNorm on the boundary samples: 'update' (BSS reference) normalises by their "
    "batch and folds it into the running statistics; 'batch' leaves the running statistics to "
    "clean batches; 'running' normalises by the running statistics, as the deployed student does."
)


class ScheduleWeights(Strict):
    """alpha(e) = 1 + alpha_extra * max(1 - e/E, 0); beta(e) = beta_init * max(1 - e/(f E), 0)."""

    alpha_extra: float = Field(3.0, ge=0.0)
    beta_init: float = Field(2.0, ge=0.0)
    beta_stop_fraction: float = Field(0.75, gt=0.0, le=1.0)


class AMKDWeights(ScheduleWeights):
    """AMKD's schedule: a constant clean-KD weight (its clean term is plain KD), beta from 1.

    Own defaults rather than BSS's, so a recipe that sets one field keeps AMKD's others.
    """

    alpha_extra: float = Field(0.0, ge=0.0)
    beta_init: float = Field(1.0, ge=0.0)


class CEMethod(Strict):
    name: Literal["ce"] = "ce"


class KDMethod(Strict):
    name: Literal["kd"] = "kd"
    temperature: float = Field(4.0, gt=0.0)
    ce_weight: float = Field(1.0, ge=0.0)
    kd_weight: float = Field(1.0, ge=0.0)

    @model_validator(mode="after")
    def _some_loss(self, info: ValidationInfo) -> KDMethod:
        if self.ce_weight == 0 and self.kd_weight == 0 and not started(info):
            raise ValueError(
                "ce_weight and kd_weight are both 0: the loss would be 0 and the student "
                "would not learn; set one of them above 0"
            )
        return self


class BSSMethod(Strict):
    name: Literal["bss"] = "bss"
    temperature: float = Field(3.0, gt=0.0)
    attack: AttackConfig = Field(default_factory=AttackConfig)
    weights: ScheduleWeights = Field(default_factory=ScheduleWeights)
    bank_epochs: int = Field(
        1,
        ge=1,
        description="Reuse each boundary sample for this many epochs: attack in the first of "
        "each window, reuse the banked samples in the rest (1: attack every step).",
    )
    boundary_norm: BoundaryNorm = Field("update", description=BOUNDARY_NORM_HELP)


class TripletMethod(Strict):
    name: Literal["triplet"] = "triplet"
    temperature: float = Field(1.0, gt=0.0, description="Oki et al. use plain KL (T = 1).")
    margin: float = Field(5.0, ge=0.0)
    triplet_weight: float = Field(2.0, ge=0.0)


class AMKDMethod(Strict):
    name: Literal["amkd"] = "amkd"
    temperature: float = Field(4.0, gt=0.0)
    attack: AttackConfig = Field(default_factory=AttackConfig)
    weights: AMKDWeights = Field(default_factory=AMKDWeights)
    bank_epochs: int = Field(
        1,
        ge=1,
        description="Reuse each boundary sample for this many epochs: attack in the first of "
        "each window, reuse the banked samples in the rest (1: attack every step).",
    )
    boundary_norm: BoundaryNorm = Field("batch", description=BOUNDARY_NORM_HELP)
    embedding: Literal["logits", "softmax", "features"] = "softmax"
    negative_source: Literal["teacher", "student"] = "teacher"
    mining: Literal["random", "hardest"] = "random"
    lambda_bss: float = Field(
        0.0, ge=0.0, description="Weight of BSS's KD term on x~; 0: the triplet replaces it."
    )
    gamma: float = Field(8.0, ge=0.0, description="Weight of the triplet term.")
    margin: float = Field(
        0.2, ge=0.0, description="Triplet margin, in the embedding's units (softmax: <= sqrt 2)."
    )
    t_squared: bool = Field(
        True,
        description="Scale both KL terms by T^2 as Hinton's KD does (the BSS reference does "
        "not), so the clean term is as strong as plain KD's.",
    )
    project_conflicts: bool = Field(
        False,
        description="On steps where the boundary term's gradient points against the clean "
        "term's, drop its component along the clean gradient (PCGrad), so it cannot slow the "
        "clean fit; costs two more backward passes per attack step. Not under torchrun.",
    )

    @model_validator(mode="after")
    def _some_boundary_term(self, info: ValidationInfo) -> AMKDMethod:
        # A run made before this check trained as KD: it must still resume, export and gate.
        if self.lambda_bss == 0 and self.gamma == 0 and not started(info):
            raise ValueError(
                "lambda_bss and gamma are both 0: the boundary samples would be searched every "
                "step and weigh nothing, which is KD at the attack's cost; use name: kd, or set "
                "one of them above 0"
            )
        return self


MethodConfig = Annotated[
    CEMethod | KDMethod | BSSMethod | TripletMethod | AMKDMethod, Field(discriminator="name")
]
METHOD_MODELS: dict[str, type[Strict]] = {
    "ce": CEMethod,
    "kd": KDMethod,
    "bss": BSSMethod,
    "triplet": TripletMethod,
    "amkd": AMKDMethod,
}
METHOD_NAMES = tuple(METHOD_MODELS)
