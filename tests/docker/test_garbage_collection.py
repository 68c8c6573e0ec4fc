"""garbage_collection.py's --apply stands in for MLflow's mlflow-artifacts resolution only on the
MLflow source that was reviewed; on any other it deletes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.docker.image_modules import image_module


def test_apply_refuses_on_an_unreviewed_mlflow(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    with image_module("garbage_collection") as gc:
        moved = {**gc.REVIEWED, "mlflow.cli": {"_gc_tracking_resources": "0" * 64}}
        monkeypatch.setattr(gc, "REVIEWED", moved)
        # No database behind this URI: a refusal returns before anything connects.
        code = gc.main(["--apply"], "postgresql+psycopg2://127.0.0.1:1/none", "s3://bucket/prefix", {})
    assert code == 70
    assert "refusing --apply: MLflow's mlflow.cli:_gc_tracking_resources changed" in capsys.readouterr().out


def test_mlflow_artifacts_uris_resolve_under_the_destination() -> None:
    with image_module("garbage_collection") as gc:
        assert gc.resolve("mlflow-artifacts:/3/abc/artifacts", "s3://b/p/") == "s3://b/p/3/abc/artifacts"
        assert gc.resolve("s3://other/x", "s3://b/p") == "s3://other/x"


def test_deleting_a_location_spares_the_version_sources_inside_it(tmp_path: Path) -> None:
    from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository

    run = tmp_path / "run"
    for name in ("big.bin", "model/MLmodel", "packaged/weights.txt", "packaged-not/x", "nested/keep/a", "nested/b"):
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_text(name)
    keep = frozenset({f"{run.as_uri()}/packaged", f"{run.as_uri()}/nested/keep"})
    with image_module("garbage_collection") as gc:
        gc.KeptSourcesRepository(LocalArtifactRepository(run.as_uri()), run.as_uri(), keep).delete_artifacts()
    left = sorted(str(path.relative_to(run)) for path in run.rglob("*") if path.is_file())
    assert left == ["nested/keep/a", "packaged/weights.txt"]


def test_only_this_servers_artifacts_resolve() -> None:
    from mlflow.exceptions import MlflowException

    with image_module("garbage_collection") as gc:
        repository = gc.kept_sources_repository("s3://bucket/prefix", ())
        for uri in ("mlflow-artifacts://elsewhere:5000/1/abc", "mlflow-artifacts:/1/../../other"):
            with pytest.raises(MlflowException, match="only this server's artifacts"):
                repository(uri)
