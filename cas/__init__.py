"""cas: a chunked, content-addressed, deduplicating store for large ML models.

    from cas import Store
    store = Store.open("/data/models")          # or webhdfs://namenode:9870/models?user=me, s3://bucket/models
    m = store.put("model.keras", "resnet")      # version 1, tagged latest
    store.get("resnet@1", "restored.keras")
"""

from .errors import (AlreadyExists, BadManifest, BadName, BadSettings, CasError, CorruptChunk, InUse, IntegrityError,
                     MissingChunk, NoSuchModel, NoSuchTag, NoSuchVersion, NotFound, SettingsConflict, SourceChanged,
                     StoreMisconfigured, StoreUnavailable, VersionExists)
from .manifest import FileEntry, Manifest
from .store import Store, TransferStats

__version__ = "0.1.0"

__all__ = [
    "AlreadyExists", "BadManifest", "BadName", "BadSettings", "CasError", "CorruptChunk", "FileEntry", "InUse",
    "IntegrityError", "Manifest", "MissingChunk", "NoSuchModel", "NoSuchTag", "NoSuchVersion", "NotFound",
    "SettingsConflict", "SourceChanged", "Store", "StoreMisconfigured", "StoreUnavailable", "TransferStats",
    "VersionExists", "__version__",
]
