"""Where generated files (ticket and invoice PDFs, reports) live: a directory on disk by
default (`var/files`), an S3 bucket in production. See `base.Storage`."""

from boxoffice.storage.base import Storage, StoredFile, check_key, storage_from_settings

__all__ = ["Storage", "StoredFile", "check_key", "storage_from_settings"]
