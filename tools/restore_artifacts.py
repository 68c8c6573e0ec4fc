"""Put MLflow's artifacts back as they were at a point in time, from S3's object versions.

The artifact bucket is versioned: an overwritten or deleted object keeps its
old bytes as a noncurrent version for `artifact_version_retention_days`.
Restoring the database to a time T (Aurora point-in-time restore, or a
snapshot taken at T) brings back runs whose artifacts may since have been
overwritten or deleted; this brings those artifacts back to T too.

For every key under the prefix it takes the newest version written at or
before T. When that is not the current one, it copies it over the key (S3
copies the exact bytes; a new current version, nothing is lost, so the
restore itself can be undone the same way). Objects written after T are left
alone (the restored database does not know them), and so are keys that did
not exist at T.

    python -m tools.restore_artifacts --bucket <ArtifactBucketName output> --to-time 2026-05-04T09:30:00Z [--dry-run]
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from stacks import names


class RestoreError(Exception):
    """What stopped the restore; one line."""


@dataclass
class RestoreSummary:
    restored: list[str] = field(default_factory=list)
    unchanged: int = 0
    written_later: list[str] = field(default_factory=list)
    absent_at_time: list[str] = field(default_factory=list)

    def line(self, dry_run: bool = False) -> str:
        verb = "would restore" if dry_run else "restored"
        return (
            f"{verb} {len(self.restored)} objects to their version at that time; {self.unchanged} unchanged; "
            f"{len(self.written_later)} written later left in place; "
            f"{len(self.absent_at_time)} that did not exist then left alone"
        )


def parse_time(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise RestoreError(f"--to-time must be an ISO 8601 time like 2026-05-04T09:30:00Z, got {text!r}") from None
    if when.tzinfo is None:
        raise RestoreError(f"--to-time needs a time zone (e.g. a trailing Z for UTC), got {text!r}")
    return when


def _history(s3: Any, bucket: str, prefix: str) -> dict[str, list[dict[str, Any]]]:
    """Every key's versions and delete markers, newest first (S3's order for a key)."""
    history: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        entries = [*page.get("Versions", []), *({**m, "DeleteMarker": True} for m in page.get("DeleteMarkers", []))]
        for entry in entries:
            history[entry["Key"]].append(entry)
    for entries in history.values():
        # Latest first, then by time; S3's own listing order breaks ties within a second.
        entries.sort(key=lambda e: (not e["IsLatest"], -e["LastModified"].timestamp()))
    return history


def _same_bytes(latest: dict[str, Any], version: dict[str, Any]) -> bool:
    """The current object already holds that version's bytes (e.g. restored before)."""
    return not latest.get("DeleteMarker") and (latest["ETag"], latest["Size"]) == (version["ETag"], version["Size"])


def restore_to_time(
    s3: Any, bucket: str, when: datetime, *, prefix: str = names.ARTIFACT_PREFIX + "/", dry_run: bool = False
) -> RestoreSummary:
    """Make every key under `prefix` hold the bytes it held at `when`."""
    summary = RestoreSummary()
    for key, entries in sorted(_history(s3, bucket, prefix).items()):
        at_time = next((e for e in entries if e["LastModified"] <= when), None)
        if at_time is None:
            summary.written_later.append(key)
        elif at_time.get("DeleteMarker"):
            summary.absent_at_time.append(key)
        elif at_time["IsLatest"] or _same_bytes(entries[0], at_time):
            summary.unchanged += 1
        else:
            summary.restored.append(key)
            if not dry_run:
                # Managed copy: multipart for objects over 5 GB.
                s3.copy({"Bucket": bucket, "Key": key, "VersionId": at_time["VersionId"]}, bucket, key)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.restore_artifacts", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--bucket", required=True, help=f"the artifact bucket (MLflowVpcStack output {names.OUTPUT_ARTIFACT_BUCKET})"
    )
    parser.add_argument(
        "--to-time", required=True, help="ISO 8601 with a time zone, the time the database was restored to"
    )
    parser.add_argument(
        "--prefix", default=names.ARTIFACT_PREFIX + "/", help="only keys under this prefix (default: %(default)s)"
    )
    parser.add_argument("--dry-run", action="store_true", help="list what would change, change nothing")
    args = parser.parse_args(argv)
    try:
        when = parse_time(args.to_time)
        from tools.aws_account import cdk_session

        s3 = cdk_session().client("s3")
        summary = restore_to_time(s3, args.bucket, when, prefix=args.prefix, dry_run=args.dry_run)
    except RestoreError as error:
        print(f"restore artifacts: {error}", file=sys.stderr)
        return 2
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "error")
        print(
            f"restore artifacts: S3 refused ({code}) on bucket {args.bucket}: check its name and your access",
            file=sys.stderr,
        )
        return 1
    except BotoCoreError as error:
        print(f"restore artifacts: cannot reach S3 ({error})", file=sys.stderr)
        return 1
    for key in summary.restored:
        print(("would restore " if args.dry_run else "restored ") + key)
    print(summary.line(args.dry_run) + f" (as of {when.astimezone(timezone.utc).isoformat()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
