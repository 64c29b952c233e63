"""One S3/EFS transfer step of the DAG, in a fresh engine interpreter, against a running S3 endpoint.

The million-record benchmark (bench_million.py) runs each step as its own child so each peak RSS
is that step's own. Steps:
- `seed`:      the compactor's publish of the source: every file uploaded (S3SnapshotStore.upload);
- `download`:  resolve_source's download of that version into staging, checked against its manifest;
- `publish`:   the publish step's upload of the upgraded database with the source as `previous`
               (unchanged files copied inside S3), manifest last, every object's checksum verified;
- `efs`:       the publish step's EFS copy (unchanged files from the previous version's directory);
- `naive`:     what publish did before issue 16, for comparison: upload_file per file, one at a time.
Usage: transfer_run.py STEP REQUEST.json ANSWER.json
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from chroma_migrate.snapshots.efs_store import EfsSnapshotStore
from chroma_migrate.snapshots.layout import SnapshotLayout
from chroma_migrate.snapshots.manifest import snapshot_files
from chroma_migrate.snapshots.s3_store import S3SnapshotStore
from chroma_migrate.snapshots.transfers import POOL_CONNECTIONS


def store_for(request: dict[str, Any]) -> S3SnapshotStore:
    client = boto3.client("s3", endpoint_url=request["endpoint"], region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing",
                          config=Config(max_pool_connections=POOL_CONNECTIONS))
    return S3SnapshotStore(client, layout_for(request))


def layout_for(request: dict[str, Any]) -> SnapshotLayout:
    return SnapshotLayout(bucket=request["bucket"], collection="bench", efs_root=Path(request["efs_root"]))


def run(step: str, request: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    if step == "seed":
        store = store_for(request)
        store.client.create_bucket(Bucket=request["bucket"])
        _, report = store.upload_changed(Path(request["source"]), request["source_version"], {"seeded_by": "bench"})
        store.write_pointer(request["source_version"])
        detail = report.to_dict()
    elif step == "download":
        manifest = store_for(request).download(request["source_version"], Path(request["staging"]))
        detail = {"files": len(manifest["files"]), "bytes": sum(e["size"] for e in manifest["files"].values())}
    elif step == "publish":
        _, report = store_for(request).upload_changed(Path(request["target"]), request["new_version"],
                                                      {"run_key": "bench"}, previous=request["source_version"])
        detail = report.to_dict()
    elif step == "efs":
        efs = EfsSnapshotStore(layout_for(request))
        efs.materialize(Path(request["staging"]), request["source_version"])  # the live working copy, untimed
        efs.switch_pointer(request["source_version"])
        started = time.perf_counter()
        _, report = efs.materialize_changed(Path(request["target"]), request["new_version"],
                                            previous=request["source_version"])
        detail = report.to_dict()
    elif step == "naive":
        store = store_for(request)
        prefix = store.layout.version_prefix(request["naive_version"])
        files = snapshot_files(Path(request["target"]))
        for relative, path in files.items():
            store.client.upload_file(str(path), store.bucket, prefix + relative)
        detail = {"uploaded_files": len(files), "uploaded_bytes": sum(p.stat().st_size for p in files.values())}
    else:
        raise SystemExit(f"unknown step {step!r}")
    return {"ok": True, "seconds": round(time.perf_counter() - started, 3), **detail}


def main(step: str, request_path: str, answer_path: str) -> int:
    answer = run(step, json.loads(Path(request_path).read_text()))
    Path(answer_path).write_text(json.dumps(answer))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:4]))
