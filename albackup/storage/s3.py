"""Storage in an S3 bucket (AWS or any S3-compatible server) below an optional key prefix.

Uploads: a file up to ``multipart_threshold`` goes up in one PutObject, a larger one as a multipart
upload of ``part_size`` parts (raised so that no upload needs more than 10,000 parts), one part in
memory at a time. Every request carries an ``x-amz-checksum-sha256`` of its body, so the server
verifies each part as it receives it; the checksum the server reports back (per part, and the
composite one of a multipart object) is compared with the one computed locally. The SHA-256 of the
whole file is computed locally while reading and stored as metadata ``x-amz-meta-sha256``. After the
upload a HeadObject checks the stored size, metadata and checksum. A failed multipart upload is
aborted, and an object that fails the final check is deleted: either the verified object is there,
or nothing is.

Requests are retried by botocore's "standard" retry mode (``max_attempts`` in all). Every error is a
StorageError naming the bucket and key and the S3 error code, never a credential.
"""
from __future__ import annotations

import base64
import builtins
import hashlib
import io
import math
import os
import re
import threading
from dataclasses import fields
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator

from .. import __version__
from ..errors import ConfigError, StorageError
from .base import (COPY_BUFFER, MiB, S3_MAX_OBJECT, S3_MAX_PART, S3_MAX_PARTS, ObjectInfo, Storage,
                   StorageOptions, VerifyingReader, check_key, check_prefix, check_sha256_arg, dir_prefix,
                   storage_error)
from ..secrets import mask_secrets
from .urls import s3_url

#: what an S3 error code means, for messages
_HINTS = {
    "NoSuchBucket": "the bucket does not exist",
    "NoSuchKey": "no such object",
    "NotFound": "no such object",
    "AccessDenied": "access denied: the credentials lack permission for this",
    "AllAccessDisabled": "all access to this bucket is disabled",
    "InvalidAccessKeyId": "the access key ID is not known to the server",
    "SignatureDoesNotMatch": "the signature does not match: wrong secret access key",
    "ExpiredToken": "the session token has expired",
    "InvalidToken": "the session token is invalid",
    "TokenRefreshRequired": "the session token must be refreshed",
    "RequestTimeTooSkewed": "this machine's clock is too far off the server's",
    "BadDigest": "the server rejected the data: its checksum does not match",
    "InvalidDigest": "the server rejected the checksum sent with the data",
    "XAmzContentSHA256Mismatch": "the server rejected the data: its checksum does not match",
    "XAmzContentChecksumMismatch": "the server rejected the data: its checksum does not match",
    "NoSuchUpload": "the multipart upload no longer exists",
    "InvalidPart": "the server lost or rejected a part of the upload",
    "EntityTooLarge": "the object is too large for the server",
    "EntityTooSmall": "a part is smaller than the server's minimum part size",
    "InvalidBucketName": "the bucket name is not valid",
    "PermanentRedirect": "the bucket is in another region or needs another endpoint",
    "AuthorizationHeaderMalformed": "the request was signed for the wrong region",
    "InvalidStorageClass": "the storage class is not valid for this server",
    "SlowDown": "the server asks to slow down (retries exhausted)",
    "ServiceUnavailable": "the service is unavailable (retries exhausted)",
    "InternalError": "the server failed (retries exhausted)",
    "KMS.DisabledException": "the KMS key is disabled",
    "KMS.NotFoundException": "the KMS key does not exist",
    "400": "HTTP 400 Bad Request",
    "403": "HTTP 403 Forbidden: access denied or wrong credentials",
    "404": "not found",
    "301": "the bucket is in another region or needs another endpoint",
}
_CHECKSUM_CODES = {"BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch", "XAmzContentChecksumMismatch"}


def part_size_for(size: int, part_size: int) -> int:
    """The part size for a file of ``size`` bytes: ``part_size`` unless that needs more than 10,000
    parts, then the smallest whole number of MiB that fits."""
    if size > S3_MAX_OBJECT:
        raise storage_error(f"{size} bytes is larger than the 5 TiB an S3 object can hold")
    if math.ceil(size / part_size) <= S3_MAX_PARTS:
        return part_size
    ps = math.ceil(size / S3_MAX_PARTS / MiB) * MiB
    return min(ps, S3_MAX_PART)


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def _strip_parts_suffix(checksum: str) -> str:
    return re.sub(r"-\d+$", "", checksum)


_LOADER: Any = None
#: one client per distinct set of options in a process (clients are thread-safe; making one costs ~30 ms)
_CLIENTS: dict[tuple[Any, ...], Any] = {}
_CLIENTS_LOCK = threading.Lock()


def _botocore_session() -> Any:
    """A new botocore session that shares one data loader: botocore's service models are parsed
    once per process instead of once per client (150 ms each)."""
    global _LOADER
    import botocore.loaders
    import botocore.session

    if _LOADER is None:
        _LOADER = botocore.loaders.create_loader()
    bs = botocore.session.get_session()
    bs.register_component("data_loader", _LOADER)
    return bs


class S3Storage(Storage):
    def __init__(self, bucket: str, prefix: str = "", options: StorageOptions | None = None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        if self.prefix:
            check_prefix(self.prefix + "/")
        self.options = options or StorageOptions()
        self.options.validate()
        self.url = s3_url(bucket, self.prefix)
        self._client_obj: Any = None
        self._secrets = [s for s in (self.options.secret_access_key, self.options.session_token) if s]

    # ------------------------------------------------------------ client
    @property
    def client(self) -> Any:
        if self._client_obj is None:
            key = tuple(getattr(self.options, f.name) for f in fields(self.options))
            with _CLIENTS_LOCK:
                cached = _CLIENTS.get(key)
                if cached is None:
                    cached = _CLIENTS[key] = self._make_client()
            self._client_obj = cached
        return self._client_obj

    def _make_client(self) -> Any:
        import boto3
        import botocore.exceptions as bce
        from botocore.config import Config

        o = self.options
        style = o.addressing_style or ("path" if o.endpoint_url else "auto")
        cfg: dict[str, Any] = dict(
            retries={"mode": "standard", "total_max_attempts": o.max_attempts},
            connect_timeout=o.connect_timeout,
            read_timeout=o.read_timeout,
            s3={"addressing_style": style},
            signature_version="s3v4",
            user_agent_extra=f"albackup/{__version__}",
        )
        try:
            # checksums only where asked for (we send our own SHA-256): S3-compatible servers that
            # do not know botocore's default CRC trailers keep working
            config = Config(**cfg, request_checksum_calculation="when_required",
                            response_checksum_validation="when_required")
        except TypeError:  # botocore older than 1.36
            config = Config(**cfg)
        try:
            session = boto3.session.Session(
                aws_access_key_id=o.access_key_id, aws_secret_access_key=o.secret_access_key,
                aws_session_token=o.session_token, profile_name=o.profile, botocore_session=_botocore_session())
            region = o.region or session.region_name or ("us-east-1" if o.endpoint_url else None)
            return session.client("s3", region_name=region, endpoint_url=o.endpoint_url, config=config)
        except bce.ProfileNotFound:
            name = o.profile or os.environ.get("AWS_PROFILE") or os.environ.get("AWS_DEFAULT_PROFILE")
            raise ConfigError(f"storage options: AWS profile {name!r} not found") from None
        except (bce.BotoCoreError, ValueError) as e:
            raise ConfigError(f"storage options for {self.url}: {self._scrub(str(e))}") from None

    def close(self) -> None:
        self._client_obj = None   # the client is shared per process (see _CLIENTS): not closed here

    # ------------------------------------------------------------ keys and errors
    def _full(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _full_prefix(self, prefix: str) -> str:
        if not self.prefix:
            return prefix
        return f"{self.prefix}/{prefix}"

    def _rel(self, full: str) -> str:
        return full[len(self.prefix) + 1:] if self.prefix else full

    def _scrub(self, text: str) -> str:
        return " ".join(mask_secrets(text, self._secrets).split())

    def _error(self, what: str, key: str, exc: BaseException) -> StorageError:
        """One-line StorageError for a failed request: location, S3 error code, meaning."""
        import botocore.exceptions as bce

        where = self.where(key)
        code: str | None = None
        if isinstance(exc, bce.ClientError):
            err = exc.response.get("Error", {}) or {}
            code = str(err.get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or "?")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            hint = _HINTS.get(code, "")
            if not hint and code.isdigit():
                hint = f"HTTP {code}"
            if code == "NoSuchBucket":
                hint = f"the bucket {self.bucket!r} does not exist"
            desc = f"{code}" + (f" (HTTP {status})" if status and not code.isdigit() else "") + (f": {hint}" if hint else "")
        elif isinstance(exc, bce.EndpointConnectionError):
            code = "ConnectionError"
            desc = f"cannot connect to the server at {self._endpoint()}"
        elif isinstance(exc, bce.ConnectTimeoutError):
            code = "ConnectTimeout"
            desc = f"timed out connecting to {self._endpoint()}"
        elif isinstance(exc, bce.ReadTimeoutError):
            code = "ReadTimeout"
            desc = f"timed out waiting for {self._endpoint()}"
        elif isinstance(exc, bce.ConnectionClosedError):
            code = "ConnectionClosed"
            desc = f"{self._endpoint()} closed the connection"
        elif isinstance(exc, (bce.ResponseStreamingError, bce.IncompleteReadError)):
            code = "ReadError"
            desc = "the connection broke while reading the object"
        elif isinstance(exc, bce.NoCredentialsError):
            code = "NoCredentials"
            desc = ("no credentials found: set access_key_id and secret_access_key in the storage options, "
                    "or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or an AWS profile")
        elif isinstance(exc, bce.PartialCredentialsError):
            code = "PartialCredentials"
            desc = "incomplete credentials (an access key ID without its secret, or the reverse)"
        elif isinstance(exc, bce.SSLError):
            code = "SSLError"
            desc = f"TLS failed with {self._endpoint()}"
        elif isinstance(exc, bce.FlexibleChecksumError):
            code = "ChecksumMismatch"
            desc = "the data received does not match the checksum the server stored"
        elif isinstance(exc, bce.BotoCoreError):
            code = type(exc).__name__
            desc = f"{code}: {self._scrub(str(exc))}"
        else:
            code = type(exc).__name__
            desc = f"{code}: {self._scrub(str(exc))}"
        not_found = code in ("NoSuchKey", "NotFound", "404")
        return storage_error(self._scrub(f"cannot {what} {where}: {desc}"), code=code, not_found=not_found)

    def _endpoint(self) -> str:
        if self.options.endpoint_url:
            return mask_secrets(self.options.endpoint_url)
        try:
            return str(self.client.meta.endpoint_url)
        except Exception:
            return "S3"

    def _call(self, what: str, key: str, fn: Callable[..., Any], **kw: Any) -> Any:
        import botocore.exceptions as bce

        try:
            return fn(**kw)
        except (bce.ClientError, bce.BotoCoreError) as e:
            if isinstance(e, bce.ClientError) and self._status(e) in (400, 403) and not self._body_code(e):
                raise self._diagnose(what, key, e) from e
            raise self._error(what, key, e) from e

    @staticmethod
    def _status(e: Any) -> int | None:
        return e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")

    @staticmethod
    def _body_code(e: Any) -> bool:
        code = str(e.response.get("Error", {}).get("Code") or "")
        return bool(code) and not code.isdigit()

    def _diagnose(self, what: str, key: str, e: Exception) -> StorageError:
        """A HEAD request's error has no body, so no S3 error code: ask again with a request that
        gets one (a one-key listing) to tell AccessDenied from InvalidAccessKeyId and others."""
        import botocore.exceptions as bce

        try:
            self.client.list_objects_v2(Bucket=self.bucket, Prefix=self._full_prefix(""), MaxKeys=1)
        except (bce.ClientError, bce.BotoCoreError) as e2:
            if isinstance(e2, bce.ClientError) and self._body_code(e2):
                return self._error(what, key, e2)
        return self._error(what, key, e)

    def _write_args(self) -> dict[str, Any]:
        o = self.options
        kw: dict[str, Any] = {}
        if o.server_side_encryption:
            kw["ServerSideEncryption"] = o.server_side_encryption
        if o.kms_key_id:
            kw["SSEKMSKeyId"] = o.kms_key_id
        if o.storage_class:
            kw["StorageClass"] = o.storage_class
        return kw

    def _request_checksum(self, data: bytes) -> str:
        """The x-amz-checksum-sha256 value sent with a request body (base64 SHA-256)."""
        return _b64(hashlib.sha256(data).digest())

    # ------------------------------------------------------------ writing
    def put_bytes(self, key: str, data: bytes) -> ObjectInfo:
        full = self._full(key)
        data = bytes(data)
        return self._put_single(key, full, data, hashlib.sha256(data).hexdigest())

    def put_file(self, key: str, src: Path, *, sha256: str | None = None) -> ObjectInfo:
        full = self._full(key)
        expect = check_sha256_arg(sha256)
        src = Path(src)
        try:
            size = src.stat().st_size
            if not src.is_file():
                raise storage_error(f"cannot upload {self.where(key)}: {src} is not a regular file")
        except OSError as e:
            raise storage_error(f"cannot upload {self.where(key)}: cannot read local file {src}: "
                                f"{e.strerror or e}") from e
        if size <= self.options.threshold:
            data = self._read_local(key, src, size)
            sha = hashlib.sha256(data).hexdigest()
            if expect is not None and sha != expect:
                raise storage_error(f"cannot upload {self.where(key)}: local file {src} has SHA-256 {sha}, "
                                    f"not the expected {expect}; nothing uploaded", code="ChecksumMismatch")
            return self._put_single(key, full, data, sha)
        return self._put_multipart(key, full, src, size, expect)

    def _read_local(self, key: str, src: Path, size: int) -> bytes:
        try:
            with open(src, "rb") as f:
                data = f.read(size + 1)
        except OSError as e:
            raise storage_error(f"cannot upload {self.where(key)}: cannot read local file {src}: "
                                f"{e.strerror or e}") from e
        if len(data) != size:
            raise storage_error(f"cannot upload {self.where(key)}: local file {src} changed while it was "
                                f"read ({len(data)} bytes, {size} expected); nothing uploaded")
        return data

    def _put_single(self, key: str, full: str, data: bytes, sha: str) -> ObjectInfo:
        sent = self._request_checksum(data)
        r = self._call("upload", key, self.client.put_object, Bucket=self.bucket, Key=full, Body=data,
                       ChecksumSHA256=sent, Metadata={"sha256": sha}, **self._write_args())
        reported = r.get("ChecksumSHA256")
        local = _b64(hashlib.sha256(data).digest())
        if reported and _strip_parts_suffix(reported) != local:
            self._remove_bad(key, full)
            raise storage_error(f"cannot upload {self.where(key)}: the server stored checksum {reported}, "
                                f"not {local}; the object was removed", code="ChecksumMismatch")
        return self._verify_stored(key, full, len(data), sha, checksum=local, checked=bool(reported),
                                   etag=hashlib.md5(data, usedforsecurity=False).hexdigest())

    def _put_multipart(self, key: str, full: str, src: Path, size: int, expect: str | None) -> ObjectInfo:
        ps = part_size_for(size, self.options.part_size)
        if expect is None:
            # the SHA-256 goes into the metadata, which is set when the upload starts
            try:
                from .base import file_sha256

                meta_sha = file_sha256(src)
            except OSError as e:
                raise storage_error(f"cannot upload {self.where(key)}: cannot read local file {src}: "
                                    f"{e.strerror or e}") from e
        else:
            meta_sha = expect
        try:
            f = open(src, "rb")
        except OSError as e:
            raise storage_error(f"cannot upload {self.where(key)}: cannot read local file {src}: "
                                f"{e.strerror or e}") from e
        with f:
            r = self._call("start the upload of", key, self.client.create_multipart_upload, Bucket=self.bucket,
                           Key=full, ChecksumAlgorithm="SHA256", Metadata={"sha256": meta_sha},
                           **self._write_args())
            upload_id = r["UploadId"]
            try:
                whole = hashlib.sha256()
                digests: list[bytes] = []
                md5s: list[bytes] = []
                parts: list[dict[str, Any]] = []
                n = 0
                reported_all = True
                while True:
                    try:
                        data = f.read(ps)
                    except OSError as e:
                        raise storage_error(f"cannot upload {self.where(key)}: cannot read local file {src}: "
                                            f"{e.strerror or e}") from e
                    if not data:
                        break
                    n += len(data)
                    whole.update(data)
                    digest = hashlib.sha256(data).digest()
                    digests.append(digest)
                    md5s.append(hashlib.md5(data, usedforsecurity=False).digest())
                    number = len(parts) + 1
                    sent = self._request_checksum(data)
                    pr = self._call(f"upload part {number} of", key, self.client.upload_part, Bucket=self.bucket,
                                    Key=full, UploadId=upload_id, PartNumber=number, Body=data,
                                    ChecksumSHA256=sent)
                    del data
                    got = pr.get("ChecksumSHA256")
                    if got is None:
                        reported_all = False
                    elif got != _b64(digest):
                        raise storage_error(f"cannot upload {self.where(key)}: the server stored checksum {got} "
                                            f"for part {number}, not {_b64(digest)}", code="ChecksumMismatch")
                    parts.append({"PartNumber": number, "ETag": pr["ETag"], "ChecksumSHA256": sent})
                    if number > S3_MAX_PARTS:
                        raise storage_error(f"cannot upload {self.where(key)}: local file {src} grew past "
                                            f"{S3_MAX_PARTS} parts while it was read")
                sha = whole.hexdigest()
                if n != size:
                    raise storage_error(f"cannot upload {self.where(key)}: local file {src} changed while it was "
                                        f"read ({n} bytes, {size} expected)")
                if sha != meta_sha:
                    what = "the expected" if expect is not None else "the SHA-256 computed before the upload,"
                    raise storage_error(f"cannot upload {self.where(key)}: local file {src} has SHA-256 {sha}, "
                                        f"not {what} {meta_sha}", code="ChecksumMismatch")
                composite = _b64(hashlib.sha256(b"".join(digests)).digest())
                c = self._call("complete the upload of", key, self.client.complete_multipart_upload,
                               Bucket=self.bucket, Key=full, UploadId=upload_id, MultipartUpload={"Parts": parts})
            except BaseException as e:
                note = self._abort(full, upload_id)
                if isinstance(e, StorageError):
                    raise storage_error(f"{e.message} (multipart upload {note})",
                                        code=getattr(e, "code", None)) from e
                raise
        reported = c.get("ChecksumSHA256")
        if reported and _strip_parts_suffix(reported) != composite:
            self._remove_bad(key, full)
            raise storage_error(f"cannot upload {self.where(key)}: the server stored composite checksum "
                                f"{reported}, not {composite}; the object was removed", code="ChecksumMismatch")
        etag = hashlib.md5(b"".join(md5s), usedforsecurity=False).hexdigest() + f"-{len(md5s)}"
        return self._verify_stored(key, full, size, meta_sha, checksum=composite,
                                   checked=bool(reported) or reported_all, etag=etag)

    def _abort(self, full: str, upload_id: str) -> str:
        import botocore.exceptions as bce

        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=full, UploadId=upload_id)
            return "aborted"
        except (bce.ClientError, bce.BotoCoreError) as e:
            code = e.response.get("Error", {}).get("Code") if isinstance(e, bce.ClientError) else type(e).__name__
            return f"{upload_id} could not be aborted ({code}): a bucket lifecycle rule should remove it"

    def _remove_bad(self, key: str, full: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=full)
        except Exception:  # the error being reported matters more than this cleanup's
            pass

    def _verify_stored(self, key: str, full: str, size: int, sha: str, *, checksum: str, checked: bool,
                       etag: str) -> ObjectInfo:
        """HeadObject after an upload: size, sha256 metadata and checksum must be what was sent.
        When the server reports no SHA-256 checksum at all, the ETag (an MD5 for unencrypted
        objects) stands in for it."""
        h = self._call("check the upload of", key, self.client.head_object, Bucket=self.bucket, Key=full,
                       ChecksumMode="ENABLED")
        problems = []
        if h.get("ContentLength") != size:
            problems.append(f"size {h.get('ContentLength')}, not {size}")
        meta = (h.get("Metadata") or {}).get("sha256")
        if meta != sha:
            problems.append(f"sha256 metadata {meta!r}, not {sha}")
        stored = h.get("ChecksumSHA256")
        if stored:
            if _strip_parts_suffix(stored) != checksum:
                problems.append(f"checksum {stored}, not {checksum}")
        elif not checked:
            got = str(h.get("ETag") or "").strip('"')
            encrypted = str(h.get("ServerSideEncryption") or "").startswith("aws:kms") or h.get("SSECustomerAlgorithm")
            if re.fullmatch(r"[0-9a-f]{32}(-\d+)?", got) and not encrypted and got != etag:
                problems.append(f"ETag {got}, not the MD5 {etag}")
        if problems:
            self._remove_bad(key, full)
            raise storage_error(f"cannot upload {self.where(key)}: the stored object has {'; '.join(problems)}; "
                                "the object was removed", code="ChecksumMismatch")
        return ObjectInfo(key=key, size=size, last_modified=h.get("LastModified"), sha256=sha,
                          etag=str(h.get("ETag") or "").strip('"') or None)

    # ------------------------------------------------------------ reading
    def open_read(self, key: str) -> BinaryIO:
        import botocore.exceptions as bce
        import urllib3.exceptions

        full = self._full(key)
        r = self._call("read", key, self.client.get_object, Bucket=self.bucket, Key=full, ChecksumMode="ENABLED")
        body = r["Body"]
        where = self.where(key)
        sha = (r.get("Metadata") or {}).get("sha256")
        sha = sha.lower() if isinstance(sha, str) and re.fullmatch(r"[0-9a-fA-F]{64}", sha) else None

        def read(n: int) -> bytes:
            try:
                return body.read(n)
            except (bce.BotoCoreError, urllib3.exceptions.HTTPError, OSError) as e:
                raise self._error("read", key, e) from e

        raw = VerifyingReader(read, r.get("ContentLength"), sha, where, close=body.close)
        return io.BufferedReader(raw, COPY_BUFFER)  # type: ignore[return-value]

    def _head(self, key: str, what: str) -> dict[str, Any] | None:
        """HeadObject, or None when the object does not exist (a missing bucket is an error)."""
        import botocore.exceptions as bce

        full = self._full(key)
        try:
            return self.client.head_object(Bucket=self.bucket, Key=full)
        except bce.ClientError as e:
            if self._status(e) == 404 or e.response.get("Error", {}).get("Code") in ("NoSuchKey", "NotFound", "404"):
                self._check_bucket(what, key)
                return None
            if self._status(e) in (400, 403):
                raise self._diagnose(what, key, e) from e
            raise self._error(what, key, e) from e
        except bce.BotoCoreError as e:
            raise self._error(what, key, e) from e

    def _check_bucket(self, what: str, key: str) -> None:
        """After a body-less 404: StorageError NoSuchBucket when it is the bucket that is missing."""
        import botocore.exceptions as bce

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except bce.ClientError as e:
            if self._status(e) == 404:
                raise storage_error(f"cannot {what} {self.where(key)}: NoSuchBucket: the bucket "
                                    f"{self.bucket!r} does not exist", code="NoSuchBucket") from e
            if self._status(e) in (400, 403):
                raise self._diagnose(what, key, e) from e
            raise self._error(what, key, e) from e
        except bce.BotoCoreError as e:
            raise self._error(what, key, e) from e

    def exists(self, key: str) -> bool:
        return self._head(key, "check") is not None

    def stat(self, key: str) -> ObjectInfo:
        h = self._head(key, "check")
        if h is None:
            raise storage_error(f"{self.where(key)} does not exist", code="NoSuchKey", not_found=True)
        sha = (h.get("Metadata") or {}).get("sha256")
        return ObjectInfo(key=key, size=int(h.get("ContentLength", 0)), last_modified=h.get("LastModified"),
                          sha256=sha.lower() if isinstance(sha, str) and len(sha) == 64 else None,
                          etag=str(h.get("ETag") or "").strip('"') or None)

    def _pages(self, what: str, prefix: str, **kw: Any) -> Iterator[dict[str, Any]]:
        import botocore.exceptions as bce

        paginator = self.client.get_paginator("list_objects_v2")
        it = iter(paginator.paginate(Bucket=self.bucket, Prefix=self._full_prefix(prefix), **kw))
        while True:
            try:
                page = next(it)
            except StopIteration:
                return
            except (bce.ClientError, bce.BotoCoreError) as e:
                raise self._error(what, prefix, e) from e
            yield page

    def list(self, prefix: str = "") -> builtins.list[ObjectInfo]:
        check_prefix(prefix)
        out = []
        for page in self._pages("list", prefix):
            for o in page.get("Contents", []) or []:
                full = o["Key"]
                if full.endswith("/"):  # a "folder" placeholder object, not content
                    continue
                out.append(ObjectInfo(key=self._rel(full), size=int(o.get("Size", 0)),
                                      last_modified=o.get("LastModified"),
                                      etag=str(o.get("ETag") or "").strip('"') or None))
        out.sort(key=lambda i: i.key)
        return out

    def list_dirs(self, prefix: str = "") -> builtins.list[str]:
        dp = dir_prefix(prefix)
        out = set()
        for page in self._pages("list", dp, Delimiter="/"):
            for cp in page.get("CommonPrefixes", []) or []:
                rel = self._rel(cp["Prefix"]).rstrip("/")
                if rel:
                    out.add(rel)
        # Servers built on a file system (SeaweedFS) keep a folder after its last object is gone
        # and list it as a common prefix: keep only the ones that still hold an object.
        return [d for d in sorted(out) if self._holds_object(d + "/")]

    def _holds_object(self, prefix: str) -> bool:
        for page in self._pages("list", prefix, PaginationConfig={"PageSize": 10}):
            if any(not o["Key"].endswith("/") for o in page.get("Contents", []) or []):
                return True
        return False

    # ------------------------------------------------------------ deleting
    def delete(self, key: str) -> None:
        full = self._full(key)
        self._call("delete", key, self.client.delete_object, Bucket=self.bucket, Key=full)

    def delete_prefix(self, prefix: str) -> int:
        check_prefix(prefix)
        if prefix == "":
            raise storage_error(f"refusing to delete everything under {self.url}: give a prefix")
        keys = [self._full(o.key) for o in self.list(prefix)]
        for i in range(0, len(keys), 1000):
            batch = keys[i:i + 1000]
            r = self._call("delete objects under", prefix, self.client.delete_objects, Bucket=self.bucket,
                           Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True})
            errors = r.get("Errors") or []
            if errors:
                first = errors[0]
                raise storage_error(f"cannot delete {self.where(self._rel(first.get('Key', '')))}: "
                                    f"{first.get('Code', '?')}: {_HINTS.get(first.get('Code', ''), '')} "
                                    f"({len(errors)} of {len(batch)} objects not deleted)",
                                    code=first.get("Code"))
        return len(keys)
