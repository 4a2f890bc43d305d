"""Schemathesis hooks for sts-broker (loaded with SCHEMATHESIS_HOOKS=ci.schemathesis_hooks).

The broker speaks the AWS Query protocol and checks SigV4 on every request, so a generated
request that is not signed only ever reaches the 403 MissingAuthenticationToken. These hooks
make the generated inputs reach the handlers and make the XML answers checkable:

- every request is signed with SigV4 (botocore's `SigV4Auth`, what the AWS CLI and boto3 use)
  with the root credentials of the broker's data dir, after requests has prepared it, so that
  the signature covers exactly the bytes sent (URL, form body, generated headers);
- `text/xml` responses are deserialized into the JSON shape the spec's schemas describe
  (`xml.wrapped` arrays of `member`, booleans and integers typed from the schema), so that
  schemathesis' own `response_schema_conformance` validates them;
- `xml_root_conformance` checks what a JSON Schema cannot say of an XML document: the root
  element's name and namespace are those of a schema documented for the status code, and a 200
  is the `<{Action}Response>` of the action that was asked for.

Environment: STS_BROKER_DATA_DIR (root-credentials.csv is read from it), STS_SCHEMATHESIS_REGION
(default us-east-1), STS_SCHEMATHESIS_TALLY (a file that gets one JSON line per answer: status,
action, error code, so that ci/schemathesis_check.sh can show how far the inputs got).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import zlib
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import requests
import schemathesis
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

STS_VERSION = "2011-06-15"
IAM_VERSION = "2010-05-08"
SIGNED_HEADERS_KEPT = ("content-type",)


def _root_credentials() -> Credentials:
    data_dir = os.environ.get("STS_BROKER_DATA_DIR")
    if not data_dir:
        raise RuntimeError("STS_BROKER_DATA_DIR must name the broker's data dir")
    with (Path(data_dir) / "root-credentials.csv").open(newline="") as f:
        rows = list(csv.reader(f))
    if len(rows) != 2 or len(rows[1]) != 3:
        raise RuntimeError("root-credentials.csv: expected a header and one row")
    _, akid, secret = rows[1]
    return Credentials(akid, secret)


_CREDENTIALS: Credentials | None = None
_REGION = os.environ.get("STS_SCHEMATHESIS_REGION", "us-east-1")


def _params(prepared: requests.PreparedRequest) -> dict[str, str]:
    """The Query parameters as the broker reads them: the query string, then a form body."""
    params = dict(parse_qsl(urlsplit(prepared.url or "").query, keep_blank_values=True))
    body = prepared.body
    ctype = prepared.headers.get("Content-Type", "")
    if body and ctype.startswith("application/x-www-form-urlencoded"):
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
        for k, v in parse_qsl(text, keep_blank_values=True):
            params.setdefault(k, v)
    return params


def _service(params: dict[str, str]) -> str:
    # The broker picks the service by Version (then by the scope's service); sign for the one
    # the Version names, else STS, so that an IAM action without Version reaches InvalidAction.
    return "iam" if params.get("Version") == IAM_VERSION else "sts"


def _as_a_client_sends(prepared: requests.PreparedRequest, body: bytes) -> None:
    parts = urlsplit(prepared.url or "")
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not k.startswith("X-Amz-")]
    prepared.url = urlunsplit(parts._replace(query=urlencode(query)))
    if "x-amz-content-sha256" in prepared.headers:
        prepared.headers["x-amz-content-sha256"] = hashlib.sha256(body).hexdigest()
    for name in ("X-Amz-Security-Token", "Date"):
        if name in prepared.headers:
            del prepared.headers[name]


def sign(prepared: requests.PreparedRequest) -> requests.PreparedRequest:
    """requests' auth hook: SigV4-sign the prepared request in place, as botocore would."""
    global _CREDENTIALS
    if _CREDENTIALS is None:
        _CREDENTIALS = _root_credentials()
    body = prepared.body or b""
    if isinstance(body, str):
        body = body.encode("utf-8")
    # The spec lists the presigned form's query parameters and the optional SigV4 headers, so
    # schemathesis fills them with its own values: most requests then stop at authentication
    # (IncompleteSignature, SignatureDoesNotMatch). Three in four are made what a real client
    # sends (the header form, the body's real digest, no token with a long-term key) so that
    # they reach the actions; the rest go as generated, with an Authorization header added
    # unless they are presigned, so that the broker's refusals are checked against the spec too.
    if zlib.crc32((prepared.url or "").encode() + body) % 4 != 0:
        _as_a_client_sends(prepared, body)
    params = _params(prepared)
    if "X-Amz-Algorithm" in params:
        return prepared
    # The signer sets the request time: in X-Amz-Date, or in Date when the case has a Date
    # header (botocore's rule; the broker reads Date when X-Amz-Date is absent). A generated
    # x-amz-content-sha256 or security token is kept and signed, so that the broker judges it.
    headers = {k: v for k, v in prepared.headers.items() if k.lower() not in ("authorization", "x-amz-date")}
    request = AWSRequest(method=prepared.method, url=prepared.url, data=body, headers=headers)
    SigV4Auth(_CREDENTIALS, _service(params), _REGION).add_auth(request)
    for name in ("Authorization", "X-Amz-Date", "Date"):
        if name in prepared.headers:
            del prepared.headers[name]
        if request.headers.get(name) is not None:
            prepared.headers[name] = request.headers[name]
    return prepared


@schemathesis.hook
def before_call(context: schemathesis.HookContext, case: schemathesis.Case, kwargs: dict[str, Any]) -> None:
    kwargs["auth"] = sign


_CODE = re.compile(rb"<Code>([^<]*)</Code>")


@schemathesis.hook
def after_call(context: schemathesis.HookContext, case: schemathesis.Case, response: schemathesis.Response) -> None:
    path = os.environ.get("STS_SCHEMATHESIS_TALLY")
    if not path:
        return
    request = response.request
    action = _params(request).get("Action", "") if request is not None else ""
    if not action and case.path != "/":
        action = case.method.upper() + " " + case.path  # the health probes
    code = _CODE.search(response.content or b"")
    line = {"status": response.status_code, "action": action, "code": code.group(1).decode() if code else ""}
    with open(path, "a") as f:
        f.write(json.dumps(line) + "\n")


# ---------------------------------------------------------------------------------------------
# XML responses


def _local(tag: str) -> tuple[str | None, str]:
    if tag.startswith("{"):
        ns, _, name = tag[1:].partition("}")
        return ns, name
    return None, tag


class _Schemas:
    """Resolves `$ref`s and merges `allOf`s of the loaded spec, for typing XML leaves."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw

    def resolve(self, schema: Any) -> dict[str, Any]:
        seen = 0
        while isinstance(schema, dict) and "$ref" in schema and seen < 32:
            node: Any = self.raw
            for part in schema["$ref"].lstrip("#/").split("/"):
                node = node[part]
            schema = {**node, **{k: v for k, v in schema.items() if k != "$ref"}}
            seen += 1
        return schema if isinstance(schema, dict) else {}

    def merged(self, schema: Any) -> dict[str, Any]:
        """The schema with its `allOf` parts merged: properties, type, xml."""
        s = self.resolve(schema)
        out: dict[str, Any] = {k: v for k, v in s.items() if k != "allOf"}
        props = dict(out.get("properties", {}))
        for part in s.get("allOf", []):
            p = self.merged(part)
            for k, v in p.items():
                if k == "properties":
                    for name, sub in v.items():
                        props[name] = {"allOf": [props[name], sub]} if name in props else sub
                else:
                    out.setdefault(k, v)
        if props:
            out["properties"] = props
        return out

    def kind(self, schema: Any) -> str | None:
        s = self.merged(schema)
        t = s.get("type")
        if isinstance(t, list):
            t = next((x for x in t if x != "null"), None)
        if t is None and "properties" in s:
            t = "object"
        return t

    def branches(self, schema: Any) -> list[dict[str, Any]]:
        s = self.resolve(schema)
        for key in ("oneOf", "anyOf"):
            if key in s:
                return [self.merged(b) for b in s[key]]
        return [self.merged(s)]


def _leaf(text: str, kind: str | None) -> Any:
    if kind == "boolean":
        return {"true": True, "false": False}.get(text, text)
    if kind == "integer" and re.fullmatch(r"-?\d+", text):
        return int(text)
    return text


def _convert(el: ET.Element, schema: Any, schemas: _Schemas) -> Any:
    s = schemas.merged(schema)
    kind = schemas.kind(s)
    children = list(el)
    if kind == "array":
        items = s.get("items", {})
        return [_convert(c, items, schemas) for c in children]
    if not children:
        if kind == "object":
            return {}
        return _leaf(el.text or "", kind)
    out: dict[str, Any] = {}
    props = s.get("properties", {})
    for c in children:
        _, name = _local(c.tag)
        out[name] = _convert(c, props.get(name, {}), schemas)
    return out


_SCHEMAS: _Schemas | None = None


def _schemas(operation: schemathesis.APIOperation) -> _Schemas:
    global _SCHEMAS
    if _SCHEMAS is None:
        _SCHEMAS = _Schemas(operation.schema.raw_schema)
    return _SCHEMAS


def _response_schema(operation: schemathesis.APIOperation, status: int) -> Any:
    raw = operation.definition.raw
    resp = raw.get("responses", {}).get(str(status))
    if resp is None:
        return None
    schemas = _schemas(operation)
    resp = schemas.resolve(resp)
    return resp.get("content", {}).get("text/xml", {}).get("schema")


def _documents_xml(operation: schemathesis.APIOperation, status: int) -> bool:
    """Whether the spec gives `status` of `operation` (or its default) a `text/xml` body, or
    documents the status not at all (then the answer must still be the broker's XML)."""
    responses = operation.definition.raw.get("responses", {})
    resp = responses.get(str(status), responses.get("default"))
    if resp is None:
        return True
    content = _schemas(operation).resolve(resp).get("content", {})
    return not content or "text/xml" in content


def _root_branches(
    operation: schemathesis.APIOperation, status: int, root: ET.Element
) -> tuple[list[dict[str, Any]], list[str]]:
    """The documented schemas for `status` whose XML name and namespace are the root's."""
    schema = _response_schema(operation, status)
    if schema is None:
        return [], []
    ns, name = _local(root.tag)
    matching, documented = [], []
    for b in _schemas(operation).branches(schema):
        xml = b.get("xml", {})
        documented.append(f"{xml.get('name')} ({xml.get('namespace', 'any namespace')})")
        if xml.get("name") == name and xml.get("namespace", ns) == ns:
            matching.append(b)
    return matching, documented


@schemathesis.deserializer("text/xml")
def deserialize_xml(ctx: schemathesis.DeserializationContext, response: schemathesis.Response) -> Any:
    root = ET.fromstring(response.content)
    branches, _ = _root_branches(ctx.operation, response.status_code, root)
    # No documented root: type nothing (xml_root_conformance reports it).
    schema = branches[0] if branches else {}
    return _convert(root, schema, _schemas(ctx.operation))


@schemathesis.check
def xml_root_conformance(ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case):
    """The XML root is one documented for the status; a 200 answers the action asked for."""
    ctype = response.headers.get("content-type", [""])[0] if response.headers else ""
    if not response.content:
        return None
    if not _documents_xml(case.operation, response.status_code):
        return None  # a JSON answer (the health probes): schemathesis' own checks judge it
    if not ctype.startswith("text/xml"):
        raise AssertionError(f"{response.status_code} with a body of type {ctype!r}, not text/xml")
    try:
        root = ET.fromstring(response.content)
    except ET.ParseError as e:
        raise AssertionError(f"the body is not well-formed XML: {e}") from e
    operation = case.operation
    if _response_schema(operation, response.status_code) is None:
        return None  # status_code_conformance reports an undocumented status
    branches, documented = _root_branches(operation, response.status_code, root)
    ns, name = _local(root.tag)
    if not branches:
        raise AssertionError(
            f"{response.status_code}: root <{name}> in {ns!r} is none of the documented {sorted(set(documented))}"
        )
    if response.status_code == 200:
        request = response.request
        params = _params(request) if request is not None else {}
        action = params.get("Action", "")
        if name != f"{action}Response":
            raise AssertionError(f"200 for Action={action!r} has the root <{name}>")
    return None
