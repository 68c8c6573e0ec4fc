"""shared mode: a client with no AWS credentials moves 200 MB artifacts and models through MLflow."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from localrun.services import MotoServer
from localrun.stack import MlflowStack
from tests.integration import big_transfers
from tests.integration.mlflow_users import Account

pytestmark = [pytest.mark.integration]


@pytest.fixture(scope="module")
def transfer(
    mlflow_stack: MlflowStack, big_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> big_transfers.Transfer:
    account = Account(mlflow_stack.username, mlflow_stack.password)
    return big_transfers.run_client(mlflow_stack, account, big_file, tmp_path_factory.mktemp("client"))


def test_artifact_and_model_come_back_byte_exact(transfer: big_transfers.Transfer, big_file: Path) -> None:
    big_transfers.assert_round_trip(transfer, hashlib.sha256(big_file.read_bytes()).hexdigest())


def test_the_bytes_are_in_the_bucket(
    transfer: big_transfers.Transfer, mlflow_stack: MlflowStack, moto_server: MotoServer
) -> None:
    big_transfers.assert_in_bucket(transfer, mlflow_stack, moto_server, big_transfers.BIG_FILE_BYTES)


def test_none_of_them_passed_through_nginx(transfer: big_transfers.Transfer) -> None:
    big_transfers.assert_not_through_nginx(transfer, big_transfers.BIG_FILE_BYTES)


def test_presigned_urls_point_at_the_bucket(transfer: big_transfers.Transfer, mlflow_stack: MlflowStack) -> None:
    big_transfers.assert_presigned_urls_point_at_the_bucket(transfer, mlflow_stack)
