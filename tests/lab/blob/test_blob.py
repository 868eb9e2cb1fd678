"""The toy Blob Storage driven by the official ``azure-storage-blob`` client over TLS."""

from __future__ import annotations

import base64
import functools
import hashlib
import os
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from azure.storage.blob import BlobServiceClient, ContainerClient, ContentSettings
from examples.lab.runtime import TlsFiles

from tokenguard.testing import LocalIssuer

from .._kit import (
    STORAGE,
    LabCredential,
    Mint,
    Principals,
    error_code,
    mint_valid,
    refused_naming_the_caller,
    refused_with_401,
    response_of,
    ssl_context,
    storage_client,
)
from ..conftest import WithoutToken, running_storage

ACCOUNT = "labstorage"
LIMIT = 256 * 1024  # the module's storage fixture refuses larger uploads
LISTING = "?restype=container&comp=list"
BLOCK = {"x-ms-blob-type": "BlockBlob"}


def _service(
    url: str, tls: TlsFiles, issuer: LocalIssuer, object_id: str, mint: Mint = mint_valid
) -> BlobServiceClient:
    return storage_client(f"{url}/{ACCOUNT}", tls, LabCredential(issuer, object_id, mint))


#: ``(object_id, mint=mint_valid)`` -> an SDK client of the module's storage account.
ServiceAs = Callable[..., BlobServiceClient]


@pytest.fixture
def service_as(storage_url: str, tls: TlsFiles, lab_issuer: LocalIssuer) -> ServiceAs:
    return functools.partial(_service, storage_url, tls, lab_issuer)


@pytest.fixture
def contributor(service_as: ServiceAs, principals: Principals) -> Iterator[BlobServiceClient]:
    with service_as(principals.storage_contributor) as service:
        yield service


@pytest.fixture
def own_storage(
    tmp_path: Path, tls: TlsFiles, lab_issuer: LocalIssuer, principals: Principals
) -> Iterator[BlobServiceClient]:
    """A storage of the test's own (its state under ``tmp_path``), as the contributor."""
    with (
        running_storage(lab_issuer, principals, tls, tmp_path) as url,
        _service(url, tls, lab_issuer, principals.storage_contributor) as service,
    ):
        yield service


@pytest.fixture
def container(contributor: BlobServiceClient) -> ContainerClient:
    return contributor.create_container(f"c-{uuid.uuid4().hex[:12]}")


def _bearer(issuer: LocalIssuer, object_id: str) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {mint_valid(issuer, STORAGE, object_id)}",
        "x-ms-version": "2026-10-06",
    }


@dataclass(frozen=True)
class Wire:
    """Plain HTTPS to the module's storage account, for what the SDK never sends."""

    https: httpx.Client
    account_url: str
    container: str
    issuer: LocalIssuer

    def request(
        self,
        method: str,
        path: str,
        caller: str,
        headers: Mapping[str, str] | None = None,
        **options: Any,
    ) -> httpx.Response:
        """``method`` on ``path`` below the account (``{c}`` stands for the test's
        container) with a token of ``caller`` (an object id) and ``headers``."""
        url = self.account_url + path.replace("{c}", self.container)
        headers = {**_bearer(self.issuer, caller), **(headers or {})}
        return self.https.request(method, url, headers=headers, **options)


@pytest.fixture
def wire(
    storage_url: str, container: ContainerClient, https: httpx.Client, lab_issuer: LocalIssuer
) -> Wire:
    return Wire(https, f"{storage_url}/{ACCOUNT}", container.container_name, lab_issuer)


# -- containers ----------------------------------------------------------------------


def test_create_list_and_delete_containers(own_storage: BlobServiceClient) -> None:
    service = own_storage
    for name in ("alpha", "beta", "gamma", "other"):
        service.create_container(name, metadata={"team": name})
    with pytest.raises(ResourceExistsError):
        service.create_container("alpha")
    listed = list(service.list_containers(name_starts_with="", include_metadata=True))
    assert [c.name for c in listed] == ["alpha", "beta", "gamma", "other"]
    assert listed[1].metadata == {"team": "beta"}
    pages = list(service.list_containers(results_per_page=3).by_page())
    assert [len(list(p)) for p in pages] == [3, 1]
    assert [c.name for c in service.list_containers(name_starts_with="g")] == ["gamma"]
    properties = service.get_container_client("beta").get_container_properties()
    assert properties.metadata == {"team": "beta"}
    assert properties.etag.startswith('"0x')
    service.delete_container("beta")
    with pytest.raises(ResourceNotFoundError):
        service.delete_container("beta")
    assert not service.get_container_client("beta").exists()
    assert [c.name for c in service.list_containers()] == ["alpha", "gamma", "other"]


def test_deleting_a_container_removes_its_blob_files(
    own_storage: BlobServiceClient, tmp_path: Path
) -> None:
    box = own_storage.create_container("box")
    for i in range(3):
        box.upload_blob(f"b{i}", os.urandom(100))
    assert len(os.listdir(tmp_path / "storage" / "blobs")) == 3
    own_storage.delete_container("box")
    assert os.listdir(tmp_path / "storage" / "blobs") == []


# -- upload and download ---------------------------------------------------------------


def test_upload_and_download_round_trip(container: ContainerClient) -> None:
    data = os.urandom(100_000)
    blob = container.get_blob_client("data/file.bin")
    result = blob.upload_blob(
        data,
        content_settings=ContentSettings(content_type="application/x-test", cache_control="no"),
        metadata={"origin": "test"},
    )
    assert result["content_md5"] == bytearray(hashlib.md5(data).digest())
    assert blob.download_blob().readall() == data
    properties = blob.get_blob_properties()
    assert properties.size == len(data)
    assert properties.etag == result["etag"]
    assert properties.blob_type == "BlockBlob"
    assert properties.content_settings.content_type == "application/x-test"
    assert properties.content_settings.cache_control == "no"
    assert properties.content_settings.content_md5 == bytearray(hashlib.md5(data).digest())
    assert properties.metadata == {"origin": "test"}
    assert properties.creation_time is not None


def test_ranged_download(container: ContainerClient) -> None:
    data = bytes(range(256)) * 40
    blob = container.upload_blob("ranged", data)
    assert blob.download_blob(offset=1000, length=500).readall() == data[1000:1500]
    assert blob.download_blob(offset=10_000).readall() == data[10_000:]
    # Ranges past the end are clipped, as in Azure.
    assert blob.download_blob(offset=10_200, length=1000).readall() == data[10_200:]
    # The SDK downloads in chunks with ranged GETs and checks every chunk's MD5.
    streamed = blob.download_blob(max_concurrency=1, validate_content=True)
    assert streamed.readall() == data


def test_ranged_download_on_the_wire(
    container: ContainerClient, wire: Wire, principals: Principals
) -> None:
    data = os.urandom(5000)
    container.upload_blob("wire", data)

    def get(headers: dict[str, str]) -> httpx.Response:
        return wire.request("GET", "/{c}/wire", principals.storage_reader, headers)

    partial = get({"x-ms-range": "bytes=100-199"})
    assert partial.status_code == 206
    assert partial.headers["content-range"] == "bytes 100-199/5000"
    assert partial.content == data[100:200]
    plain_range = get({"Range": "bytes=4990-"})
    assert plain_range.status_code == 206
    assert plain_range.content == data[4990:]
    whole = get({})
    assert whole.status_code == 200
    assert whole.headers["content-md5"] == base64.b64encode(hashlib.md5(data).digest()).decode()
    unsatisfiable = get({"x-ms-range": "bytes=5000-"})
    assert unsatisfiable.status_code == 416
    assert unsatisfiable.headers["content-range"] == "bytes */5000"
    assert unsatisfiable.headers["x-ms-error-code"] == "InvalidRange"


def test_empty_blob_downloads_through_the_416_retry(container: ContainerClient) -> None:
    blob = container.upload_blob("empty", b"")
    assert blob.download_blob().readall() == b""
    assert blob.get_blob_properties().size == 0


def test_overwrite_rules(container: ContainerClient) -> None:
    container.upload_blob("same", b"first")
    with pytest.raises(ResourceExistsError) as exists:
        container.upload_blob("same", b"second")  # If-None-Match: *
    assert error_code(exists.value) == "BlobAlreadyExists"
    assert container.download_blob("same").readall() == b"first"
    container.upload_blob("same", b"second", overwrite=True)
    assert container.download_blob("same").readall() == b"second"


def test_conditional_requests(container: ContainerClient) -> None:
    blob = container.upload_blob("cond", b"v1")
    etag = blob.get_blob_properties().etag
    blob.upload_blob(b"v2", overwrite=True, etag=etag, match_condition=_if_match())
    with pytest.raises(HttpResponseError) as stale:
        blob.upload_blob(b"v3", overwrite=True, etag=etag, match_condition=_if_match())
    assert stale.value.status_code == 412
    assert blob.download_blob().readall() == b"v2"


def _if_match() -> Any:
    from azure.core import MatchConditions

    return MatchConditions.IfNotModified


def test_list_blobs_with_prefix_paging_and_delimiter(container: ContainerClient) -> None:
    names = [f"logs/2024/{i:02}.txt" for i in range(7)] + ["logs/readme", "other/x", "top"]
    for name in names:
        container.upload_blob(name, name.encode(), metadata={"n": str(len(name))})
    flat = container.list_blobs(name_starts_with="logs/2024/", results_per_page=3)
    pages = [[b.name for b in page] for page in flat.by_page()]
    assert pages == [names[0:3], names[3:6], names[6:7]]
    everything = list(container.list_blobs(include=["metadata"]))
    assert [b.name for b in everything] == sorted(names)
    assert everything[0].size == len(names[0])
    assert everything[0].metadata == {"n": str(len(names[0]))}
    top = [item.name for item in container.walk_blobs(delimiter="/")]
    assert top == ["logs/", "other/", "top"]
    under_logs = [item.name for item in container.walk_blobs(name_starts_with="logs/")]
    assert under_logs == ["logs/2024/", "logs/readme"]


def test_delete_blob(container: ContainerClient) -> None:
    container.upload_blob("gone", b"x")
    container.delete_blob("gone")
    with pytest.raises(ResourceNotFoundError) as missing:
        container.download_blob("gone")
    assert error_code(missing.value) == "BlobNotFound"
    with pytest.raises(ResourceNotFoundError):
        container.delete_blob("gone")


def test_upload_over_the_limit_is_413(container: ContainerClient) -> None:
    with pytest.raises(HttpResponseError) as too_big:
        container.upload_blob("big", b"x" * (LIMIT + 1))
    assert too_big.value.status_code == 413
    assert error_code(too_big.value) == "RequestBodyTooLarge"
    assert not container.get_blob_client("big").exists()
    container.upload_blob("fits", b"x" * LIMIT)


def test_chunked_upload_over_the_limit_is_413(
    container: ContainerClient, wire: Wire, principals: Principals
) -> None:
    def body() -> Iterator[bytes]:  # no Content-Length: the limit is found while streaming
        for _ in range(LIMIT // 65536 + 2):
            yield b"y" * 65536

    response = wire.request(
        "PUT", "/{c}/chunked", principals.storage_contributor, BLOCK, content=body()
    )
    assert response.status_code == 413
    assert response.headers["x-ms-error-code"] == "RequestBodyTooLarge"
    assert not container.get_blob_client("chunked").exists()


def test_wrong_content_md5_is_refused(
    container: ContainerClient, wire: Wire, principals: Principals
) -> None:
    md5 = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    headers = {**BLOCK, "Content-MD5": md5}
    response = wire.request(
        "PUT", "/{c}/checked", principals.storage_contributor, headers, content=b"payload"
    )
    assert response.status_code == 400
    assert response.headers["x-ms-error-code"] == "Md5Mismatch"
    assert not container.get_blob_client("checked").exists()


# -- refusals ------------------------------------------------------------------------


def test_no_token_gets_the_storage_challenge(storage_url: str, without_token: WithoutToken) -> None:
    response = without_token(
        f"{storage_url}/{ACCOUNT}/?comp=list",
        'Bearer authorization_uri="{authority}/oauth2/authorize", '
        'resource_id="https://storage.azure.com"',
    )
    assert response.headers["x-ms-error-code"] == "NoAuthenticationInformation"
    assert "<Code>NoAuthenticationInformation</Code>" in response.text


def test_bad_tokens_are_refused_with_401(
    service_as: ServiceAs, principals: Principals, bad_mint: Mint
) -> None:
    with service_as(principals.storage_contributor, bad_mint) as service:
        response = refused_with_401(lambda: list(service.list_containers()))
    assert response.headers["x-ms-error-code"] == "InvalidAuthenticationInfo"
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_reader_reads_but_cannot_write(
    container: ContainerClient, service_as: ServiceAs, principals: Principals
) -> None:
    container.upload_blob("readable", b"content")
    with service_as(principals.storage_reader) as reader:
        mine = reader.get_container_client(container.container_name)
        assert mine.download_blob("readable").readall() == b"content"
        assert [b.name for b in mine.list_blobs()] == ["readable"]
        for attempt in (
            lambda: mine.upload_blob("new", b"x"),
            lambda: mine.delete_blob("readable"),
            lambda: reader.create_container(f"r-{uuid.uuid4().hex[:8]}"),
            lambda: reader.delete_container(container.container_name),
        ):
            with pytest.raises(HttpResponseError) as refused:
                attempt()
            assert refused.value.status_code == 403
            assert error_code(refused.value) == "AuthorizationPermissionMismatch"
            challenge = response_of(refused.value).headers["WWW-Authenticate"]
            assert 'error="insufficient_scope"' in challenge
    assert container.download_blob("readable").readall() == b"content"


def test_container_scoped_role_stops_at_its_container(
    contributor: BlobServiceClient, service_as: ServiceAs, principals: Principals
) -> None:
    if not contributor.get_container_client("scoped").exists():
        contributor.create_container("scoped")
    other = contributor.create_container(f"o-{uuid.uuid4().hex[:8]}")
    with service_as(principals.scoped_contributor) as scoped:
        inside = scoped.get_container_client("scoped")
        inside.upload_blob("mine", b"ok", overwrite=True)
        assert inside.download_blob("mine").readall() == b"ok"
        outside = scoped.get_container_client(other.container_name)
        for attempt in (
            lambda: outside.upload_blob("theirs", b"no"),
            lambda: list(outside.list_blobs()),
            lambda: list(scoped.list_containers()),  # listing is account scope
        ):
            with pytest.raises(HttpResponseError) as refused:
                attempt()
            assert refused.value.status_code == 403


def test_identity_without_a_role_is_forbidden(
    container: ContainerClient, service_as: ServiceAs, principals: Principals
) -> None:
    with service_as(principals.nobody) as service:
        box = service.get_container_client(container.container_name)
        refused_naming_the_caller(
            lambda hook: box.get_container_properties(raw_response_hook=hook), principals.nobody
        )


# -- bad input: 4xx, never 500 --------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "headers", "status", "code"),
    [
        ("PUT", "/Bad_Container?restype=container", {}, 400, "InvalidResourceName"),
        ("PUT", "/ab?restype=container", {}, 400, "InvalidResourceName"),
        ("PUT", "/a--b?restype=container", {}, 400, "InvalidResourceName"),
        ("GET", "/{c}", {}, 400, "InvalidQueryParameterValue"),
        ("GET", "/{c}" + LISTING + "&maxresults=0", {}, 400, "OutOfRangeQueryParameterValue"),
        ("GET", "/{c}" + LISTING + "&maxresults=x", {}, 400, "InvalidQueryParameterValue"),
        ("GET", "/{c}" + LISTING + "&maxresults=%C2%B2", {}, 400, "InvalidQueryParameterValue"),
        ("GET", "/{c}" + LISTING + "&maxresults=-5", {}, 400, "InvalidQueryParameterValue"),
        ("GET", "/{c}" + LISTING + "&marker=bogus", {}, 400, "InvalidQueryParameterValue"),
        ("GET", "/{c}?restype=container&comp=acl", {}, 400, "InvalidQueryParameterValue"),
        ("PUT", "/{c}/b?comp=block&blockid=AAAA", {}, 400, "InvalidQueryParameterValue"),
        ("PUT", "/{c}/b", {}, 400, "MissingRequiredHeader"),
        ("PUT", "/{c}/b", {"x-ms-blob-type": "PageBlob"}, 400, "InvalidHeaderValue"),
        ("PUT", "/{c}/b", {**BLOCK, "x-ms-meta-1x": "v"}, 400, "InvalidMetadata"),
        ("PUT", "/{c}/b", {**BLOCK, "Content-MD5": "%%%"}, 400, "InvalidHeaderValue"),
        ("PUT", "/{c}/b%01c", BLOCK, 400, "InvalidResourceName"),
        ("PUT", "/{c}/" + "n" * 1025, BLOCK, 400, "InvalidResourceName"),
        ("PUT", "/nosuchcontainer/b", BLOCK, 404, "ContainerNotFound"),
        ("GET", "/{c}/missing", {}, 404, "BlobNotFound"),
        ("GET", "/{c}/x", {"x-ms-range": "bytes=abc"}, 400, "InvalidHeaderValue"),
        ("GET", "/{c}/x", {"x-ms-range": "bytes=9-3"}, 400, "InvalidHeaderValue"),
        ("GET", "/{c}/x", {"Range": "bytes=0-1,5-6"}, 400, "InvalidHeaderValue"),
        ("GET", "/{c}/x", {"Range": "bytes=-5"}, 400, "InvalidHeaderValue"),
        (
            "GET",
            "/{c}/x",
            {"x-ms-range": "bytes=0-", "x-ms-range-get-content-md5": "true"},
            400,
            "InvalidHeaderValue",
        ),
        ("POST", "/{c}/x", {}, 405, "UnsupportedHttpVerb"),
    ],
)
def test_bad_requests_get_storage_errors(
    container: ContainerClient,
    wire: Wire,
    principals: Principals,
    method: str,
    path: str,
    headers: dict[str, str],
    status: int,
    code: str,
) -> None:
    container.upload_blob("x", b"0123456789")
    content = b"body" if method == "PUT" else None
    response = wire.request(method, path, principals.storage_contributor, headers, content=content)
    assert response.status_code == status, response.text
    assert response.headers["x-ms-error-code"] == code
    assert response.text.startswith('<?xml version="1.0" encoding="utf-8"?><Error><Code>')


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/{c}" + LISTING + "&prefix=a%01", id="control character in prefix"),
        pytest.param("/{c}" + LISTING + "&prefix=%1B%5B2J", id="escape sequence in prefix"),
        pytest.param("/{c}" + LISTING + "&prefix=%ED%A0%80", id="lone high surrogate prefix"),
        pytest.param("/{c}" + LISTING + "&prefix=x%ED%B0%80y", id="lone low surrogate prefix"),
        pytest.param("/{c}" + LISTING + "&prefix=%EF%BF%BE", id="U+FFFE in prefix"),
        pytest.param("/{c}" + LISTING + "&prefix=%FF", id="not UTF-8 prefix"),
        pytest.param("/{c}" + LISTING + "&prefix=" + "p" * 1025, id="prefix too long"),
        pytest.param("/{c}" + LISTING + "&delimiter=%00", id="NUL delimiter"),
        pytest.param("/{c}" + LISTING + "&delimiter=%ED%A0%80", id="lone surrogate delimiter"),
        pytest.param(
            "/{c}" + LISTING + "&prefix=ok&prefix=%08", id="the last of two prefixes counts"
        ),
        pytest.param("/?comp=list&prefix=%0C", id="control character in a container prefix"),
        pytest.param("/?comp=list&prefix=%ED%A0%80", id="lone surrogate container prefix"),
    ],
)
def test_listings_refuse_what_xml_cannot_carry(
    wire: Wire, principals: Principals, path: str
) -> None:
    response = wire.request("GET", path, principals.storage_reader)
    assert response.status_code == 400, response.text
    assert response.headers["x-ms-error-code"] == "InvalidQueryParameterValue"
    ET.fromstring(response.content)  # the error itself is well-formed XML


def test_listings_echo_unusual_but_valid_text_as_well_formed_xml(
    container: ContainerClient, wire: Wire, principals: Principals
) -> None:
    name = "caf\u00e9/\U0001f600 <&>\u00a7.txt"
    container.upload_blob(name, b"x")
    prefix, delimiter = "caf\u00e9/\U0001f600 <&>", "\u00a7"
    response = wire.request(
        "GET",
        "/{c}",
        principals.storage_reader,
        params={"restype": "container", "comp": "list", "prefix": prefix, "delimiter": delimiter},
    )
    assert response.status_code == 200, response.text
    root = ET.fromstring(response.content)
    assert (root.findtext("Prefix"), root.findtext("Delimiter")) == (prefix, delimiter)
    assert [e.text for e in root.iter("Name")] == [prefix + delimiter]  # one BlobPrefix


def test_account_name_is_checked_when_configured(
    tmp_path: Path, tls: TlsFiles, lab_issuer: LocalIssuer, principals: Principals
) -> None:
    with (
        running_storage(lab_issuer, principals, tls, tmp_path, account=ACCOUNT) as url,
        httpx.Client(verify=ssl_context(tls)) as https,  # closed before the server stops
    ):
        headers = _bearer(lab_issuer, principals.storage_contributor)
        assert https.get(f"{url}/{ACCOUNT}/?comp=list", headers=headers).status_code == 200
        wrong = https.get(f"{url}/otheraccount/?comp=list", headers=headers)
        assert wrong.status_code == 400
        assert wrong.headers["x-ms-error-code"] == "InvalidUri"


def test_response_headers_look_like_azure(
    container: ContainerClient, wire: Wire, principals: Principals
) -> None:
    container.upload_blob("h", b"abc")
    reader = principals.storage_reader
    response = wire.request("HEAD", "/{c}/h", reader, {"x-ms-client-request-id": "my-request"})
    assert response.status_code == 200
    assert response.headers["content-length"] == "3"
    assert response.headers["x-ms-blob-type"] == "BlockBlob"
    assert response.headers["x-ms-version"] == "2026-10-06"
    assert response.headers["x-ms-client-request-id"] == "my-request"
    assert response.headers["x-ms-request-id"]
    assert response.headers["etag"].startswith('"0x')
    assert response.headers["last-modified"].endswith(" GMT")
    assert f"oid={principals.storage_reader}" in response.headers["x-ms-lab-caller"]
    not_modified = wire.request(
        "GET", "/{c}/h", reader, {"If-None-Match": response.headers["etag"]}
    )
    assert not_modified.status_code == 304
