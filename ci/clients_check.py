#!/usr/bin/env python3
"""Real-client checks against a running sts-broker: boto3 and the AWS CLI (v1).

Identity flow (docs/sts-wire-contract.md#getcalleridentity,
docs/iam-mfa-api.md#users-and-access-keys): root (from root-credentials.csv) calls
GetCallerIdentity, creates a user and an access key; the user calls GetCallerIdentity and
GetSessionToken; the session calls GetCallerIdentity. Error texts
(docs/sts-wire-contract.md#error-table) round-trip through botocore's ClientError.response['Error'].

MFA flow (docs/mfa.md, docs/iam-mfa-api.md): the AWS CLI creates a virtual MFA device with its QR
code as a PNG, the PNG is decoded to the otpauth:// URI (docs/mfa.md#provisioning-uri), TOTP codes
are computed from its secret (RFC 6238, stdlib only), the device is enabled with two consecutive
codes, GetSessionToken with a fresh code succeeds, the same code again is refused
(docs/mfa.md#one-time-use), and a FIDO key registered by `sts-broker admin mfa register-fido` on the
running broker is refused on GetSessionToken (docs/mfa.md#fido-keys-and-sts).

Prints what each step returned (never a secret key, session token, seed or code) and exits
non-zero on any mismatch.

Usage: clients_check.py --endpoint http://127.0.0.1:PORT --data-dir DIR --broker BIN --work DIR
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import hmac
import json
import os
import re
import struct
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import boto3
import botocore
from botocore.config import Config
from botocore.exceptions import ClientError

# Byte-exact texts from src/protocol/error.rs and src/store/error.rs.
MFA_INVALID_CODE = "MultiFactorAuthentication failed with invalid MFA one time pass code."
MFA_UNABLE_TO_VALIDATE = (
    "MultiFactorAuthentication failed, unable to validate MFA code.  Please verify your MFA "
    "serial number is valid and associated with this user."
)
MFA_FIDO_NOT_ALLOWED = (
    "MultiFactorAuthentication failed: FIDO security keys cannot be used with STS API "
    "operations. Use a virtual or hardware MFA device."
)
SESSION_CANNOT_GET_SESSION_TOKEN = "Cannot call GetSessionToken with session credentials"
INVALID_TOKEN = "The security token included in the request is invalid."
SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check your "
    "AWS Secret Access Key and signing method. Consult the service documentation for details."
)
STS_NS = "https://sts.amazonaws.com/doc/2011-06-15/"

STEP = 30


# --------------------------------------------------------------------------------------------
# Bookkeeping


class Checks:
    """Counts checks; a failed check is reported and counted, and the run goes on where it can."""

    def __init__(self) -> None:
        self.passed = 0
        self.failed: list[str] = []

    def ok(self, cond: bool, what: str, got: object = None) -> bool:
        if cond:
            self.passed += 1
            print(f"    ok   {what}")
        else:
            self.failed.append(what)
            print(f"    FAIL {what}" + ("" if got is None else f"\n         got: {got!r}"))
        return cond

    def eq(self, got: object, want: object, what: str) -> bool:
        return self.ok(got == want, f"{what} == {want!r}", None if got == want else got)


CHECKS = Checks()


class Spec:
    """The error schemas of openapi/openapi.yaml: every error the clients see must match them."""

    def __init__(self, path: Path | None) -> None:
        self.schemas = {}
        self.status = {}
        if path is None:
            return
        import yaml

        spec = yaml.safe_load(path.read_text())
        comps = spec["components"]
        self.schemas = comps["schemas"]
        by_response = {r["$ref"].rsplit("/", 1)[1]: int(st) for st, r in spec["paths"]["/"]["post"]["responses"].items()}
        for name, resp in comps["responses"].items():
            schema = resp.get("content", {}).get("text/xml", {}).get("schema", {})
            for ref in [o["$ref"] for o in schema.get("oneOf", [])] + ([schema["$ref"]] if "$ref" in schema else []):
                self.status[ref.rsplit("/", 1)[1]] = by_response.get(name)

    @staticmethod
    def _matches(node: dict, value: str) -> bool:
        if "anyOf" in node:
            return any(Spec._matches(sub, value) for sub in node["anyOf"])
        if "const" in node:
            return value == node["const"]
        if "enum" in node:
            return value in node["enum"]
        if "pattern" in node:
            return re.search(node["pattern"], value) is not None
        return True

    def check_error(self, what: str, code: str, message: str, status: int | None = None) -> None:
        if not self.schemas:
            return
        name = f"{code}Error"
        schema = self.schemas.get(name)
        if not CHECKS.ok(schema is not None, f"{what}: openapi has {name}"):
            return
        node = schema["allOf"][1]["properties"]["Error"]["properties"]["Message"]
        CHECKS.ok(self._matches(node, message), f"{what}: message matches openapi {name}", message)
        if status is not None:
            CHECKS.eq(self.status.get(name), status, f"{what}: openapi status of {name}")


SPEC = Spec(None)

# Every secret key, session token and TOTP seed the run handles: none may show up in a log.
SECRETS: set[str] = set()


def remember_secret(*values: str | None) -> None:
    SECRETS.update(v for v in values if v and len(set(v)) > 1)


def step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def show(label: str, value: object) -> None:
    print(f"    {label}: {value}", flush=True)


class Fatal(Exception):
    """A step whose failure leaves nothing to check after it."""


# --------------------------------------------------------------------------------------------
# TOTP (RFC 6238: HMAC-SHA1, 6 digits, 30 s), stdlib only


def b32decode(secret: str) -> bytes:
    s = secret.strip().replace(" ", "").upper()
    return base64.b32decode(s + "=" * (-len(s) % 8))


def hotp(key: bytes, counter: int, digits: int = 6) -> str:
    mac = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    value = struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF
    return f"{value % 10**digits:0{digits}d}"


def totp_self_test() -> None:
    # RFC 6238 Appendix B, SHA1 seed, T = 59 s and 1111111109 s (last 6 of 8 digits).
    key = b"12345678901234567890"
    assert hotp(key, 59 // STEP, 8) == "94287082", "RFC 6238 vector T=59"
    assert hotp(key, 1111111109 // STEP, 8) == "07081804", "RFC 6238 vector T=1111111109"
    assert hotp(key, 59 // STEP) == "287082"


def current_step() -> int:
    return int(time.time()) // STEP


def wait_for_step_after(last: int, margin: float = 1.0) -> int:
    """Sleeps until step `last + 1` has begun (plus a margin against clock granularity)."""
    start_of_next = (last + 1) * STEP + margin
    delay = start_of_next - time.time()
    if delay > 0:
        show("waiting for the next 30-s TOTP step", f"{delay:.1f} s")
        time.sleep(delay)
    return current_step()


def avoid_step_edge(min_left: float = 3.0) -> None:
    """Don't start a timed exchange in the last seconds of a step."""
    left = STEP - (time.time() % STEP)
    if left < min_left:
        time.sleep(left + 0.5)


# --------------------------------------------------------------------------------------------
# boto3


def boto_clients(endpoint: str, akid: str, secret: str, token: str | None = None):
    remember_secret(secret, token)
    session = boto3.session.Session(
        aws_access_key_id=akid,
        aws_secret_access_key=secret,
        aws_session_token=token,
        region_name="us-east-1",
    )
    # One attempt (errors are what we check); client-side validation off so that the broker's
    # own ValidationError texts are what comes back.
    cfg = Config(
        retries={"max_attempts": 1, "mode": "standard"},
        parameter_validation=False,
        connect_timeout=5,
        read_timeout=15,
    )
    sts = session.client("sts", endpoint_url=endpoint, config=cfg)
    iam = session.client("iam", endpoint_url=endpoint, config=cfg)
    return sts, iam


def expect_client_error(call, code: str, message: str | re.Pattern, status: int, what: str):
    """Runs `call`, which must raise a ClientError with this code, message and status."""
    try:
        call()
    except ClientError as e:
        err = e.response.get("Error", {})
        meta = e.response.get("ResponseMetadata", {})
        show("error", f"{meta.get('HTTPStatusCode')} {err.get('Type')} {err.get('Code')}: {err.get('Message')}")
        CHECKS.eq(err.get("Code"), code, f"{what}: Error.Code")
        if isinstance(message, re.Pattern):
            CHECKS.ok(bool(message.fullmatch(err.get("Message", ""))), f"{what}: Error.Message ~ /{message.pattern}/", err.get("Message"))
        else:
            CHECKS.eq(err.get("Message"), message, f"{what}: Error.Message")
        CHECKS.eq(err.get("Type"), "Sender", f"{what}: Error.Type")
        CHECKS.eq(meta.get("HTTPStatusCode"), status, f"{what}: HTTP status")
        SPEC.check_error(what, err.get("Code", ""), err.get("Message", ""), meta.get("HTTPStatusCode"))
        rid = meta.get("RequestId")
        CHECKS.ok(bool(rid) and meta.get("HTTPHeaders", {}).get("x-amzn-requestid") == rid,
                  f"{what}: x-amzn-RequestId header == body RequestId", meta)
        return err
    else:
        CHECKS.ok(False, f"{what}: expected {code}, the call succeeded")
        return None


def check_session_creds(creds: dict, what: str, min_seconds: int, max_seconds: int) -> None:
    akid = creds["AccessKeyId"]
    show("session AccessKeyId", akid)
    show("session Expiration", creds["Expiration"])
    CHECKS.ok(bool(re.fullmatch(r"ASIA[A-Z0-9]{16}", akid)), f"{what}: AccessKeyId is ASIA + 16 [A-Z0-9]", akid)
    CHECKS.eq(len(creds["SecretAccessKey"]), 40, f"{what}: len(SecretAccessKey)")
    CHECKS.ok(len(creds["SessionToken"]) >= 100, f"{what}: len(SessionToken) >= 100", len(creds["SessionToken"]))
    exp = creds["Expiration"]
    left = exp.timestamp() - time.time() if hasattr(exp, "timestamp") else None
    CHECKS.ok(left is not None and min_seconds - 5 <= left <= max_seconds + 5,
              f"{what}: Expiration is about now + {min_seconds}..{max_seconds} s", left)


def boto3_identity_flow(endpoint: str, root: tuple[str, str], account: str) -> None:
    step("boto3: root GetCallerIdentity")
    sts_root, iam_root = boto_clients(endpoint, *root)
    ident = sts_root.get_caller_identity()
    show("Arn", ident["Arn"])
    show("UserId", ident["UserId"])
    show("Account", ident["Account"])
    CHECKS.eq(ident["Arn"], f"arn:aws:iam::{account}:root", "root Arn")
    CHECKS.eq(ident["UserId"], account, "root UserId")
    meta = ident["ResponseMetadata"]
    CHECKS.eq(meta["HTTPHeaders"].get("content-type"), "text/xml", "Content-Type")
    CHECKS.eq(meta["HTTPHeaders"].get("x-amzn-requestid"), meta["RequestId"], "x-amzn-RequestId header")
    CHECKS.ok("x-amz-sts-extended-request-id" in meta["HTTPHeaders"], "x-amz-sts-extended-request-id present")

    step("boto3: root iam.create_user / get_user / list_users / create_access_key")
    name = "ci-boto3-user"
    user = iam_root.create_user(UserName=name)["User"]
    show("User.Arn", user["Arn"])
    show("User.UserId", user["UserId"])
    CHECKS.eq(user["Arn"], f"arn:aws:iam::{account}:user/{name}", "CreateUser Arn")
    CHECKS.ok(bool(re.fullmatch(r"AIDA[A-Z0-9]{16,}", user["UserId"])), "CreateUser UserId is AIDA…", user["UserId"])
    CHECKS.eq(iam_root.get_user(UserName=name)["User"]["UserId"], user["UserId"], "GetUser UserId")
    listed = [u["UserName"] for u in iam_root.list_users()["Users"]]
    show("ListUsers", listed)
    CHECKS.ok(name in listed, "ListUsers lists the user", listed)
    key = iam_root.create_access_key(UserName=name)["AccessKey"]
    show("AccessKey.AccessKeyId", key["AccessKeyId"])
    show("AccessKey.Status", key["Status"])
    CHECKS.ok(bool(re.fullmatch(r"AKIA[A-Z0-9]{16}", key["AccessKeyId"])), "AccessKeyId is AKIA + 16", key["AccessKeyId"])
    CHECKS.eq(len(key["SecretAccessKey"]), 40, "len(SecretAccessKey)")
    CHECKS.eq(key["Status"], "Active", "new key Status")
    CHECKS.eq(key["UserName"], name, "new key UserName")

    step("boto3: the user calls GetCallerIdentity and GetSessionToken")
    sts_user, iam_user = boto_clients(endpoint, key["AccessKeyId"], key["SecretAccessKey"])
    ident = sts_user.get_caller_identity()
    show("Arn", ident["Arn"])
    CHECKS.eq(ident["Arn"], user["Arn"], "user GetCallerIdentity Arn")
    CHECKS.eq(ident["UserId"], user["UserId"], "user GetCallerIdentity UserId")
    CHECKS.eq(ident["Account"], account, "user GetCallerIdentity Account")
    keys = iam_user.list_access_keys()["AccessKeyMetadata"]
    CHECKS.eq([k["AccessKeyId"] for k in keys], [key["AccessKeyId"]], "the user lists its own access keys")
    creds = sts_user.get_session_token(DurationSeconds=900)["Credentials"]
    check_session_creds(creds, "GetSessionToken(900)", 900, 900)
    creds_default = sts_user.get_session_token()["Credentials"]
    check_session_creds(creds_default, "GetSessionToken(default)", 43200, 43200)

    step("boto3: the session credentials call GetCallerIdentity")
    sts_sess, iam_sess = boto_clients(endpoint, creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"])
    ident = sts_sess.get_caller_identity()
    show("Arn", ident["Arn"])
    CHECKS.eq(ident["Arn"], user["Arn"], "session GetCallerIdentity Arn (the user's)")
    CHECKS.eq(ident["UserId"], user["UserId"], "session GetCallerIdentity UserId")

    step("boto3: error texts through ClientError.response['Error']")
    expect_client_error(lambda: sts_sess.get_session_token(), "AccessDenied", SESSION_CANNOT_GET_SESSION_TOKEN, 403,
                        "session creds → GetSessionToken")
    expect_client_error(lambda: iam_sess.get_user(), "InvalidClientTokenId", INVALID_TOKEN, 403,
                        "session creds without MFA → IAM GetUser")
    expect_client_error(lambda: sts_user.get_session_token(DurationSeconds=899), "ValidationError",
                        "1 validation error detected: Value '899' at 'durationSeconds' failed to satisfy constraint: "
                        "Member must have value greater than or equal to 900", 400, "DurationSeconds=899")
    expect_client_error(lambda: sts_user.get_session_token(DurationSeconds=129601), "ValidationError",
                        "1 validation error detected: Value '129601' at 'durationSeconds' failed to satisfy constraint: "
                        "Member must have value less than or equal to 129600", 400, "DurationSeconds=129601")
    expect_client_error(lambda: sts_user.get_session_token(SerialNumber="GAHT00000001", TokenCode="123456"),
                        "AccessDenied", MFA_UNABLE_TO_VALIDATE, 403, "unknown MFA serial")
    expect_client_error(lambda: sts_user.get_session_token(SerialNumber="GAHT0001", TokenCode="12a456"),
                        "ValidationError",
                        "2 validation errors detected: Value 'GAHT0001' at 'serialNumber' failed to satisfy constraint: "
                        "Member must have length greater than or equal to 9; Value '12a456' at 'tokenCode' failed to "
                        "satisfy constraint: Member must satisfy regular expression pattern: [\\d]*", 400,
                        "short serial and non-digit code")
    bad_secret, _ = boto_clients(endpoint, key["AccessKeyId"], "x" * 40)
    expect_client_error(lambda: bad_secret.get_caller_identity(), "SignatureDoesNotMatch", SIGNATURE_MISMATCH, 403,
                        "wrong secret")
    unknown, _ = boto_clients(endpoint, "AKIAAAAAAAAAAAAAAAAA", "x" * 40)
    expect_client_error(lambda: unknown.get_caller_identity(), "InvalidClientTokenId", INVALID_TOKEN, 403,
                        "unknown access key")
    expect_client_error(lambda: iam_root.get_user(UserName="nobody"), "NoSuchEntity",
                        "The user with name nobody cannot be found.", 404, "GetUser of a missing user")
    expect_client_error(lambda: iam_root.create_user(UserName=name), "EntityAlreadyExists",
                        f"User with name {name} already exists.", 409, "CreateUser twice")
    expect_client_error(lambda: iam_user.create_user(UserName="mallory"), "AccessDenied",
                        re.compile(r"User: arn:aws:iam::\d{12}:user/ci-boto3-user is not authorized to perform: "
                                   r"iam:CreateUser on resource: .*"), 403, "a user calling CreateUser")
    expect_client_error(lambda: iam_root.delete_user(UserName=name), "DeleteConflict",
                        "Cannot delete entity, must delete access keys first.", 409, "DeleteUser with keys")
    # A region botocore signs with but the broker is not configured for.
    eu = boto3.session.Session(aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"],
                               region_name="eu-west-1").client("sts", endpoint_url=endpoint,
                                                               config=Config(retries={"max_attempts": 1}))
    expect_client_error(lambda: eu.get_caller_identity(), "SignatureDoesNotMatch",
                        "Credential should be scoped to a valid region, not 'eu-west-1'. ", 403, "foreign region")


# --------------------------------------------------------------------------------------------
# Raw HTTP: the front door, limits, InvalidAction and presigned URLs, as the OpenAPI spec says


def http_call(endpoint: str, method: str, target: str, body: bytes | None = None,
              headers: dict | None = None) -> tuple[int, dict, str]:
    import http.client

    u = urllib.parse.urlsplit(endpoint)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=15)
    try:
        conn.request(method, target, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read().decode("utf-8", "replace")
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        conn.close()


def xml_error(what: str, status: int, headers: dict, body: str, want_status: int, want_code: str,
              want_message: str | None, namespace: str = STS_NS) -> None:
    import xml.etree.ElementTree as ET

    show("answer", f"{status} {body.strip()[:200]!r}")
    CHECKS.eq(status, want_status, f"{what}: HTTP status")
    CHECKS.eq(headers.get("content-type"), "text/xml", f"{what}: Content-Type")
    try:
        root = ET.fromstring(body)
    except ET.ParseError as e:
        CHECKS.ok(False, f"{what}: XML body", str(e))
        return
    ns = {"n": namespace}
    CHECKS.eq(root.tag, f"{{{namespace}}}ErrorResponse", f"{what}: root element")
    code = root.findtext("n:Error/n:Code", namespaces=ns)
    message = root.findtext("n:Error/n:Message", namespaces=ns)
    CHECKS.eq(root.findtext("n:Error/n:Type", namespaces=ns), "Sender", f"{what}: Type")
    CHECKS.eq(code, want_code, f"{what}: Code")
    if want_message is not None:
        CHECKS.eq(message, want_message, f"{what}: Message")
    CHECKS.eq(root.findtext("n:RequestId", namespaces=ns), headers.get("x-amzn-requestid"),
              f"{what}: RequestId == x-amzn-RequestId")
    SPEC.check_error(what, code or "", message or "", status)


def signed_request(endpoint: str, creds: tuple[str, str], params: dict | list, presign: bool = False):
    from botocore.auth import SigV4Auth, SigV4QueryAuth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    c = Credentials(*creds)
    body = urllib.parse.urlencode(params)
    if presign:
        req = AWSRequest(method="GET", url=f"{endpoint}/?{body}")
        SigV4QueryAuth(c, "sts", "us-east-1", expires=300).add_auth(req)
    else:
        req = AWSRequest(method="POST", url=f"{endpoint}/", data=body,
                         headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
        SigV4Auth(c, "sts", "us-east-1").add_auth(req)
    prepared = req.prepare()
    u = urllib.parse.urlsplit(prepared.url)
    target = u.path + ("?" + u.query if u.query else "")
    headers = {k: v for k, v in prepared.headers.items()}
    return http_call(endpoint, prepared.method, target, prepared.body, headers)


def raw_http(endpoint: str, root: tuple[str, str], account: str) -> None:
    import xml.etree.ElementTree as ET

    step("raw HTTP: front door, limits, InvalidAction, presigned GET")
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    st, h, body = http_call(endpoint, "POST", "/", b"Action=GetCallerIdentity&Version=2011-06-15")
    show("POST / without Content-Type", f"{st} Location: {h.get('location')}")
    CHECKS.eq((st, h.get("location"), body), (302, "https://aws.amazon.com/iam", ""), "POST without Content-Type → 302")
    CHECKS.ok(bool(h.get("x-amzn-requestid")), "302 carries x-amzn-RequestId")
    st, h, body = http_call(endpoint, "GET", "/?Version=2011-06-15")
    show("GET /?Version=2011-06-15", f"{st} Location: {h.get('location')}")
    CHECKS.eq((st, h.get("location")), (302, "https://aws.amazon.com/iam?Version=2011-06-15"),
              "GET without Action → 302 keeping the query")

    st, h, body = http_call(endpoint, "GET", "/?Action=GetCallerIdentity&Version=2011-06-15")
    xml_error("unsigned GET", st, h, body, 403, "MissingAuthenticationToken", "Request is missing Authentication Token")
    st, h, body = http_call(endpoint, "POST", "/", b"Action=GetCallerIdentity&Version=2011-06-15&X=%zz", form)
    xml_error("bad %-escape", st, h, body, 404, "MalformedQueryString", "The query string contains a syntax error.")
    big = b"Action=GetCallerIdentity&Version=2011-06-15&Pad=" + b"a" * 70000
    st, h, body = http_call(endpoint, "POST", "/", big, form)
    xml_error("70 kB body", st, h, body, 413, "RequestEntityTooLarge", "Request body is larger than 65536 bytes.")
    st, h, body = http_call(endpoint, "GET", "/?Action=GetCallerIdentity&Version=2011-06-15", None,
                            {"X-Pad": "a" * 17000})
    xml_error("17 kB header", st, h, body, 431, "RequestHeaderFieldsTooLarge",
              "Request headers are larger than 16384 bytes.")

    st, h, body = signed_request(endpoint, root, {"Action": "NoSuchAction", "Version": "2011-06-15"})
    xml_error("signed NoSuchAction", st, h, body, 400, "InvalidAction",
              "Could not find operation NoSuchAction for version 2011-06-15",
              namespace="http://webservices.amazon.com/AWSFault/2005-15-09")
    st, h, body = signed_request(endpoint, root, {"Action": "GetCallerIdentity"})
    xml_error("signed, no Version", st, h, body, 400, "InvalidAction",
              "Could not find operation GetCallerIdentity for version NO_VERSION_SPECIFIED",
              namespace="http://webservices.amazon.com/AWSFault/2005-15-09")

    # Messages echo what the client sent, line breaks included, and the spec's patterns must
    # match them (schemathesis found '.*' patterns that stop at a line break).
    st, h, body = signed_request(endpoint, root, {"Action": "No\nSuch", "Version": "2011-06-15"})
    xml_error("signed action with a line break", st, h, body, 400, "InvalidAction",
              "Could not find operation No\nSuch for version 2011-06-15",
              namespace="http://webservices.amazon.com/AWSFault/2005-15-09")
    st, h, body = signed_request(endpoint, root, [("Action", "GetCallerIdentity"), ("Version", "2011-06-15"),
                                                  ("a\nb", "1"), ("a\nb", "2")])
    xml_error("a name with a line break, twice", st, h, body, 400, "InvalidQueryParameter",
              "The parameter 'a\nb' is given more than once; give each parameter once, in the query string "
              "or in the form body.")
    st, h, body = signed_request(endpoint, root, {"Action": "GetSessionToken", "Version": "2011-06-15",
                                                  "DurationSeconds": "9\n00"})
    xml_error("DurationSeconds with a line break", st, h, body, 400, "MalformedInput",
              "invalid value for decimal type: '9\n00'")
    st, h, body = signed_request(endpoint, root, {"Action": "GetSessionToken", "Version": "2011-06-15",
                                                  "SerialNumber": "GAHT\n12345678", "TokenCode": "123456"})
    xml_error("SerialNumber with a line break", st, h, body, 400, "ValidationError", None)

    st, h, body = signed_request(endpoint, root, {"Action": "GetCallerIdentity", "Version": "2011-06-15"}, presign=True)
    show("presigned GET GetCallerIdentity", st)
    CHECKS.eq(st, 200, "presigned GET: status")
    CHECKS.eq(h.get("content-type"), "text/xml", "presigned GET: Content-Type")
    rid = h.get("x-amzn-requestid", "")
    want = (f'<GetCallerIdentityResponse xmlns="{STS_NS}">\n  <GetCallerIdentityResult>\n'
            f"    <Arn>arn:aws:iam::{account}:root</Arn>\n    <UserId>{account}</UserId>\n"
            f"    <Account>{account}</Account>\n  </GetCallerIdentityResult>\n  <ResponseMetadata>\n"
            f"    <RequestId>{rid}</RequestId>\n  </ResponseMetadata>\n</GetCallerIdentityResponse>\n")
    CHECKS.eq(body, want, "presigned GET: body byte for byte")
    CHECKS.ok(bool(re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", rid)),
              "x-amzn-RequestId is a UUID v4", rid)
    ext = h.get("x-amz-sts-extended-request-id", "")
    CHECKS.eq(base64.b64decode(ext).decode(), f"1:sts-broker:S:{rid}", "x-amz-sts-extended-request-id")


# --------------------------------------------------------------------------------------------
# AWS CLI


SECRET_FLAGS = {"--authentication-code1", "--authentication-code2", "--token-code"}


class Cli:
    """Runs `aws --endpoint-url … --output json` with exactly the given credentials."""

    def __init__(self, aws: str, endpoint: str, work: Path) -> None:
        self.aws = aws
        self.endpoint = endpoint
        self.work = work

    def env(self, akid: str, secret: str, token: str | None) -> dict[str, str]:
        remember_secret(secret, token)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(
            AWS_ACCESS_KEY_ID=akid,
            AWS_SECRET_ACCESS_KEY=secret,
            AWS_DEFAULT_REGION="us-east-1",
            AWS_CONFIG_FILE=str(self.work / "no-aws-config"),
            AWS_SHARED_CREDENTIALS_FILE=str(self.work / "no-aws-credentials"),
            AWS_EC2_METADATA_DISABLED="true",
            AWS_PAGER="",
        )
        # The CLI's default retry settings: error messages read exactly as a user sees them
        # (with AWS_MAX_ATTEMPTS=1 botocore appends " (reached max retries: 0)").
        if token:
            env["AWS_SESSION_TOKEN"] = token
        return env

    def run(self, creds: tuple, *args: str) -> subprocess.CompletedProcess:
        akid, secret, *rest = creds
        token = rest[0] if rest else None
        cmd = [self.aws, "--endpoint-url", self.endpoint, "--output", "json", *args]
        shown = [("******" if prev in SECRET_FLAGS else a) for prev, a in zip(("",) + args, args)]
        print(f"    $ aws --endpoint-url {self.endpoint} {' '.join(shown)}", flush=True)
        return subprocess.run(cmd, env=self.env(akid, secret, token), cwd=self.work, capture_output=True,
                              text=True, timeout=60)

    def ok(self, creds: tuple, *args: str) -> dict:
        p = self.run(creds, *args)
        if p.returncode != 0:
            raise Fatal(f"aws {' '.join(args)} exited {p.returncode}: {p.stderr.strip()}")
        return json.loads(p.stdout) if p.stdout.strip() else {}

    def fails(self, creds: tuple, code: str, operation: str, message: str, what: str, *args: str) -> None:
        p = self.run(creds, *args)
        want = f"An error occurred ({code}) when calling the {operation} operation: {message}"
        show("stderr", p.stderr.strip())
        CHECKS.ok(p.returncode != 0, f"{what}: aws exits non-zero", p.returncode)
        CHECKS.eq(p.stderr.strip(), want, f"{what}: aws stderr")
        SPEC.check_error(what, code, message)


def cli_identity_flow(cli: Cli, root: tuple[str, str], account: str) -> None:
    step("AWS CLI: root sts get-caller-identity")
    ident = cli.ok(root, "sts", "get-caller-identity")
    show("result", ident)
    CHECKS.eq(ident, {"UserId": account, "Account": account, "Arn": f"arn:aws:iam::{account}:root"},
              "root get-caller-identity")

    step("AWS CLI: root iam create-user / create-access-key")
    name = "ci-cli-user"
    user = cli.ok(root, "iam", "create-user", "--user-name", name)["User"]
    show("User", {k: user[k] for k in ("UserName", "UserId", "Arn", "Path")})
    CHECKS.eq(user["Arn"], f"arn:aws:iam::{account}:user/{name}", "create-user Arn")
    key = cli.ok(root, "iam", "create-access-key", "--user-name", name)["AccessKey"]
    show("AccessKey", {k: key[k] for k in ("UserName", "AccessKeyId", "Status")})
    CHECKS.eq(key["Status"], "Active", "create-access-key Status")
    user_creds = (key["AccessKeyId"], key["SecretAccessKey"])

    step("AWS CLI: the user calls sts get-caller-identity and get-session-token")
    ident = cli.ok(user_creds, "sts", "get-caller-identity")
    show("result", ident)
    CHECKS.eq(ident, {"UserId": user["UserId"], "Account": account, "Arn": user["Arn"]}, "user get-caller-identity")
    creds = cli.ok(user_creds, "sts", "get-session-token", "--duration-seconds", "3600")["Credentials"]
    show("Credentials.AccessKeyId", creds["AccessKeyId"])
    show("Credentials.Expiration", creds["Expiration"])
    CHECKS.ok(bool(re.fullmatch(r"ASIA[A-Z0-9]{16}", creds["AccessKeyId"])), "session AccessKeyId is ASIA…")
    CHECKS.ok(bool(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\+00:00|Z)", creds["Expiration"])),
              "Expiration is ISO-8601 UTC", creds["Expiration"])
    session = (creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"])

    step("AWS CLI: the session calls sts get-caller-identity")
    ident = cli.ok(session, "sts", "get-caller-identity")
    show("result", ident)
    CHECKS.eq(ident["Arn"], user["Arn"], "session get-caller-identity Arn (the user's)")

    step("AWS CLI: error texts")
    cli.fails(session, "AccessDenied", "GetSessionToken", SESSION_CANNOT_GET_SESSION_TOKEN,
              "session → get-session-token", "sts", "get-session-token")
    # The CLI checks lengths and ranges itself (DurationSeconds 899 never leaves it), not patterns.
    cli.fails(user_creds, "ValidationError", "GetSessionToken",
              "1 validation error detected: Value '12a456' at 'tokenCode' failed to satisfy constraint: "
              "Member must satisfy regular expression pattern: [\\d]*", "token code 12a456",
              "sts", "get-session-token", "--serial-number", "GAHT00000001", "--token-code", "12a456")


def decode_qr(png: Path) -> str:
    """The text of the one QR code in `png` (zxing-cpp over Pillow)."""
    import zxingcpp
    from PIL import Image

    with Image.open(png) as img:
        show("PNG", f"{img.format} {img.size[0]}x{img.size[1]} mode {img.mode}")
        results = zxingcpp.read_barcodes(img.convert("L"), formats=zxingcpp.BarcodeFormat.QRCode)
    if len(results) != 1:
        raise Fatal(f"expected one QR code in {png}, found {len(results)}")
    return results[0].text


def cli_mfa_flow(cli: Cli, root: tuple[str, str], account: str, broker: str, data_dir: Path) -> None:
    step("AWS CLI: root creates user alice with an access key")
    name = "alice"
    user = cli.ok(root, "iam", "create-user", "--user-name", name)["User"]
    key = cli.ok(root, "iam", "create-access-key", "--user-name", name)["AccessKey"]
    show("alice", {"Arn": user["Arn"], "AccessKeyId": key["AccessKeyId"]})
    alice = (key["AccessKeyId"], key["SecretAccessKey"])

    step("AWS CLI: alice creates a virtual MFA device, QR code to a PNG")
    qr = cli.work / "qr.png"
    out = cli.ok(alice, "iam", "create-virtual-mfa-device", "--virtual-mfa-device-name", name,
                 "--outfile", str(qr), "--bootstrap-method", "QRCodePNG")
    device = out["VirtualMFADevice"]
    serial = device["SerialNumber"]
    show("VirtualMFADevice", device)
    CHECKS.eq(serial, f"arn:aws:iam::{account}:mfa/{name}", "SerialNumber")
    CHECKS.ok(qr.is_file() and qr.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", "--outfile wrote a PNG")

    step("decode the QR code")
    uri = decode_qr(qr)
    parsed = urllib.parse.urlsplit(uri)
    query = urllib.parse.parse_qs(parsed.query)
    secret = query.get("secret", [""])[0]
    redacted = uri.replace(secret, "<secret>") if secret else uri
    show("otpauth URI", redacted)
    CHECKS.eq((parsed.scheme, parsed.netloc), ("otpauth", "totp"), "URI scheme and type")
    label = urllib.parse.unquote(parsed.path.lstrip("/"))
    CHECKS.ok(label.endswith(f"{name}@{account}"), f"label ends with {name}@{account}", label)
    CHECKS.ok(bool(re.fullmatch(r"[A-Z2-7]+=*", secret)) and len(b32decode(secret)) >= 10,
              "secret is base32 of at least 80 bits", len(secret))
    for param, want in (("algorithm", "SHA1"), ("digits", "6"), ("period", "30")):
        got = query.get(param, [want])[0]
        CHECKS.eq(got, want, f"URI {param}")
    seed = b32decode(secret)
    remember_secret(secret)

    step("AWS CLI: alice enables the device with two consecutive codes (previous and current step)")
    avoid_step_edge()
    now = current_step()
    code1, code2 = hotp(seed, now - 1), hotp(seed, now)
    show("codes", f"steps {now - 1} and {now}")
    cli.ok(alice, "iam", "enable-mfa-device", "--user-name", name, "--serial-number", serial,
           "--authentication-code1", code1, "--authentication-code2", code2)
    CHECKS.ok(True, "enable-mfa-device succeeded")
    devices = cli.ok(alice, "iam", "list-mfa-devices")["MFADevices"]
    show("list-mfa-devices", [{k: d.get(k) for k in ("UserName", "SerialNumber", "EnableDate")} for d in devices])
    CHECKS.eq([(d["UserName"], d["SerialNumber"]) for d in devices], [(name, serial)], "list-mfa-devices")

    step("AWS CLI: enable-mfa-device codes are consumed: wait for the next step, then get-session-token")
    cli.fails(alice, "AccessDenied", "GetSessionToken", MFA_INVALID_CODE, "the enable code again",
              "sts", "get-session-token", "--serial-number", serial, "--token-code", code2)
    now = wait_for_step_after(now)
    avoid_step_edge()
    now = current_step()
    code = hotp(seed, now)
    show("code", f"step {now}")
    creds = cli.ok(alice, "sts", "get-session-token", "--serial-number", serial, "--token-code", code,
                   "--duration-seconds", "900")["Credentials"]
    show("Credentials.AccessKeyId", creds["AccessKeyId"])
    show("Credentials.Expiration", creds["Expiration"])
    CHECKS.ok(bool(re.fullmatch(r"ASIA[A-Z0-9]{16}", creds["AccessKeyId"])), "MFA session AccessKeyId is ASIA…")
    mfa_session = (creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"])
    ident = cli.ok(mfa_session, "sts", "get-caller-identity")
    show("MFA session get-caller-identity", ident)
    CHECKS.eq(ident["Arn"], user["Arn"], "MFA session Arn (alice's)")
    # Sessions with MFA may call IAM (those without get InvalidClientTokenId, checked above).
    devices = cli.ok(mfa_session, "iam", "list-mfa-devices")["MFADevices"]
    CHECKS.eq([d["SerialNumber"] for d in devices], [serial], "MFA session may call IAM list-mfa-devices")

    step("AWS CLI: the same code again is refused")
    cli.fails(alice, "AccessDenied", "GetSessionToken", MFA_INVALID_CODE, "replayed code",
              "sts", "get-session-token", "--serial-number", serial, "--token-code", code)
    wrong = f"{(int(code) + 500000) % 1000000:06d}"
    cli.fails(alice, "AccessDenied", "GetSessionToken", MFA_INVALID_CODE, "wrong code",
              "sts", "get-session-token", "--serial-number", serial, "--token-code", wrong)
    cli.fails(alice, "AccessDenied", "GetSessionToken", MFA_UNABLE_TO_VALIDATE, "serial without a token code",
              "sts", "get-session-token", "--serial-number", serial)
    cli.fails(root, "AccessDenied", "GetSessionToken", MFA_UNABLE_TO_VALIDATE, "alice's serial used by root",
              "sts", "get-session-token", "--serial-number", serial, "--token-code", hotp(seed, current_step()))
    cli.fails(alice, "DeleteConflict", "DeleteVirtualMFADevice",
              "You must deactivate a user's virtual MFA device before you can delete it.",
              "deleting an enabled device", "iam", "delete-virtual-mfa-device", "--serial-number", serial)

    step("FIDO: sts-broker admin mfa register-fido on the running broker, then get-session-token")
    fido_user = "ci-boto3-user"  # has no MFA device yet (alice is at the one-device limit)
    fido_key = cli.ok(root, "iam", "create-access-key", "--user-name", fido_user)["AccessKey"]
    fido_creds = (fido_key["AccessKeyId"], fido_key["SecretAccessKey"])
    cmd = [broker, "admin", "mfa", "register-fido", "--data-dir", str(data_dir), "--user", fido_user,
           "--name", "key1", "--credential-id", "AAAA", "--public-key", "BBBB"]
    print(f"    $ sts-broker admin mfa register-fido --data-dir {data_dir} --user {fido_user} --name key1 "
          "--credential-id AAAA --public-key BBBB", flush=True)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    show("stdout", p.stdout.strip())
    if p.returncode != 0:
        raise Fatal(f"register-fido exited {p.returncode}: {p.stderr.strip()}")
    m = re.search(r"(arn:aws:iam::\d{12}:u2f/user/\S+)", p.stdout)
    if not m:
        raise Fatal(f"no u2f serial in register-fido output: {p.stdout!r}")
    fido_serial = m.group(1)
    CHECKS.ok(bool(re.fullmatch(rf"arn:aws:iam::{account}:u2f/user/{fido_user}/key1-[0-9A-F]{{8}}", fido_serial)),
              "FIDO serial form", fido_serial)
    # The running broker picks the registration up from the store without a restart.
    seen, deadline = [], time.time() + 10
    while time.time() < deadline:
        listed = cli.ok(root, "iam", "list-mfa-devices", "--user-name", fido_user)["MFADevices"]
        seen = [d["SerialNumber"] for d in listed]
        if fido_serial in seen:
            break
        time.sleep(0.5)
    show("list-mfa-devices --user-name " + fido_user, seen)
    CHECKS.ok(fido_serial in seen, "the running broker lists the FIDO key (no restart)", seen)
    cli.fails(fido_creds, "AccessDenied", "GetSessionToken", MFA_FIDO_NOT_ALLOWED, "FIDO serial on STS",
              "sts", "get-session-token", "--serial-number", fido_serial, "--token-code", "123456")
    cli.fails(alice, "InvalidInput", "EnableMFADevice",
              "FIDO security keys cannot be enabled or synchronized through the AWS CLI or API; register them "
              "through the console (sts-broker admin mfa register-fido).", "enable-mfa-device with a u2f serial",
              "iam", "enable-mfa-device", "--user-name", name, "--serial-number", fido_serial,
              "--authentication-code1", "123456", "--authentication-code2", "654321")


# --------------------------------------------------------------------------------------------


def check_logs(data_dir: Path, broker_log: Path | None, account: str) -> None:
    step("audit log: one JSON line per GetSessionToken and MFA change, no secrets in any log")
    audit = data_dir / "audit.log"
    text = audit.read_text()
    events = []
    for n, line in enumerate(text.splitlines(), 1):
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            CHECKS.ok(False, f"audit.log line {n} is JSON", line[:120])
    show("audit lines", len(events))
    gst = [e for e in events if e.get("action") == "GetSessionToken"]
    reasons = sorted({e.get("reason") for e in gst if e.get("outcome") != "success"} - {None})
    show("GetSessionToken refusal reasons", reasons)
    for reason in ("replayed", "wrong_code", "incomplete_mfa", "unknown_device", "fido_key",
                   "session_credentials", "validation_error"):
        CHECKS.ok(reason in reasons, f"audit.log records a GetSessionToken refused as {reason}", reasons)
    CHECKS.ok(any(e.get("outcome") == "success" and e.get("mfa_authenticated") is True for e in gst),
              "audit.log records a GetSessionToken with MFA")
    actions = {e.get("action") for e in events}
    for action in ("CreateVirtualMFADevice", "EnableMFADevice", "RegisterFIDOSecurityKey"):
        CHECKS.ok(action in actions, f"audit.log records {action}", sorted(a for a in actions if a))
    CHECKS.ok(all(e.get("account") == account for e in events), "audit lines name the account")
    logs = {"audit.log": text}
    if broker_log is not None:
        logs["broker log"] = broker_log.read_text()
    show("secrets looked for", len(SECRETS))
    for name, content in logs.items():
        leaked = [s[:4] + "…" for s in SECRETS if s in content]
        CHECKS.ok(not leaked, f"{name} holds none of the {len(SECRETS)} secrets, tokens and seeds", leaked)


def read_root_credentials(data_dir: Path) -> tuple[str, str]:
    path = data_dir / "root-credentials.csv"
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    CHECKS.eq(rows[0] if rows else None, ["User Name", "Access key ID", "Secret access key"], "CSV header")
    CHECKS.eq(len(rows), 2, "CSV rows (header + root)")
    user, akid, secret = rows[1]
    CHECKS.eq(user, "root", "CSV user name")
    CHECKS.ok(bool(re.fullmatch(r"AKIA[A-Z0-9]{16}", akid)), "root Access key ID is AKIA…", akid)
    CHECKS.eq(len(secret), 40, "len(root secret)")
    CHECKS.eq(oct(path.stat().st_mode & 0o777), "0o600", "root-credentials.csv mode")
    show("root Access key ID", akid)
    return akid, secret


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--data-dir", required=True, type=Path)
    ap.add_argument("--broker", required=True, help="path to the sts-broker binary (for admin commands)")
    ap.add_argument("--work", required=True, type=Path, help="scratch directory")
    ap.add_argument("--broker-log", type=Path, help="the broker's stdout/stderr, checked for secrets")
    ap.add_argument("--openapi", type=Path, help="openapi.yaml whose error schemas every error must match")
    args = ap.parse_args()
    global SPEC
    SPEC = Spec(args.openapi)
    args.work.mkdir(parents=True, exist_ok=True)
    # Nothing from the host's AWS setup may leak into boto3 either.
    for k in [k for k in os.environ if k.startswith("AWS_")]:
        del os.environ[k]
    os.environ["AWS_CONFIG_FILE"] = str(args.work / "no-aws-config")
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = str(args.work / "no-aws-credentials")
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"

    totp_self_test()
    aws = str(Path(sys.executable).with_name("aws"))
    p = subprocess.run([aws, "--version"], capture_output=True, text=True)
    print(f"boto3 {boto3.__version__}, botocore {botocore.__version__}; {(p.stdout or p.stderr).strip()}")

    started = time.time()
    try:
        step("root-credentials.csv")
        root = read_root_credentials(args.data_dir)
        sts_root, _ = boto_clients(args.endpoint, *root)
        account = sts_root.get_caller_identity()["Account"]
        show("account", account)
        boto3_identity_flow(args.endpoint, root, account)
        raw_http(args.endpoint, root, account)
        cli = Cli(aws, args.endpoint, args.work)
        cli_identity_flow(cli, root, account)
        cli_mfa_flow(cli, root, account, args.broker, args.data_dir)
        check_logs(args.data_dir, args.broker_log, account)
    except Fatal as e:
        CHECKS.ok(False, f"fatal: {e}")
    except (ClientError, botocore.exceptions.BotoCoreError) as e:
        CHECKS.ok(False, f"unexpected client error: {e}")

    print(f"\nclient checks took {time.time() - started:.1f} s")
    for f in CHECKS.failed:
        print(f"FAILED: {f}")
    print(f"clients: {CHECKS.passed} passed, {len(CHECKS.failed)} failed")
    return 1 if CHECKS.failed else 0


if __name__ == "__main__":
    sys.exit(main())
