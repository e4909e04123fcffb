"""Shared fixtures for every layer: a moto S3 server and an Azurite blob server over HTTP on
127.0.0.1, fresh buckets and containers, a counting reverse proxy in front of each to measure
the bytes that cross the network, and the storage backends of the shared suites.

The suite runs on Linux, as root (the Safety tests act as a second user, uid 65534), with
every extra of ``make test`` installed: nothing is skipped, a missing requirement fails.

``s3``          -> :class:`S3Env` ``(storage_options, bucket)`` straight to moto
``s3_counted``  -> the same through :class:`CountingProxy`; ask for ``counting_proxy`` too
                   to read its counters (reset at the start of every test)
``azure``       -> :class:`AzureEnv` ``(storage_options, container)`` straight to Azurite
``azure_counted`` -> the same through ``azure_proxy`` (a :class:`CountingProxy`)

The proxy is :class:`tests.proxy.CountingProxy` (the benchmarks count S3 bytes with it too).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import uuid
from collections.abc import Iterator
from typing import Any, NamedTuple

import pytest

from tests.azurite import azure_connection_string, start_azurite
from tests.backends import Backend
from tests.proxy import CountingProxy

# Airflow writes its config under AIRFLOW_HOME at import: never into the user's ~/airflow.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="bigfile-airflow-home-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1"}
AWS_UNSET = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL",
             "AWS_ENDPOINT_URL_S3", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE")


class S3Env(NamedTuple):
    """A fresh bucket on the test S3 server and the s3fs options that reach it."""

    storage_options: dict[str, Any]
    bucket: str

    def url(self, key: str = "") -> str:
        """``s3://bucket/key``."""
        return f"s3://{self.bucket}/{key}"

    @property
    def fs(self) -> Any:
        """An ``s3fs.S3FileSystem`` with :attr:`storage_options`."""
        import s3fs

        return s3fs.S3FileSystem(**self.storage_options)


@pytest.fixture(scope="session")
def aws_env() -> Iterator[dict[str, str]]:
    """Fake credentials and the region in the environment (never in client_kwargs: moto
    then refuses bucket creation with InvalidLocationConstraint)."""
    with pytest.MonkeyPatch.context() as mp:
        for key in AWS_UNSET:
            mp.delenv(key, raising=False)
        for key, value in AWS_ENV.items():
            mp.setenv(key, value)
        yield dict(AWS_ENV)


@pytest.fixture(scope="session")
def s3_server(aws_env: dict[str, str]) -> Iterator[str]:
    """moto's S3 server on 127.0.0.1 and an ephemeral port; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)    # moto logs every request
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="session")
def _proxy_server(s3_server: str) -> Iterator[CountingProxy]:
    proxy = CountingProxy(s3_server).start()
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture
def counting_proxy(_proxy_server: CountingProxy) -> CountingProxy:
    """The counting proxy in front of the S3 server, counters reset for this test."""
    _proxy_server.reset()
    return _proxy_server


def _options(endpoint: str) -> dict[str, Any]:
    return {"endpoint_url": endpoint, "key": "testing", "secret": "testing"}


@pytest.fixture(scope="session")
def _s3_admin(s3_server: str) -> Any:
    """One long-lived client that creates and removes the test buckets (a new s3fs client
    is slow to make: botocore loads its service models)."""
    import s3fs

    return s3fs.S3FileSystem(skip_instance_cache=True, **_options(s3_server))


@contextlib.contextmanager
def _bucket(admin: Any, options: dict[str, Any]) -> Iterator[S3Env]:
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    bucket = f"bigfile-{uuid.uuid4().hex[:16]}"
    admin.mkdir(bucket)
    try:
        yield S3Env(options, bucket)
    finally:
        s3fs.S3FileSystem.clear_instance_cache()
        admin.invalidate_cache()
        with contextlib.suppress(Exception):
            admin.rm(bucket, recursive=True)


@pytest.fixture
def s3(s3_server: str, _s3_admin: Any) -> Iterator[S3Env]:
    """A fresh, empty bucket; yields ``S3Env(storage_options, bucket)``."""
    with _bucket(_s3_admin, _options(s3_server)) as env:
        yield env


@pytest.fixture
def s3_counted(_s3_admin: Any, counting_proxy: CountingProxy) -> Iterator[S3Env]:
    """Like ``s3`` but its ``storage_options`` go through ``counting_proxy``."""
    with _bucket(_s3_admin, _options(counting_proxy.endpoint_url)) as env:
        counting_proxy.reset()
        yield env


# -- Azure Blob Storage: Azurite, installed by `make azurite` into .azurite/ ---------------

class AzureEnv(NamedTuple):
    """A fresh container on the test Azurite server and the adlfs options that reach it."""

    storage_options: dict[str, Any]
    container: str

    def url(self, key: str = "") -> str:
        """``az://container/key``."""
        return f"az://{self.container}/{key}"

    def path(self, key: str) -> str:
        return f"{self.container}/{key}"

    @property
    def fs(self) -> Any:
        """An ``adlfs.AzureBlobFileSystem`` with :attr:`storage_options`."""
        import adlfs

        return adlfs.AzureBlobFileSystem(skip_instance_cache=True, **self.storage_options)

    def blob(self, key: str) -> Any:
        """A synchronous ``BlobClient`` for ``key`` (block lists, ETags)."""
        from azure.storage.blob import BlobClient

        return BlobClient.from_connection_string(self.storage_options["connection_string"],
                                                 self.container, key)


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Azurite's blob service on 127.0.0.1 and an ephemeral port, in memory; yields its
    endpoint URL."""
    try:
        proc, endpoint = start_azurite(tmp_path_factory.mktemp("azurite"))
    except RuntimeError as exc:
        pytest.fail(str(exc))
    try:
        yield endpoint
    finally:
        proc.kill()  # in memory: nothing to flush
        proc.wait()


@pytest.fixture(scope="session")
def _azure_proxy_server(azurite: str) -> Iterator[CountingProxy]:
    proxy = CountingProxy(azurite).start()
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture
def azure_proxy(_azure_proxy_server: CountingProxy) -> CountingProxy:
    """The counting proxy in front of Azurite, counters reset for this test."""
    _azure_proxy_server.reset()
    return _azure_proxy_server


@contextlib.contextmanager
def _container(endpoint: str, admin_endpoint: str) -> Iterator[AzureEnv]:
    from azure.storage.blob import BlobServiceClient

    admin = BlobServiceClient.from_connection_string(azure_connection_string(admin_endpoint))
    container = f"bigfile-{uuid.uuid4().hex[:16]}"
    admin.create_container(container)
    try:
        yield AzureEnv({"connection_string": azure_connection_string(endpoint)}, container)
    finally:
        with contextlib.suppress(Exception):
            admin.delete_container(container)


@pytest.fixture
def azure(azurite: str) -> Iterator[AzureEnv]:
    """A fresh, empty container; yields ``AzureEnv(storage_options, container)``."""
    with _container(azurite, azurite) as env:
        yield env


@pytest.fixture
def azure_counted(azurite: str, azure_proxy: CountingProxy) -> Iterator[AzureEnv]:
    """Like ``azure`` but its ``storage_options`` go through ``azure_proxy``."""
    with _container(azure_proxy.endpoint_url, azurite) as env:
        azure_proxy.reset()
        yield env


# -- backends for the suites every backend passes (tests/backends.py) -----------------------

@pytest.fixture
def local_backend(tmp_path: Any) -> Backend:
    """A folder on the local disk (small shards, so edits cross shard boundaries)."""
    from fsspec.implementations.local import LocalFileSystem

    root = tmp_path / "data"
    root.mkdir()
    return Backend("local", LocalFileSystem(), root.as_posix(), examples=60,
                   edit_options={"shard_size": 64, "workers": 2},
                   commit_modes=("inplace", "rewrite"))


@pytest.fixture
def memory_backend() -> Iterator[Backend]:
    """A fresh folder in fsspec's memory filesystem."""
    from fsspec.implementations.memory import MemoryFileSystem

    inner = MemoryFileSystem()
    root = f"/bigfile-test-{uuid.uuid4().hex[:12]}"
    inner.mkdir(root)
    yield Backend("memory", inner, root)
    with contextlib.suppress(FileNotFoundError):
        inner.rm(root, recursive=True)


@pytest.fixture
def s3_backend(s3: S3Env) -> Backend:
    """A fresh bucket on the moto S3 server. The sample is small: part sizing has its unit
    tests (tests/unit/test_parts.py) and test_s3.py moves copy parts of tens of MiB."""
    return Backend("s3", s3.fs, s3.bucket, options=dict(s3.storage_options), examples=12,
                   sample=1 << 20, commit_modes=("multipart",))


@pytest.fixture
def azure_backend(azure: AzureEnv) -> Backend:
    """A fresh container on the Azurite server."""
    return Backend("azure", azure.fs, azure.container, options=dict(azure.storage_options),
                   examples=12, sample=1 << 20, commit_modes=("blocklist",))


@pytest.fixture(params=["local", "memory", "s3", "azure"])
def any_backend(request: pytest.FixtureRequest) -> Backend:
    """Each backend in turn: a new backend joins every shared suite by its name here (and
    its ``<name>_backend`` fixture)."""
    return request.getfixturevalue(f"{request.param}_backend")
