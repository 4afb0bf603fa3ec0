"""Dataset registry: embedded (street_scenes, digits) and real (cityscapes, cifar10, image_folder) loaders."""

from repro.data.registry import DatasetInfo, dataset_info, default_root, list_datasets, load_dataset, stack

__all__ = ["DatasetInfo", "dataset_info", "default_root", "list_datasets", "load_dataset", "stack"]
