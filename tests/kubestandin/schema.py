"""Structural-schema handling of a CRD's `openAPIV3Schema`, the way kube-apiserver applies it to a custom
resource on create/update: prune unknown fields (or reject them under `fieldValidation=Strict`), apply
`default`s, then validate, with Kubernetes-style field paths and messages.

    schema = crd_schema(load_crd(path), "v1")
    result = schema.admit(obj, field_validation="Strict")
    result.obj             # pruned + defaulted copy
    result.unknown         # ['spec.foo', 'spec.rayClusterSpec.headGroupSpec.template.spec.containers[0].imagee']
    result.errors          # [FieldError(...)] -> 422 Invalid

Supported: type (object/array/string/integer/number/boolean), properties, additionalProperties
(schema or bool), items, required, enum, nullable, pattern, min/maxLength, min/maxItems,
min/maxProperties, minimum/maximum (+exclusive), multipleOf, format (int32/int64 ranges, date-time,
byte), allOf/anyOf/oneOf/not (value checks only, as in structural schemas), `x-kubernetes-int-or-string`,
`x-kubernetes-preserve-unknown-fields`, `x-kubernetes-embedded-resource` (apiVersion/kind/metadata kept),
`x-kubernetes-list-type` set/map (duplicates rejected), `x-kubernetes-map-type` (nothing to check), and
`x-kubernetes-validations` for the small CEL subset KubeRay's CRDs use (has(), ==, !=, in, !, &&, ||,
literals, lists; transition rules with `oldSelf` only on update). A rule outside that subset is skipped
and recorded in `result.skipped_rules`, never guessed.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

_CACHE_DIR = Path(__file__).resolve().parents[2] / ".cache" / "kubestandin"

# ObjectMeta fields a client may send (metav1.ObjectMeta json names).
OBJECT_META_FIELDS = {
    "name", "generateName", "namespace", "selfLink", "uid", "resourceVersion", "generation",
    "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "labels", "annotations",
    "ownerReferences", "finalizers", "managedFields",
}
OWNER_REFERENCE_FIELDS = {"apiVersion", "kind", "name", "uid", "controller", "blockOwnerDeletion"}


def load_crd(path: str | Path) -> dict[str, Any]:
    """The CRD document, parsed once per file content (JSON cache under .cache/kubestandin/)."""
    path = Path(path)
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    cached = _CACHE_DIR / f"{path.name}.{digest[:16]}.json"
    try:
        return json.loads(cached.read_text())
    except (OSError, ValueError):
        pass
    import yaml

    doc = yaml.load(raw, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    try:
        _CACHE_DIR.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc))
        tmp.replace(cached)
    except OSError:
        pass
    return doc


def crd_schema(crd: dict[str, Any], version: str) -> StructuralSchema:
    for v in crd["spec"]["versions"]:
        if v["name"] == version:
            return StructuralSchema(v["schema"]["openAPIV3Schema"],
                                    status_subresource="status" in (v.get("subresources") or {}))
    raise KeyError(f"version {version} not in CRD {crd['metadata']['name']}")


# --------------------------------------------------------------------------------------------------
# Errors


def _jv(value: Any) -> str:
    """A value as kube-apiserver prints it in `Invalid value: ...` (Go %#v-ish: strings quoted)."""
    if isinstance(value, dict):
        return '"object"'
    if isinstance(value, list):
        return '"array"'
    return json.dumps(value)


@dataclass
class FieldError:
    path: str
    type: str  # Invalid | Required | Unsupported | Duplicate | TooLong | TooMany | Forbidden
    value: Any = None
    detail: str = ""

    REASONS = {"Invalid": "FieldValueInvalid", "Required": "FieldValueRequired",
               "Unsupported": "FieldValueNotSupported", "Duplicate": "FieldValueDuplicate",
               "TooLong": "FieldValueTooLong", "TooMany": "FieldValueTooMany", "Forbidden": "FieldValueForbidden"}

    @property
    def reason(self) -> str:
        return self.REASONS.get(self.type, "FieldValueInvalid")

    def message(self) -> str:
        if self.type == "Required":
            return f"{self.path}: Required value" + (f": {self.detail}" if self.detail else "")
        if self.type == "Unsupported":
            return f"{self.path}: Unsupported value: {_jv(self.value)}: {self.detail}"
        if self.type == "Duplicate":
            return f"{self.path}: Duplicate value: {_jv(self.value)}"
        if self.type in ("TooLong", "TooMany", "Forbidden"):
            label = {"TooLong": "Too long", "TooMany": "Too many", "Forbidden": "Forbidden"}[self.type]
            return f"{self.path}: {label}: {self.detail}"
        return f"{self.path}: Invalid value: {_jv(self.value)}: {self.detail}"

    def cause(self) -> dict[str, str]:
        return {"reason": self.reason, "message": self.message().split(": ", 1)[1], "field": self.path}


@dataclass
class AdmitResult:
    obj: Any
    errors: list[FieldError] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    skipped_rules: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------------
# A tiny CEL subset (what KubeRay's x-kubernetes-validations use)

_TOKEN = re.compile(r"""\s*(?:(?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")|(?P<num>-?\d+(?:\.\d+)?)|"""
                    r"""(?P<op>&&|\|\||==|!=|<=|>=|[()\[\],.!<>])|(?P<id>[A-Za-z_][A-Za-z0-9_]*))""")


class _Unsupported(Exception):
    pass


class _Absent:
    """A field that is not set: has() is false, any other use makes the rule not evaluable."""


_ABSENT = _Absent()


def _tokens(src: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(src):
        if src[pos:].strip() == "":
            break
        m = _TOKEN.match(src, pos)
        if not m or m.end() == pos:
            raise _Unsupported(src[pos:])
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


class _Cel:
    """Recursive-descent parser producing closures: or > and > not/compare/in > primary."""

    def __init__(self, src: str):
        self.toks = _tokens(src)
        self.i = 0
        self.uses_old = any(t == ("id", "oldSelf") for t in self.toks)
        self.fn = self._or()
        if self.i != len(self.toks):
            raise _Unsupported(src)

    def _peek(self) -> tuple[str, str] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def _eat(self, val: str | None = None) -> tuple[str, str]:
        t = self._peek()
        if t is None or (val is not None and t[1] != val):
            raise _Unsupported(f"expected {val}")
        self.i += 1
        return t

    def _or(self):
        left = self._and()
        while self._peek() == ("op", "||"):
            self._eat()
            right, l0 = self._and(), left
            left = (lambda a, b: lambda env: bool(a(env)) or bool(b(env)))(l0, right)
        return left

    def _and(self):
        left = self._unary()
        while self._peek() == ("op", "&&"):
            self._eat()
            right, l0 = self._unary(), left
            left = (lambda a, b: lambda env: bool(a(env)) and bool(b(env)))(l0, right)
        return left

    def _unary(self):
        if self._peek() == ("op", "!"):
            self._eat()
            inner = self._unary()
            return lambda env: not inner(env)
        left = self._primary()
        t = self._peek()
        if t in (("op", "=="), ("op", "!=")):
            self._eat()
            right = self._primary()
            eq = t[1] == "=="
            return lambda env: (_val(left(env)) == _val(right(env))) == eq
        if t == ("id", "in"):
            self._eat()
            right = self._primary()
            return lambda env: _val(left(env)) in _val(right(env))
        return left

    def _primary(self):
        t = self._eat()
        kind, val = t
        if val == "(":
            inner = self._or()
            self._eat(")")
            return inner
        if val == "[":
            items = []
            while self._peek() != ("op", "]"):
                items.append(self._or())
                if self._peek() == ("op", ","):
                    self._eat()
            self._eat("]")
            return lambda env: [_val(f(env)) for f in items]
        if kind == "str":
            s = json.loads('"' + val[1:-1].replace('"', '\\"') + '"') if val[0] == "'" else json.loads(val)
            return lambda env: s
        if kind == "num":
            n = float(val) if "." in val else int(val)
            return lambda env: n
        if kind == "id" and val in ("true", "false", "null"):
            c = {"true": True, "false": False, "null": None}[val]
            return lambda env: c
        if kind == "id" and val == "has":
            self._eat("(")
            path = self._path()
            self._eat(")")
            return lambda env: not isinstance(_walk_path(env, path), _Absent)
        if kind == "id" and val in ("self", "oldSelf"):
            self.i -= 1
            path = self._path()
            return lambda env: _walk_path(env, path)
        raise _Unsupported(val)

    def _path(self) -> list[str]:
        root = self._eat()[1]
        if root not in ("self", "oldSelf"):
            raise _Unsupported(root)
        path = [root]
        while self._peek() == ("op", "."):
            self._eat()
            path.append(self._eat()[1])
        return path


def _walk_path(env: dict[str, Any], path: list[str]) -> Any:
    cur = env.get(path[0], _ABSENT)
    for p in path[1:]:
        if isinstance(cur, dict) and p in cur:
            cur = cur[p]
        else:
            return _ABSENT
    return cur


def _val(v: Any) -> Any:
    if isinstance(v, _Absent):
        raise _Unsupported("no such key")
    return v


# --------------------------------------------------------------------------------------------------
# The schema walk

_INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}
_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


def _type_name(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


def _is_type(v: Any, t: str) -> bool:
    if t == "object":
        return isinstance(v, dict)
    if t == "array":
        return isinstance(v, list)
    if t == "string":
        return isinstance(v, str)
    if t == "boolean":
        return isinstance(v, bool)
    if t == "integer":
        return (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer())
    if t == "number":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    return True


class StructuralSchema:
    def __init__(self, root: dict[str, Any], *, status_subresource: bool = True):
        self.root = root
        self.status_subresource = status_subresource
        self._cel_cache: dict[str, _Cel | None] = {}

    def admit(self, obj: dict[str, Any], *, old: dict[str, Any] | None = None,
              field_validation: str = "Strict") -> AdmitResult:
        """Prune/default/validate a whole object (apiVersion, kind, metadata, spec, status)."""
        res = AdmitResult(obj=None)
        res.obj = self._walk(obj, self.root, "", res, old, top=True)
        return res

    def admit_subtree(self, value: Any, dotted: str, *, old: Any = None) -> AdmitResult:
        """Validate one property of the root (e.g. "status") as the schema describes it."""
        schema = self.root
        for part in dotted.split("."):
            schema = schema["properties"][part]
        res = AdmitResult(obj=None)
        res.obj = self._walk(value, schema, dotted, res, old)
        return res

    # -- helpers
    def _cel(self, rule: str) -> _Cel | None:
        if rule not in self._cel_cache:
            try:
                self._cel_cache[rule] = _Cel(rule)
            except _Unsupported:
                self._cel_cache[rule] = None
        return self._cel_cache[rule]

    def _err(self, res: AdmitResult, *a: Any) -> None:
        res.errors.append(FieldError(*a))

    def _walk(self, value: Any, schema: dict[str, Any], path: str, res: AdmitResult, old: Any,
              top: bool = False) -> Any:
        p = path or "<root>"
        if value is None:
            if schema.get("nullable"):
                return None
            t = schema.get("type") or ("string" if schema.get("x-kubernetes-int-or-string") else "object")
            self._err(res, p, "Invalid", None, f"{p} in body must be of type {t}: \"null\"")
            return None
        if schema.get("x-kubernetes-int-or-string"):
            if not (_is_type(value, "integer") or isinstance(value, str)):
                self._err(res, p, "Invalid", value,
                          f"{p} in body must be of type integer,string: \"{_type_name(value)}\"")
                return value
            self._checks(value, schema, p, res, old)
            return int(value) if isinstance(value, float) else value
        t = schema.get("type")
        if t and not _is_type(value, t):
            self._err(res, p, "Invalid", value, f"{p} in body must be of type {t}: \"{_type_name(value)}\"")
            return value
        if isinstance(value, dict) and (t == "object" or "properties" in schema or "additionalProperties" in schema):
            out = self._object(value, schema, path, res, old, top)
        elif isinstance(value, list) and t == "array":
            out = self._array(value, schema, path, res, old)
        else:
            out = int(value) if t == "integer" and isinstance(value, float) else value
        self._checks(out, schema, p, res, old)
        return out

    def _object(self, value: dict[str, Any], schema: dict[str, Any], path: str, res: AdmitResult, old: Any,
                top: bool) -> dict[str, Any]:
        props: dict[str, Any] = schema.get("properties") or {}
        addl = schema.get("additionalProperties")
        preserve = schema.get("x-kubernetes-preserve-unknown-fields", False)
        embedded = schema.get("x-kubernetes-embedded-resource", False)
        old = old if isinstance(old, dict) else None
        out: dict[str, Any] = {}
        for k, v in value.items():
            sub = f"{path}.{k}" if path else k
            if (top or embedded) and k == "metadata" and ("metadata" not in props or props["metadata"].get("properties") is None):
                out[k] = self._object_meta(v, sub, res)
            elif (top or embedded) and k in ("apiVersion", "kind") and k not in props:
                out[k] = v
            elif k in props:
                if v is None and not props[k].get("nullable"):
                    continue  # nulls of non-nullable fields are pruned (then defaulted)
                out[k] = self._walk(v, props[k], sub, res, old.get(k) if old else None)
            elif isinstance(addl, dict):
                out[k] = self._walk(v, addl, sub, res, old.get(k) if old else None)
            elif addl is True or preserve:
                out[k] = copy.deepcopy(v)
            else:
                res.unknown.append(sub)
        for k, s in props.items():
            if k not in out and "default" in s:
                out[k] = copy.deepcopy(s["default"])
        for k in schema.get("required") or []:
            if k not in out:
                self._err(res, f"{path}.{k}" if path else k, "Required")
        return out

    def _object_meta(self, meta: Any, path: str, res: AdmitResult) -> Any:
        if not isinstance(meta, dict):
            self._err(res, path, "Invalid", meta, f"{path} in body must be of type object: \"{_type_name(meta)}\"")
            return meta
        out = {}
        for k, v in meta.items():
            if k not in OBJECT_META_FIELDS:
                res.unknown.append(f"{path}.{k}")
                continue
            if k == "ownerReferences" and isinstance(v, list):
                refs = []
                for i, ref in enumerate(v):
                    if isinstance(ref, dict):
                        for rk in ref:
                            if rk not in OWNER_REFERENCE_FIELDS:
                                res.unknown.append(f"{path}.ownerReferences[{i}].{rk}")
                        ref = {rk: rv for rk, rv in ref.items() if rk in OWNER_REFERENCE_FIELDS}
                    refs.append(ref)
                v = refs
            out[k] = copy.deepcopy(v)
        return out

    def _array(self, value: list[Any], schema: dict[str, Any], path: str, res: AdmitResult, old: Any) -> list[Any]:
        items = schema.get("items") or {}
        out = [self._walk(v, items, f"{path}[{i}]", res, None) for i, v in enumerate(value)]
        lt = schema.get("x-kubernetes-list-type")
        if lt == "set":
            seen: list[Any] = []
            for i, v in enumerate(out):
                if v in seen:
                    self._err(res, f"{path}[{i}]", "Duplicate", v)
                seen.append(v)
        elif lt == "map":
            keys = schema.get("x-kubernetes-list-map-keys") or []
            seen_keys: list[tuple] = []
            for i, v in enumerate(out):
                if not isinstance(v, dict):
                    continue
                key = tuple(v.get(k, (items.get("properties") or {}).get(k, {}).get("default")) for k in keys)
                if key in seen_keys:
                    shown = {k: kv for k, kv in zip(keys, key, strict=True)}
                    self._err(res, f"{path}[{i}]", "Duplicate", shown)
                seen_keys.append(key)
        return out

    def _checks(self, value: Any, schema: dict[str, Any], p: str, res: AdmitResult, old: Any) -> None:
        if "enum" in schema and value not in schema["enum"]:
            supported = ", ".join(json.dumps(e) for e in schema["enum"])
            self._err(res, p, "Unsupported", value, f"supported values: {supported}")
        if isinstance(value, str):
            if "maxLength" in schema and len(value) > schema["maxLength"]:
                self._err(res, p, "TooLong", value, f"may not be more than {schema['maxLength']} bytes")
            if "minLength" in schema and len(value) < schema["minLength"]:
                self._err(res, p, "Invalid", value, f"{p} in body should be at least {schema['minLength']} chars long")
            if "pattern" in schema and not re.search(schema["pattern"], value):
                self._err(res, p, "Invalid", value, f"{p} in body should match '{schema['pattern']}'")
            fmt = schema.get("format")
            if fmt == "date-time" and not _DATE_TIME.match(value):
                self._err(res, p, "Invalid", value, f"{p} in body must be of type date-time: {json.dumps(value)}")
            if fmt == "byte":
                try:
                    base64.b64decode(value, validate=True)
                except ValueError:
                    self._err(res, p, "Invalid", value, f"{p} in body must be of type byte: {json.dumps(value)}")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            fmt = schema.get("format")
            if fmt in _INT_RANGES and isinstance(value, int):
                lo, hi = _INT_RANGES[fmt]
                if not lo <= value <= hi:
                    self._err(res, p, "Invalid", value, f"{p} in body must be of type {fmt}: {value}")
            if isinstance(value, float) and not math.isfinite(value):
                self._err(res, p, "Invalid", value, f"{p} in body must be a finite number")
            if "minimum" in schema:
                m, ex = schema["minimum"], schema.get("exclusiveMinimum") is True
                if value < m or (ex and value == m):
                    rel = "greater than" if ex else "greater than or equal to"
                    self._err(res, p, "Invalid", value, f"{p} in body should be {rel} {m}")
            if "maximum" in schema:
                m, ex = schema["maximum"], schema.get("exclusiveMaximum") is True
                if value > m or (ex and value == m):
                    rel = "less than" if ex else "less than or equal to"
                    self._err(res, p, "Invalid", value, f"{p} in body should be {rel} {m}")
            if schema.get("multipleOf") and (value / schema["multipleOf"]) % 1:
                self._err(res, p, "Invalid", value, f"{p} in body should be a multiple of {schema['multipleOf']}")
        if isinstance(value, list):
            if "maxItems" in schema and len(value) > schema["maxItems"]:
                self._err(res, p, "TooMany", len(value), f"{len(value)}: must have at most {schema['maxItems']} items")
            if "minItems" in schema and len(value) < schema["minItems"]:
                self._err(res, p, "Invalid", value, f"{p} in body should have at least {schema['minItems']} items")
        if isinstance(value, dict):
            if "maxProperties" in schema and len(value) > schema["maxProperties"]:
                self._err(res, p, "TooMany", len(value), f"{len(value)}: must have at most {schema['maxProperties']} items")
            if "minProperties" in schema and len(value) < schema["minProperties"]:
                self._err(res, p, "Invalid", value, f"{p} in body should have at least {schema['minProperties']} properties")
        for key in ("allOf", "anyOf", "oneOf"):
            subs = schema.get(key)
            if not subs:
                continue
            oks = [not self._quiet(value, s) for s in subs]
            if (key == "allOf" and not all(oks)) or (key == "anyOf" and not any(oks)) or (key == "oneOf" and sum(oks) != 1):
                self._err(res, p, "Invalid", value, f"{p} in body must validate {key.replace('Of', ' of')} the schemas")
        if "not" in schema and not self._quiet(value, schema["not"]):
            self._err(res, p, "Invalid", value, f"{p} in body must not validate the schema (not)")
        for rule in schema.get("x-kubernetes-validations") or []:
            self._cel_rule(value, rule, p, res, old)

    def _quiet(self, value: Any, schema: dict[str, Any]) -> list[FieldError]:
        """Errors of `value` against a value-validation-only sub-schema (allOf/anyOf/oneOf/not)."""
        r = AdmitResult(obj=None)
        if "type" in schema and not _is_type(value, schema["type"]):
            return [FieldError("", "Invalid", value, "type")]
        self._checks(value, schema, "", r, None)
        if isinstance(value, dict):
            for k, s in (schema.get("properties") or {}).items():
                if k in value:
                    r.errors += self._quiet(value[k], s)
            for k in schema.get("required") or []:
                if k not in value:
                    r.errors.append(FieldError(k, "Required"))
        return r.errors

    def _cel_rule(self, value: Any, rule: dict[str, Any], p: str, res: AdmitResult, old: Any) -> None:
        src = rule.get("rule", "")
        cel = self._cel(src)
        if cel is None:
            res.skipped_rules.append(f"{p}: {src}")
            return
        if cel.uses_old and old is None:
            return  # transition rule: only evaluated on update, against the old value
        try:
            ok = cel.fn({"self": value, "oldSelf": old})
        except (_Unsupported, TypeError):
            res.skipped_rules.append(f"{p}: {src}")
            return
        if not ok:
            msg = rule.get("message") or f"failed rule: {src}"
            self._err(res, p + (f".{rule['fieldPath'].lstrip('.')}" if rule.get("fieldPath") else ""),
                      "Invalid", value, msg)


# --------------------------------------------------------------------------------------------------
# ObjectMeta validation (what the API server checks itself, independent of the CRD schema)

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

_SUBDOMAIN_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
                  "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
                  "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
_QUALIFIED_MSG = ("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
                  "with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
                  "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')")
_LABEL_VALUE_MSG = ("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
                    "and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or "
                    "'12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')")


def dns1123_subdomain_errors(name: str) -> list[str]:
    errs = []
    if len(name) > 253:
        errs.append("must be no more than 253 characters")
    if not DNS1123_SUBDOMAIN.match(name):
        errs.append(_SUBDOMAIN_MSG)
    return errs


def dns1035_label_errors(name: str) -> list[str]:
    errs = []
    if len(name) > 63:
        errs.append("must be no more than 63 characters")
    if not DNS1035_LABEL.match(name):
        errs.append("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
                    "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or "
                    "'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')")
    return errs


def _qualified_name_errors(key: str) -> list[str]:
    errs = []
    prefix, _, name = key.rpartition("/")
    if "/" in key and not prefix:
        errs.append("prefix part must be non-empty")
    if prefix:
        errs += [f"prefix part {e}" for e in dns1123_subdomain_errors(prefix)]
    if not name:
        errs.append("name part must be non-empty")
    else:
        if len(name) > 63:
            errs.append("name part must be no more than 63 characters")
        if not _QUALIFIED_NAME.match(name):
            errs.append(_QUALIFIED_MSG)
    return errs


def validate_object_meta(meta: dict[str, Any], *, namespaced: bool = True) -> list[FieldError]:
    """ValidateObjectMeta for a custom resource: name (DNS-1123 subdomain), labels, annotations, ownerRefs."""
    errs: list[FieldError] = []
    name = meta.get("name")
    if not name and not meta.get("generateName"):
        errs.append(FieldError("metadata.name", "Required", detail="name or generateName is required"))
    elif name is not None:
        if not isinstance(name, str):
            errs.append(FieldError("metadata.name", "Invalid", name, "must be a string"))
        else:
            for e in dns1123_subdomain_errors(name):
                errs.append(FieldError("metadata.name", "Invalid", name, e))
    labels = meta.get("labels") or {}
    if not isinstance(labels, dict):
        errs.append(FieldError("metadata.labels", "Invalid", labels, "must be a map of strings"))
        labels = {}
    for k, v in labels.items():
        for e in _qualified_name_errors(k):
            errs.append(FieldError("metadata.labels", "Invalid", k, e))
        if not isinstance(v, str):
            errs.append(FieldError("metadata.labels", "Invalid", v, "label values must be strings"))
            continue
        if len(v) > 63:
            errs.append(FieldError("metadata.labels", "Invalid", v, "must be no more than 63 characters"))
        if not _LABEL_VALUE.match(v):
            errs.append(FieldError("metadata.labels", "Invalid", v, _LABEL_VALUE_MSG))
    ann = meta.get("annotations") or {}
    if not isinstance(ann, dict):
        errs.append(FieldError("metadata.annotations", "Invalid", ann, "must be a map of strings"))
        ann = {}
    total = 0
    for k, v in ann.items():
        for e in _qualified_name_errors(k.lower()):
            errs.append(FieldError("metadata.annotations", "Invalid", k, e))
        if not isinstance(v, str):
            errs.append(FieldError("metadata.annotations", "Invalid", v, "annotation values must be strings"))
            continue
        total += len(k) + len(v)
    if total > 256 * 1024:
        errs.append(FieldError("metadata.annotations", "TooLong", None, "may not be more than 262144 bytes"))
    for i, ref in enumerate(meta.get("ownerReferences") or []):
        for k in ("apiVersion", "kind", "name", "uid"):
            if not isinstance(ref, dict) or not ref.get(k):
                errs.append(FieldError(f"metadata.ownerReferences[{i}].{k}", "Invalid", "",
                                       f"{k} must not be empty"))
    return errs


def parse_time(ts: str) -> datetime:
    return datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ")
