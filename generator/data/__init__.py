"""The dataset stage: ImageFolder loading, the demo data generator and video ingestion."""

from generator.data.demo import DEMO_CLASSES, make_demo_dataset
from generator.data.folder import ImageFolderData, load_image_folder, load_uint8
from generator.data.images import to_model_input
from generator.data.names import storable, storable_text
from generator.data.video import IngestReport, ingest_video

__all__ = [
    "DEMO_CLASSES",
    "ImageFolderData",
    "IngestReport",
    "ingest_video",
    "load_image_folder",
    "load_uint8",
    "make_demo_dataset",
    "storable",
    "storable_text",
    "to_model_input",
]
