"""A client for a Stowage host's HTTP API (`stowage serve`), and a Django storage backend on it
(`stowage_client.django.StowageStorage`).

    from stowage_client import Client, NotFound
    client = Client("https://services:8443", key, ca_file="ca.pem")
    client.put("scratch", "audit_1/a.csv", b"id,value\\n")
    try:
        client.read("scratch", "audit_1/b.csv")
    except NotFound:
        ...
"""

from .client import Client, quote_path
from .context import Context, using
from .errors import (
    AlreadyExists,
    AuditUnavailable,
    BadAddress,
    BadRequest,
    Denied,
    DigestMismatch,
    InvalidPath,
    InvalidRange,
    IoError,
    NoSpace,
    NotFound,
    PluginFault,
    QuotaExceeded,
    StowageError,
    TooLarge,
    TooManyRequests,
    Unavailable,
    UnknownName,
    Unsupported,
)
from .objects import Download, ObjectInfo
from .paths import scratch_path, submission_path
from .transport import Retry, TlsError

__all__ = [
    "AlreadyExists",
    "AuditUnavailable",
    "BadAddress",
    "BadRequest",
    "Client",
    "Context",
    "Denied",
    "DigestMismatch",
    "Download",
    "InvalidPath",
    "InvalidRange",
    "IoError",
    "NoSpace",
    "NotFound",
    "ObjectInfo",
    "PluginFault",
    "QuotaExceeded",
    "Retry",
    "StowageError",
    "TlsError",
    "TooLarge",
    "TooManyRequests",
    "Unavailable",
    "UnknownName",
    "Unsupported",
    "quote_path",
    "scratch_path",
    "submission_path",
    "using",
]
