"""Networks taking [0, 1] images: SmallCNN, PreActResNet18, WideResNet, torchvision / anti-aliased ResNets; BlurPool
and FLC pooling."""

from robustrain.models.antialias import DOWNSAMPLING, BlurPool, strided_conv
from robustrain.models.flc import FLCPool, flc_pool
from robustrain.models.normalize import DATASET_STATS, Normalize
from robustrain.models.preact_resnet import PreActResNet18
from robustrain.models.small_cnn import SmallCNN
from robustrain.models.torchvision_resnet import TorchvisionResNet, load_state_dict_file
from robustrain.models.wide_resnet import WideResNet

__all__ = [
    "BlurPool",
    "DOWNSAMPLING",
    "FLCPool",
    "DATASET_STATS",
    "Normalize",
    "PreActResNet18",
    "SmallCNN",
    "TorchvisionResNet",
    "WideResNet",
    "flc_pool",
    "load_state_dict_file",
    "strided_conv",
]
