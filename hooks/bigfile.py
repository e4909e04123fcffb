"""``BigFileHook``: an Airflow connection turned into fsspec storage options.

Connection types understood:

* ``aws`` -- login/password are the access key id and secret; extra may hold
  ``aws_session_token``, ``endpoint_url`` (S3-compatible stores, e.g. MinIO) and
  ``region_name``.
* ``google_cloud_platform`` -- extra ``key_path`` (a JSON key file), ``keyfile_dict`` (the key
  itself) and ``project``; neither key means application default credentials.
* ``fs`` -- the local filesystem; extra ``path`` is a base folder for relative paths.
* ``wasb`` and ``adls`` (Azure Blob Storage, ADLS Gen2) -- login is the account name (or
  host the account URL), password the account key; extra may hold ``connection_string``,
  ``shared_access_key``, ``sas_token``, ``tenant_id`` (then login/password are a service
  principal's client id and secret) and ``blob_endpoint`` (an ``http://`` endpoint such as
  the Azurite emulator's, whose account path follows the host). A key or a SAS lets the
  Azure target copy unchanged ranges server-side; other credentials get the stream commit.
* ``bigfile`` (and Airflow's ``generic``) -- the extra JSON is the fsspec storage options
  themselves (or holds them under ``"storage_options"``), for any fsspec backend.

``conn_id=None`` means no connection: default credentials (environment, instance profile)
and local paths as they are. Storage options carry secrets: they are never logged and the
hook's ``repr`` leaves them out.
"""

from __future__ import annotations

import json
import logging
import os
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

if TYPE_CHECKING:
    import fsspec
    from airflow.sdk import Connection

log = logging.getLogger(__name__)

#: connection type -> URL protocols it gives credentials for (``None``: any)
CONN_PROTOCOLS: dict[str, tuple[str, ...] | None] = {
    "aws": ("s3", "s3a"),
    "google_cloud_platform": ("gs", "gcs"),
    "fs": ("file", "local"),
    "wasb": ("az", "abfs", "abfss"),
    "adls": ("az", "abfs", "abfss"),
    "bigfile": None,
    "generic": None,
}

_SECRET_WORDS = ("secret", "password", "token", "key", "credential", "sas", "signature")


def _protocol(url: str) -> str:
    """The URL's protocol (``file`` for a plain path); the innermost one of a chained URL
    such as ``bigfile::s3://b/k`` is what needs credentials."""
    inner = url.rsplit("::", 1)[-1]
    if "://" in inner:
        return inner.split("://", 1)[0].lower()
    return "file"


def _extra(conn: Connection) -> dict[str, Any]:
    extra = conn.extra_dejson if hasattr(conn, "extra_dejson") else None
    if extra is None:
        raw = conn.extra or "{}"
        extra = json.loads(raw) if isinstance(raw, str) else dict(raw)
    return dict(extra or {})


def _pick(extra: dict[str, Any], *names: str) -> Any:
    """The first of ``names`` set in ``extra``, also under Airflow's old
    ``extra__<type>__<name>`` prefixes."""
    for name in names:
        if extra.get(name) not in (None, ""):
            return extra[name]
        for key, value in extra.items():
            if key.endswith("__" + name) and value not in (None, ""):
                return value
    return None


def _mask(value: Any) -> None:
    """Tell Airflow's secrets masker about a secret, where the masker is available."""
    if not value or not isinstance(value, str):
        return
    try:
        from airflow.sdk.log import mask_secret
    except ImportError:  # pragma: no cover - older task SDKs
        return
    mask_secret(value)


class BigFileHook(BaseHook):
    """Storage options and an fsspec filesystem for a URL, from an Airflow connection.

    :param conn_id: an Airflow connection of type ``aws``, ``google_cloud_platform``, ``fs``,
        ``wasb``, ``adls``, ``bigfile`` or ``generic``; ``None`` for no connection (default
        credentials).
    """

    conn_name_attr = "conn_id"
    default_conn_name = "bigfile_default"
    conn_type = "bigfile"
    hook_name = "BigFile"

    def __init__(self, conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.conn_id = conn_id

    def __repr__(self) -> str:
        return f"{type(self).__name__}(conn_id={self.conn_id!r})"

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden_fields": ["host", "schema", "port", "login", "password"],
            "relabeling": {"extra": "fsspec storage options (JSON)"},
            "placeholders": {"extra": json.dumps(
                {"anon": False, "key": "...", "secret": "...",
                 "client_kwargs": {"endpoint_url": "https://minio.example:9000"}})},
        }

    @cached_property
    def connection(self) -> Connection | None:
        """The Airflow connection, fetched once (``None`` without a ``conn_id``)."""
        if self.conn_id is None:
            return None
        return self.get_connection(self.conn_id)

    @property
    def connection_type(self) -> str | None:
        conn = self.connection
        return None if conn is None else (conn.conn_type or "generic")

    # ---------------------------------------------------------------- options

    def storage_options(self, url: str | None = None) -> dict[str, Any]:
        """fsspec storage options for ``url`` (or for the connection's store when ``url`` is
        ``None``). Raises ``ValueError`` when the connection cannot serve the URL's protocol."""
        conn = self.connection
        if conn is None or (url is not None and _protocol(url) in ("file", "local")):
            return {}  # local paths need no credentials
        conn_type = self.connection_type or "generic"
        builder = {
            "aws": self._aws_options,
            "google_cloud_platform": self._gcp_options,
            "fs": self._fs_options,
            "wasb": self._azure_options,
            "adls": self._azure_options,
        }.get(conn_type, self._generic_options)
        if conn_type not in CONN_PROTOCOLS:
            log.info("Connection %s has type %s; reading its extra as fsspec storage options",
                     self.conn_id, conn_type)
        protocols = CONN_PROTOCOLS.get(conn_type)
        if url is not None and protocols is not None and _protocol(url) not in protocols:
            raise ValueError(
                f"connection {self.conn_id!r} (type {conn_type}) gives credentials for "
                f"{'/'.join(p + '://' for p in protocols)} URLs, not for {url!r}")
        return builder(conn)

    def _aws_options(self, conn: Connection) -> dict[str, Any]:
        extra = _extra(conn)
        options: dict[str, Any] = {}
        key = conn.login or _pick(extra, "aws_access_key_id")
        secret = conn.password or _pick(extra, "aws_secret_access_key")
        token = _pick(extra, "aws_session_token")
        if key:
            options["key"] = key
        if secret:
            _mask(secret)
            options["secret"] = secret
        if token:
            _mask(token)
            options["token"] = token
        endpoint = _pick(extra, "endpoint_url", "host")
        if endpoint:
            options["endpoint_url"] = endpoint
        client_kwargs: dict[str, Any] = dict(extra.get("client_kwargs") or {})
        region = _pick(extra, "region_name")
        if region:
            client_kwargs["region_name"] = region
        if client_kwargs:
            options["client_kwargs"] = client_kwargs
        for name in ("config_kwargs", "s3_additional_kwargs", "anon", "requester_pays",
                     "version_aware"):
            if name in extra:
                options[name] = extra[name]
        return options

    def _gcp_options(self, conn: Connection) -> dict[str, Any]:
        extra = _extra(conn)
        options: dict[str, Any] = {}
        key_path = _pick(extra, "key_path")
        keyfile = _pick(extra, "keyfile_dict")
        if keyfile:
            token = json.loads(keyfile) if isinstance(keyfile, str) else dict(keyfile)
            _mask(token.get("private_key"))
            options["token"] = token
        elif key_path:
            options["token"] = key_path
        project = _pick(extra, "project")
        if project:
            options["project"] = project
        return options

    def _azure_options(self, conn: Connection) -> dict[str, Any]:
        """adlfs options from a ``wasb``/``adls`` connection (the fields Airflow's Azure
        provider reads)."""
        extra = _extra(conn)
        connection_string = _pick(extra, "connection_string")
        if connection_string:
            _mask(connection_string)
            return {"connection_string": connection_string}
        host = conn.host or ""
        account = _pick(extra, "account_name")
        if host.startswith("https://") and ".blob." in host:
            account = host.split("://", 1)[1].split(".", 1)[0]
        tenant = _pick(extra, "tenant_id")
        if tenant:
            _mask(conn.password)
            return {"account_name": account, "tenant_id": tenant, "client_id": conn.login,
                    "client_secret": conn.password}
        account = account or conn.login
        key = conn.password or _pick(extra, "shared_access_key")
        sas = _pick(extra, "sas_token")
        endpoint = _pick(extra, "blob_endpoint")
        if endpoint:  # an http endpoint (an emulator) needs a connection string
            parts = [f"DefaultEndpointsProtocol={endpoint.split('://', 1)[0]}",
                     f"AccountName={account}", f"BlobEndpoint={endpoint.rstrip('/')}"]
            parts += [f"AccountKey={key}"] if key else []
            parts += [f"SharedAccessSignature={sas.lstrip('?')}"] if sas and not key else []
            _mask(key)
            _mask(sas)
            return {"connection_string": ";".join(parts) + ";"}
        options: dict[str, Any] = {"account_name": account}
        if key:
            _mask(key)
            options["account_key"] = key
        elif sas:
            _mask(sas)
            options["sas_token"] = sas
        return options

    def _fs_options(self, conn: Connection) -> dict[str, Any]:
        return {}

    def _generic_options(self, conn: Connection) -> dict[str, Any]:
        extra = _extra(conn)
        options = extra.get("storage_options", extra)
        if not isinstance(options, dict):
            raise ValueError(f"connection {self.conn_id!r}: extra 'storage_options' must be "
                             f"a JSON object")
        for name, value in options.items():
            if any(word in name.lower() for word in _SECRET_WORDS):
                _mask(value)
        return dict(options)

    # ---------------------------------------------------------------- URLs

    def resolve_url(self, path: str) -> str:
        """``path`` with an ``fs`` connection's base folder put before a relative path."""
        conn = self.connection
        if conn is not None and self.connection_type == "fs" and "://" not in path \
                and not os.path.isabs(path):
            base = _pick(_extra(conn), "path")
            if base:
                return os.path.join(base, path)
        return path

    def get_fs(self, url: str) -> tuple[fsspec.AbstractFileSystem, str]:
        """The fsspec filesystem and the path within it for ``url``."""
        import fsspec

        url = self.resolve_url(url)
        fs, path = fsspec.core.url_to_fs(url, **self.storage_options(url))
        return fs, path

    def test_connection(self) -> tuple[bool, str]:
        try:
            self.storage_options()
        except Exception as exc:  # noqa: BLE001 - reported to the UI
            return False, str(exc)
        return True, "storage options built"
