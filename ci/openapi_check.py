#!/usr/bin/env python3
"""Keeps openapi/openapi.yaml in step with the code (run by .ci/run after openapi-spec-validator).

Checks that:
- the actions the spec models (the `Action` discriminator, `components.x-actions`, the request
  schemas' `Action` consts, `x-service`, `x-response`) are exactly the actions that
  src/api/sts/mod.rs and src/api/iam/mod.rs dispatch, each under its service and version;
- every error code that src/protocol/error.rs can put on the wire has an `<Code>Error` schema,
  reachable from the response of the HTTP status that error.rs gives it;
- the fixed error texts (constants and `#[error("…")]` without fields) of src/protocol/error.rs
  and src/sigv4/error.rs, and the root-console refusal of src/api/iam/mfa_devices.rs appear in
  the spec verbatim.

Usage: openapi_check.py openapi/openapi.yaml
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
# Declared in ApiError but constructed nowhere (checked below); not on the wire.
UNUSED_CODES: set[str] = set()

failures: list[str] = []


def fail(msg: str) -> None:
    failures.append(msg)
    print(f"FAIL {msg}")


def rust_string(lit: str) -> str:
    """The value of a Rust string literal body (the escapes the sources use)."""
    return lit.replace('\\"', '"').replace("\\\\", "\\")


def dispatched_actions(path: Path) -> set[str]:
    text = path.read_text()
    body = text[text.index("async fn dispatch"):]
    body = body[: body.index("\n}\n")]
    return set(re.findall(r'^\s*"(\w+)" =>', body, re.M))


def error_codes_and_statuses() -> dict[str, int]:
    text = (ROOT / "src/protocol/error.rs").read_text()
    code_fn = text[text.index("fn code(&self)"):]
    code_fn = code_fn[: code_fn.index("\n    }\n")]
    variant_code = dict(re.findall(r"Self::(\w+)[^=]*=> \"(\w+)\"", code_fn))
    status_fn = text[text.index("fn status(&self)"):]
    status_fn = status_fn[: status_fn.index("\n    }\n")]
    names = {"FORBIDDEN": 403, "BAD_REQUEST": 400, "NOT_FOUND": 404, "CONFLICT": 409, "PAYLOAD_TOO_LARGE": 413,
             "REQUEST_HEADER_FIELDS_TOO_LARGE": 431, "REQUEST_TIMEOUT": 408, "INTERNAL_SERVER_ERROR": 500,
             "SERVICE_UNAVAILABLE": 503}
    statuses: dict[str, int] = {}
    pending: list[str] = []
    for token in re.findall(r"Self::(\w+)|StatusCode::(\w+)", status_fn):
        variant, status = token
        if variant:
            pending.append(variant)
        else:
            for v in pending:
                statuses[variant_code[v]] = names[status]
            pending = []
    return statuses


def fixed_texts() -> list[str]:
    texts = []
    for path in ("src/protocol/error.rs", "src/sigv4/error.rs"):
        for lit in re.findall(r'pub(?:\((?:crate|super)\))? const \w+: &str =\s*"((?:[^"\\]|\\.)*)"', (ROOT / path).read_text()):
            texts.append(rust_string(lit))
    for path in ("src/protocol/error.rs", "src/sigv4/error.rs"):
        for lit in re.findall(r'#\[error\(\s*"((?:[^"\\]|\\.)*)"\s*\)\]', (ROOT / path).read_text()):
            if "{" not in lit:
                texts.append(rust_string(lit))
    mfa = (ROOT / "src/api/iam/mfa_devices.rs").read_text()
    m = re.search(r'const ROOT_CONSOLE_ONLY: &str = "((?:[^"\\]|\\.)*)"', mfa)
    if m:
        texts.append(rust_string(m.group(1)))
    else:
        fail("src/api/iam/mfa_devices.rs: ROOT_CONSOLE_ONLY not found")
    return texts


def spec_strings(node, out: list[str]) -> None:
    if isinstance(node, dict):
        for v in node.values():
            spec_strings(v, out)
    elif isinstance(node, list):
        for v in node:
            spec_strings(v, out)
    elif isinstance(node, str):
        out.append(node)


def main() -> int:
    spec_path = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "openapi/openapi.yaml")
    spec = yaml.safe_load(spec_path.read_text())
    comps = spec["components"]
    schemas = comps["schemas"]

    def deref(ref: str) -> dict:
        assert ref.startswith("#/components/schemas/"), ref
        return schemas[ref.rsplit("/", 1)[1]]

    # ---- actions
    code = {"sts": dispatched_actions(ROOT / "src/api/sts/mod.rs"),
            "iam": dispatched_actions(ROOT / "src/api/iam/mod.rs")}
    all_code = code["sts"] | code["iam"]
    mapping = schemas["ActionRequest"]["discriminator"]["mapping"]
    one_of = {o["$ref"] for o in schemas["ActionRequest"]["oneOf"]}
    table = {k: v for k, v in comps["x-actions"].items() if k != "description"}
    if set(mapping) != all_code:
        fail(f"discriminator actions differ from src: spec-only {sorted(set(mapping) - all_code)}, "
             f"code-only {sorted(all_code - set(mapping))}")
    if set(table) != all_code:
        fail(f"x-actions differ from src: spec-only {sorted(set(table) - all_code)}, "
             f"code-only {sorted(all_code - set(table))}")
    if set(mapping.values()) != one_of:
        fail("ActionRequest.oneOf and discriminator.mapping name different schemas")
    success_schema = comps["responses"]["Success"]["content"]["text/xml"]["schema"]
    # As JSON (what a validator such as schemathesis checks), the bodies of the actions without
    # output are alike: a `oneOf` would refuse every one of them for matching several.
    if "oneOf" in success_schema:
        fail("the Success response lists its schemas in a oneOf; it must be an anyOf")
    success = {o["$ref"] for o in success_schema.get("anyOf", [])}
    versions = {"sts": "#/components/schemas/StsVersion", "iam": "#/components/schemas/IamVersion"}
    for action, ref in mapping.items():
        req = deref(ref)
        service = "sts" if action in code["sts"] else "iam"
        if req["properties"]["Action"].get("const") != action:
            fail(f"{ref}: Action const is not {action}")
        if req["properties"]["Version"].get("$ref") != versions[service]:
            fail(f"{ref}: Version is not the {service} version")
        if req.get("x-service") != service:
            fail(f"{ref}: x-service is not {service}")
        row = table.get(action, {})
        if row.get("service") != service or row.get("request") != ref:
            fail(f"x-actions.{action}: service/request disagree ({row})")
        resp = req.get("x-response")
        if resp != row.get("response"):
            fail(f"{action}: x-response {resp} differs from x-actions {row.get('response')}")
        if resp not in success:
            fail(f"{action}: {resp} is not among the 200 response's schemas")
        elif deref(resp).get("xml", {}).get("name") != f"{action}Response":
            fail(f"{resp}: xml.name is not {action}Response")
        if req.get("x-errors") != row.get("errors"):
            fail(f"{action}: x-errors differ between the request schema and x-actions")
        for err_code in req.get("x-errors", []):
            if f"{err_code}Error" not in schemas:
                fail(f"{action}: error {err_code} has no {err_code}Error schema")

    # ---- error codes and statuses
    statuses = error_codes_and_statuses()
    src_text = "\n".join(p.read_text() for p in (ROOT / "src").rglob("*.rs") if p.name != "error.rs")
    for unused in UNUSED_CODES:
        if re.search(rf"ApiError::{unused}\b", src_text):
            fail(f"ApiError::{unused} is now constructed: describe it in the spec")
    status_of_response = {}
    for method in ("get", "post"):
        for status, resp in spec["paths"]["/"][method]["responses"].items():
            status_of_response[resp["$ref"].rsplit("/", 1)[1]] = int(status)
    reachable: dict[str, int] = {}
    for name, resp in comps["responses"].items():
        schema = resp.get("content", {}).get("text/xml", {}).get("schema", {})
        for ref in [o["$ref"] for o in schema.get("oneOf", [])] + ([schema["$ref"]] if "$ref" in schema else []):
            reachable[ref.rsplit("/", 1)[1]] = status_of_response.get(name, 0)
    for err_code, status in sorted(statuses.items()):
        if err_code in UNUSED_CODES:
            continue
        schema_name = f"{err_code}Error"
        if schema_name not in schemas:
            fail(f"error code {err_code} ({status}) has no {schema_name} schema")
            continue
        part = schemas[schema_name]["allOf"][1]["properties"]["Error"]["properties"]
        if part["Code"].get("const") != err_code:
            fail(f"{schema_name}: Code const is not {err_code}")
        want_type = "Receiver" if status >= 500 else "Sender"
        if part["Type"].get("const") != want_type:
            fail(f"{schema_name}: Type is not {want_type}")
        if reachable.get(schema_name) != status:
            fail(f"{schema_name}: not reachable from the {status} response (found {reachable.get(schema_name)})")

    # ---- fixed texts
    strings: list[str] = []
    spec_strings(spec, strings)
    blob = "\n".join(strings)
    texts = fixed_texts()
    for t in texts:
        if t not in blob:
            fail(f"text missing from the spec: {t!r}")

    print(f"openapi_check: {len(all_code)} actions, {len(statuses) - len(UNUSED_CODES)} error codes, "
          f"{len(texts)} fixed texts checked against src/")
    if failures:
        print(f"openapi_check: {len(failures)} problem(s)")
        return 1
    print("openapi_check: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
