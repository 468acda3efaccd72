"""BN-Inception: architecture (Table 5 as data), datasets, training, population statistics, weight import."""

from bninception.core.exports import public_surface

# what other layers may use (tests/bninception/test_public_surface.py keeps this list and the imports in step)
__all__, __getattr__ = public_surface(__name__, {
    "CHECKPOINT_FORMAT": "checkpoint",
    "ClassLabels": "labels",
    "ImageFolderDataset": "data",
    "MODEL_FORMAT": "checkpoint",
    "POPULATION_BATCHES": "stages",
    "POPULATION_BATCH_SIZE": "stages",
    "TrainConfig": "config",
    "class_labels": "checkpoint",
    "default_image_size": "config",
    "import_weights_stage": "stages",
    "load": "checkpoint",
    "load_bundle": "data",
    "load_model": "checkpoint",
    "load_run_bundle": "data",
    "match_classes": "labels",
    "model_from_state": "checkpoint",
    "population_stage": "stages",
    "run_images": "data",
    "sample_photos": "photos",
    "stack_split": "data",
    "train_stage": "stages",
})
