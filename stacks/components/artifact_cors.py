"""The artifact bucket's CORS rule, in S3 API shape (PutBucketCors).

The MLflow UI opens large artifacts through presigned S3 URLs, so the browser
fetches them cross-origin from the bucket: S3 must allow exactly the origin the
UI is served from. The deployed bucket and the local S3 of `make local` and
the tests get their rule from this one function.
"""

from typing import Any

# Long enough that a browsing session does not repeat the preflight per file.
PREFLIGHT_CACHE_SECONDS = 3600


def artifact_cors_rules(origins: list[str]) -> list[dict[str, Any]]:
    """Read-only cross-origin access to presigned artifact URLs for `origins` (scheme://host[:port])."""
    if not origins or any(not o.startswith(("https://", "http://")) or o.endswith("/") for o in origins):
        raise ValueError(f"origins must be scheme://host[:port] without a trailing slash, got {origins!r}")
    return [
        {
            "ID": "mlflow-ui-presigned-downloads",
            "AllowedOrigins": list(origins),
            "AllowedMethods": ["GET", "HEAD"],
            "AllowedHeaders": ["*"],
            "ExposeHeaders": ["ETag", "Content-Length", "Content-Range", "Content-Type"],
            "MaxAgeSeconds": PREFLIGHT_CACHE_SECONDS,
        }
    ]
