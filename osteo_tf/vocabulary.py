"""The project's shared facts, in one place that imports nothing heavy (no Keras, no TensorFlow).

Modes, fusions and cache choices, the image constants (luma weights, ImageNet statistics,
the smallest input), the manifest's ROI columns, covariate names, sets and plausible ranges,
the heads' widths, and the backbone table as data. Every module that needs one of these
imports it from here — the data pipeline, the models, ``TrainConfig``, the serving spec, the
CLI and ``bench/`` — and none keeps a copy. :mod:`osteo_tf.models.backbones` holds only the
builders that turn a row of :data:`BACKBONES` into a Keras network.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

from osteo_tf.errors import OsteoInputError

__all__ = [
    "BACKBONES",
    "CACHE_CHOICES",
    "CAM_METHODS",
    "CAM_TARGETS",
    "CONVERTIBLE_BACKBONES",
    "COVARIATES",
    "COVARIATE_MODES",
    "COVARIATE_RANGES",
    "COVARIATE_SETS",
    "COVARIATE_UNITS",
    "DEFAULT_EXPORT_ROOT",
    "DEFAULT_FUSION",
    "DEFAULT_INFORMATION",
    "DEFAULT_MODEL_NAME",
    "DEFAULT_SEX_CODES",
    "EFFICIENTNETS",
    "EXECUTORS",
    "FUSIONS",
    "FUSION_UNITS",
    "GOOGLENET_SHA256_PREFIX",
    "GOOGLENET_URL",
    "HIP_FRACTURE_CODES",
    "IMAGENET_CLASSES",
    "IMAGENET_MEAN",
    "IMAGENET_MEAN_UNIT",
    "IMAGENET_STD",
    "IMAGENET_STD_UNIT",
    "IMAGE_DROPOUT",
    "IMAGE_MODES",
    "INFORMATIVE_REGIONS",
    "KERAS_HUB_RESNET_PRESETS",
    "LUMA",
    "MIN_IMAGE_SIZE",
    "MODEL_NAMES",
    "MODEL_ORDER",
    "MODES",
    "OUTPUTS_WITH_AUX",
    "PHANTOM_INFORMATION",
    "PHANTOM_KINDS",
    "PROBABILITY_VAL_LOSS",
    "RESNET_BLOCKS",
    "ROI_ANCHORS",
    "ROI_COLUMNS",
    "ROI_CONFIDENCE_COLUMN",
    "ROI_REVIEW",
    "ROI_STATUS_COLUMN",
    "ROI_POINT_COLUMNS",
    "SPLIT_NAMES",
    "WEIGHT_FORMATS",
    "WEIGHT_FORMAT_NAMES",
    "BackboneSpec",
    "get_backbone_spec",
    "model_label",
    "uses_covariates",
    "uses_images",
]

# ------------------------------------------------------------------------------ models and fits

MODES = ("image_only", "ensemble", "covariates_only")
IMAGE_MODES = ("image_only", "ensemble")  # the modes whose model reads an image
COVARIATE_MODES = ("ensemble", "covariates_only")  # the modes whose model reads covariates
FUSIONS = ("concat", "late", "film")  # see osteo_tf.models.heads
DEFAULT_FUSION = "concat"  # the papers' design
PHANTOM_KINDS = ("hip", "dental")  # see osteo_tf.data.synthetic
#: Where a phantom's T-score shows (and what its masks mark), per kind; the first is the default.
INFORMATIVE_REGIONS = MappingProxyType({"hip": ("bone", "head_neck"), "dental": ("bone",)})
PHANTOM_INFORMATION = ("image_led", "balanced")  # see osteo_tf.data.synthetic.INFORMATION_SIGMA
DEFAULT_INFORMATION = "image_led"
# A model trained with auxiliary losses: its outputs, and the validation loss that picks its epoch.
OUTPUTS_WITH_AUX = ("probability", "aux_image", "aux_covariates")
PROBABILITY_VAL_LOSS = "val_probability_loss"
#: A run's three parts, in this order.
SPLIT_NAMES = ("train", "val", "test")
#: How an experiment runs its fits (``run_experiment(executor=…)``, ``osteo experiment --executor``).
EXECUTORS = ("local", "ray")
#: Class activation maps (osteo_tf.explain.gradcam; Guided Grad-CAM is always computed too), and the
#: class whose score a map explains.
CAM_METHODS = ("gradcam", "gradcam++")
CAM_TARGETS = ("osteoporosis", "non_osteoporosis", "predicted")
#: Export defaults: the root of TF Serving's model folders and the model name.
DEFAULT_EXPORT_ROOT = "saved_models"
DEFAULT_MODEL_NAME = "osteo"
#: Where decoded images are kept between epochs (``TrainConfig.cache``, ``make_dataset(cache=…)``).
CACHE_CHOICES = ("memory", "disk", "none")

# The heads (osteo_tf.models.heads): units of the covariate perceptron's two layers, of the
# fusion layer, and the dropout on the image features.
COVARIATE_UNITS = (32, 32)
FUSION_UNITS = 64
IMAGE_DROPOUT = 0.5


def uses_images(mode: str) -> bool:
    """Whether a model of ``mode`` reads an image."""
    return mode in IMAGE_MODES


def uses_covariates(mode: str) -> bool:
    """Whether a model of ``mode`` reads covariates."""
    return mode in COVARIATE_MODES


def model_label(mode: str, fusion: str = DEFAULT_FUSION) -> str:
    """The name a fit's model goes by in result tables: the mode, with a non-default fusion
    appended (``ensemble_late``); the papers' concat ensemble stays ``ensemble``."""
    return f"{mode}_{fusion}" if mode == "ensemble" and fusion != DEFAULT_FUSION else mode


# Result tables list models in this order: image-only, the ensemble variants, covariates-only.
MODEL_ORDER = ("image_only", *(model_label("ensemble", f) for f in FUSIONS), "covariates_only")
MODEL_NAMES = {
    "image_only": "Image-only",
    "ensemble": "Ensemble",
    "covariates_only": "Covariates-only",
    **{model_label("ensemble", f): f"Ensemble ({f})" for f in FUSIONS if f != DEFAULT_FUSION},
}

# ------------------------------------------------------------------------------ images

#: ITU-R BT.601 luma weights (R, G, B), the ones Pillow's ``convert("L")`` uses.
LUMA = (0.299, 0.587, 0.114)
#: torchvision's ImageNet statistics per channel (R, G, B), in [0, 1] units ...
IMAGENET_MEAN_UNIT = (0.485, 0.456, 0.406)
IMAGENET_STD_UNIT = (0.229, 0.224, 0.225)
#: ... and in [0, 255] pixel units, the scale the pipeline hands images in.
IMAGENET_MEAN = tuple(v * 255 for v in IMAGENET_MEAN_UNIT)
IMAGENET_STD = tuple(v * 255 for v in IMAGENET_STD_UNIT)
IMAGENET_CLASSES = 1000
#: The models' smallest input side in pixels (``TrainConfig.image_size`` >= this), and the
#: default smallest side of an image, or of its ROI crop, that a manifest may list
#: (``ManifestConfig.min_image_size``).
MIN_IMAGE_SIZE = 32

# ------------------------------------------------------------------------------ the manifest

#: Canonical names of the clinical covariates a protocol may require.
COVARIATES: tuple[str, ...] = ("age", "sex", "bmi", "hip_fracture_history")
#: The papers' covariate sets (``TrainConfig.covariates``): Yamamoto 2020 (hip, a 1×6
#: encoded vector) and Sukegawa 2022 (dental, 1×4).
COVARIATE_SETS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "hip": ("age", "bmi", "sex", "hip_fracture_history"),
        "dental": ("age", "bmi", "sex"),
    }
)
#: Plausible range of each numeric column, inclusive: (unit, low, high).
COVARIATE_RANGES: Mapping[str, tuple[str, float, float]] = MappingProxyType(
    {
        "age": ("years", 0, 120),
        "bmi": ("kg/m²", 10, 70),
        "height_cm": ("cm", 50, 250),
        "weight_kg": ("kg", 10, 350),
        "t_score": ("DXA T-score", -10, 10),
    }
)
#: Sex codes always accepted (lower-case keys; a manifest config may add more).
DEFAULT_SEX_CODES: Mapping[str, str] = MappingProxyType({"f": "F", "female": "F", "m": "M", "male": "M"})
#: Hip-fracture history codes (lower-case) → 1 (a fracture) / 0.
HIP_FRACTURE_CODES: Mapping[str, int] = MappingProxyType(
    {
        "yes": 1,
        "y": 1,
        "1": 1,
        "1.0": 1,
        "true": 1,
        "no": 0,
        "n": 0,
        "0": 0,
        "0.0": 0,
        "false": 0,
    }
)
#: The ROI box columns, pixels, origin top-left; or the centre-point columns.
ROI_COLUMNS: tuple[str, ...] = ("roi_x", "roi_y", "roi_w", "roi_h")
ROI_POINT_COLUMNS: tuple[str, ...] = ("roi_cx", "roi_cy")
ROI_ANCHORS: tuple[str, ...] = ("below", "center")
# Written by osteo roi detect: the detection's confidence, and "detected" / "review" / (a person's) "checked".
ROI_CONFIDENCE_COLUMN = "roi_confidence"
ROI_STATUS_COLUMN = "roi_status"
ROI_REVIEW = "review"

# ------------------------------------------------------------------------------ the backbone table


@dataclass(frozen=True)
class BackboneSpec:
    """Everything the rest of the code needs to know about one backbone, as plain data.

    family: the builder family (``resnet``, ``googlenet``, ``efficientnet``; see
    :mod:`osteo_tf.models.backbones`). image_size: the paper's input size in pixels (square).
    learning_rate: the papers' SGD rate for this family. feature_layer: name of the layer
    whose output is the last feature map (Grad-CAM target). normalization: (mean, std) per
    channel in [0, 255] units applied before the network, or None when the network normalises
    itself. weights_sources: ImageNet weight sources, name → handle, the first being the
    default of ``weights="imagenet"``. imagenet_params: trainable parameters with
    torchvision's 1000-class head (its published count). feature_channels: channels of the
    last feature map. min_image_size: smallest input side in pixels the tests build at.
    """

    name: str
    family: str
    image_size: int
    learning_rate: float
    feature_layer: str
    normalization: tuple[tuple[float, ...], tuple[float, ...]] | None
    weights_sources: dict[str, str]
    imagenet_params: int
    feature_channels: int
    min_image_size: int = MIN_IMAGE_SIZE

    @property
    def default_weights(self) -> str:
        """Name of the default ImageNet weight source (the first listed)."""
        return next(iter(self.weights_sources))

    @property
    def weights_source(self) -> str:
        """Handle of the default ImageNet weight source."""
        return self.weights_sources[self.default_weights]

    @property
    def backbone_params(self) -> int:
        """Trainable parameters of the backbone alone (no classifier)."""
        return self.imagenet_params - (self.feature_channels + 1) * IMAGENET_CLASSES


RESNET_BLOCKS = MappingProxyType({18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 152: (3, 8, 36, 3)})
# torchvision's published parameter counts (1000-class head included).
_RESNET_PARAMS = {18: 11_689_512, 34: 21_797_672, 50: 25_557_032, 152: 60_192_808}
#: keras-hub's own ImageNet presets of the same network (it has none for ResNet-34).
KERAS_HUB_RESNET_PRESETS = MappingProxyType(
    {18: "resnet_18_imagenet", 50: "resnet_50_imagenet", 152: "resnet_152_imagenet"}
)
#: EfficientNet variant: (paper / keras size in px, torchvision params, feature channels).
EFFICIENTNETS = MappingProxyType(
    {
        "b0": (224, 5_288_548, 1280),
        "b1": (240, 7_794_184, 1280),
        "b2": (260, 9_109_994, 1408),
        "b3": (300, 12_233_232, 1536),
        "b4": (380, 19_341_616, 1792),
        "b5": (456, 30_389_784, 2048),
        "b6": (528, 43_040_704, 2304),
        "b7": (600, 66_347_960, 2560),
    }
)
GOOGLENET_URL = "https://download.pytorch.org/models/googlenet-1378be20.pth"
#: torchvision names its files after the first 8 hex digits of their SHA-256 and checks them.
GOOGLENET_SHA256_PREFIX = "1378be20"
_IMAGENET = (IMAGENET_MEAN, IMAGENET_STD)


def _backbone_table() -> dict[str, BackboneSpec]:
    table = {}
    for depth, blocks in RESNET_BLOCKS.items():
        sources = {"torchvision": f"hf://timm/resnet{depth}.tv_in1k"}
        if depth in KERAS_HUB_RESNET_PRESETS:
            sources["keras-hub"] = KERAS_HUB_RESNET_PRESETS[depth]
        table[f"resnet{depth}"] = BackboneSpec(
            name=f"resnet{depth}",
            family="resnet",
            image_size=224,
            learning_rate=0.001,
            feature_layer=f"stack3_block{blocks[-1] - 1}_out",
            normalization=_IMAGENET,
            weights_sources=sources,
            imagenet_params=_RESNET_PARAMS[depth],
            feature_channels=512 if depth < 50 else 2048,
        )
    table["googlenet"] = BackboneSpec(
        name="googlenet",
        family="googlenet",
        image_size=224,
        learning_rate=0.001,
        feature_layer="inception5b",
        normalization=_IMAGENET,
        weights_sources={"torchvision": GOOGLENET_URL},
        imagenet_params=6_624_904,
        feature_channels=1024,
    )
    for variant, (size, params, channels) in EFFICIENTNETS.items():
        table[f"efficientnet_{variant}"] = BackboneSpec(
            name=f"efficientnet_{variant}",
            family="efficientnet",
            image_size=size,
            learning_rate=0.01,
            feature_layer="top_activation",
            normalization=None,
            weights_sources={"keras-applications": "imagenet"},
            imagenet_params=params,
            feature_channels=channels,
        )
    return table


#: Every CNN of both papers by name (registry order: ResNets, GoogLeNet, EfficientNet-B0…B7).
BACKBONES: Mapping[str, BackboneSpec] = MappingProxyType(_backbone_table())
#: Weight files each family loads with ``weights=PATH``, by the name of their layout
#: (:mod:`osteo_tf.models.weight_files`): ``timm`` (a Hugging Face snapshot folder, config.json +
#: model.safetensors), ``keras-hub`` (a preset folder), ``torchvision`` (a .pth state_dict, needs
#: PyTorch), ``keras-applications`` (efficientnetbN_notop.h5 / efficientnetbN.h5, legacy HDF5),
#: ``keras`` (a .weights.h5 of this project's backbone) and ``bundle`` (``osteo weights fetch``).
WEIGHT_FORMATS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "resnet": ("timm", "keras-hub", "torchvision", "keras", "bundle"),
        "googlenet": ("torchvision", "keras", "bundle"),
        "efficientnet": ("keras-applications", "keras", "bundle"),
    }
)
#: What each layout is, for messages.
WEIGHT_FORMAT_NAMES: Mapping[str, str] = MappingProxyType(
    {
        "timm": "a timm / Hugging Face snapshot folder (config.json + model.safetensors)",
        "keras-hub": "a keras-hub preset folder (config.json + model.weights.h5)",
        "torchvision": "a torchvision state_dict (.pth)",
        "keras-applications": "keras-applications' efficientnetbN_notop.h5 (or efficientnetbN.h5)",
        "keras": "a .weights.h5 of this backbone (osteo weights convert / fetch)",
        "bundle": "a folder written by osteo weights fetch (manifest.json)",
    }
)
#: The backbones whose torchvision checkpoints convert to Keras weights (``osteo weights convert``,
#: :mod:`osteo_tf.models.convert`): GoogLeNet and the ResNets.
CONVERTIBLE_BACKBONES = ("googlenet", "resnet18", "resnet34", "resnet50", "resnet152")


def get_backbone_spec(name: str) -> BackboneSpec:
    """Looks a backbone up by name; an unknown name is an error listing the known ones.

    Raises:
        OsteoInputError: ``name`` is not in :data:`BACKBONES`.
    """
    try:
        return BACKBONES[name]
    except (KeyError, TypeError):
        raise OsteoInputError(
            f"unknown backbone '{name}'; choose one of: {', '.join(sorted(BACKBONES))}", parameter="backbone"
        ) from None
