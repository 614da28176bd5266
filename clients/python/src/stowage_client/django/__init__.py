"""Django on a Stowage host: `StowageStorage` (a `django.core.files.storage.Storage`, configured
in `STORAGES`), `ActorMiddleware` (the request's user becomes the actor), and the original
application's helpers: `get_submission_storage`, `get_scratch_storage`, `temp_file`,
`submission_path` and `scratch_path`.

    STORAGES = {
        "default": {"BACKEND": "stowage_client.django.StowageStorage",
                    "OPTIONS": {"url": "https://services:8443", "storage_class": "submission",
                                "ca_file": "/etc/stowage/ca.pem"}},
        "scratch": {"BACKEND": "stowage_client.django.StowageStorage",
                    "OPTIONS": {"url": "https://services:8443", "storage_class": "scratch",
                                "ca_file": "/etc/stowage/ca.pem"}},
    }
"""

from ..paths import scratch_path, submission_path
from .middleware import ActorMiddleware
from .storage import StowageFile, StowageStorage, get_scratch_storage, get_submission_storage, temp_file

__all__ = [
    "ActorMiddleware",
    "StowageFile",
    "StowageStorage",
    "get_scratch_storage",
    "get_submission_storage",
    "scratch_path",
    "submission_path",
    "temp_file",
]
