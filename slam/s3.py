"""The S3 client slam uses everywhere, and S3 failures as one line (never a botocore traceback).

    from slam.s3 import s3_client, s3_call
    s3_call("s3://b/k", s3_client().head_object, Bucket="b", Key="k")   # errors -> SlamError naming the fix

Endpoint from AWS_ENDPOINT_URL(_S3) or MLFLOW_S3_ENDPOINT_URL (MinIO, SeaweedFS, moto); credentials from the
environment or an instance role (never logged). `slam.storage` re-exports these names.
"""

from __future__ import annotations

import os
from typing import Any

from slam.errors import SlamError

_client = None


def s3_client():
    """One boto3 client per process; endpoint from AWS_ENDPOINT_URL(_S3) or MLFLOW_S3_ENDPOINT_URL. Bounded:
    10 s to connect, 60 s per read, AWS_MAX_ATTEMPTS (default 5) attempts."""
    global _client
    if _client is None:
        import boto3
        from botocore.config import Config

        # a fresh session: boto3's default one caches credentials, so a reset (new env) would not see them
        _client = boto3.session.Session().client("s3", endpoint_url=endpoint(), config=Config(
            connect_timeout=10, read_timeout=60,
            retries={"max_attempts": int(os.environ.get("AWS_MAX_ATTEMPTS") or 5), "mode": "standard"}))
    return _client


def endpoint() -> str | None:
    return (os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
            or os.environ.get("MLFLOW_S3_ENDPOINT_URL") or None)


def reset_client() -> None:
    """Forget the cached client (tests that change AWS_ENDPOINT_URL)."""
    global _client
    _client = None


def s3_error(e: Exception, uri: str) -> SlamError:
    """One line naming what went wrong with `uri` and the likely fix (never a botocore traceback)."""
    from botocore import exceptions as bx

    from slam.redact import redact

    where = endpoint() or "AWS S3"
    if isinstance(e, (bx.NoCredentialsError, bx.PartialCredentialsError)):
        return SlamError(f"no S3 credentials for {uri}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                         f"(on Kubernetes: the slam-s3 Secret) or use an instance role")
    if isinstance(e, (bx.EndpointConnectionError, bx.ConnectTimeoutError, bx.ReadTimeoutError,
                      bx.ConnectionClosedError)):
        return SlamError(redact(f"S3 endpoint {where} unreachable for {uri} ({type(e).__name__}): check "
                                f"AWS_ENDPOINT_URL and the network"))
    code = getattr(e, "response", {}).get("Error", {}).get("Code", "") if isinstance(e, bx.ClientError) else ""
    hint = {"InvalidAccessKeyId": ": the access key is not known to the server",
            "SignatureDoesNotMatch": ": wrong secret key", "AccessDenied": ": these credentials may not do that",
            "NoSuchBucket": ": create the bucket first"}.get(code, "")
    if code:
        return SlamError(f"S3 {code} for {uri}{hint}")
    first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
    return SlamError(redact(f"S3 error for {uri}: {type(e).__name__}: {first}"))


def s3_call(uri: str, fn, *args: Any, **kwargs: Any) -> Any:
    """fn(*args, **kwargs) with every boto error turned into `s3_error`."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return fn(*args, **kwargs)
    except (BotoCoreError, ClientError) as e:
        raise s3_error(e, uri) from None


def not_found(e: Exception, head: bool = False) -> bool:
    """A missing key. A HEAD without s3:ListBucket permission answers 403 for a missing key too (no body,
    so no better code): callers then list the prefix, which names the real problem if there is one."""
    codes = ("404", "NoSuchKey", "NotFound") + (("403", "Forbidden") if head else ())
    return getattr(e, "response", {}).get("Error", {}).get("Code") in codes
