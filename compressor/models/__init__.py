"""Model zoo, name registry, teacher loading and model statistics.

Importing this package registers the zoo families (CIFAR ResNets, MobileNetV2, WRN), so
`create_model("resnet56", num_classes=10)` works after `import compressor.models`.
"""

from compressor.models import cifar_resnet, mobilenetv2, wide_resnet  # noqa: F401  (register)
from compressor.models.checkpoint import (
    detect_format,
    load_weights,
    read_checkpoint,
    read_state_dict,
    tensor_problem,
)
from compressor.models.registry import (
    create_model,
    is_known_model,
    list_models,
    register_model,
    student_kwargs,
)
from compressor.models.stats import count_flops, count_parameters
from compressor.models.teacher import (
    check_builds_the_same_weights,
    check_teacher_output,
    load_teacher,
)

__all__ = [
    "check_builds_the_same_weights",
    "check_teacher_output",
    "count_flops",
    "count_parameters",
    "create_model",
    "detect_format",
    "is_known_model",
    "list_models",
    "load_teacher",
    "load_weights",
    "read_checkpoint",
    "read_state_dict",
    "register_model",
    "student_kwargs",
    "tensor_problem",
]
