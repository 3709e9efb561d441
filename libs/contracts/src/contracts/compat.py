"""Breaking-change detection between two JSON Schemas of the same event ``(type, version)``.

The rule for a published ``(type, version)``:

* the new schema must accept every payload the old one accepted, because consumers upgraded to
  the new model still read events written under the old one (outbox backlogs, retries, replays).
  Narrowing is breaking: a changed type, a nullable field that no longer takes ``null``, a newly
  required property, a removed enum value, a tighter bound, length, format or pattern, extra
  properties no longer allowed;
* every published property stays, because consumers still on the old model read it: removing a
  property is breaking even when it was optional.

Widening is compatible: a new optional property, a new enum value, a field that becomes nullable,
``integer`` to ``number``. Consumers are deployed before producers start emitting the widened
values, which is the order every schema change ships in.

Schemas are compared structurally: ``$ref`` (to ``#/$defs/...``) is resolved, so renaming a
model is not a change but a change inside a nested model is found wherever it is used.
``anyOf``/``oneOf``, ``type`` lists, ``enum``/``const`` and ``allOf`` are understood; keywords
that only annotate (``title``, ``description``, ``default``, ``examples``) are ignored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

Schema = Mapping[str, Any] | bool

_ANY: dict[str, Any] = {}
_MIN_KEYS = ("minLength", "minItems", "minProperties")
_MAX_KEYS = ("maxLength", "maxItems", "maxProperties")
_OBJECT_HINTS = ("properties", "additionalProperties", "required", "patternProperties")
_ARRAY_HINTS = ("items", "prefixItems")


@dataclass(frozen=True)
class _Branch:
    """One alternative of a schema, with a single JSON type (``None``: any type)."""

    schema: Mapping[str, Any]
    kind: str | None
    ref: str | None


def breaking_changes(old_schema: Mapping[str, Any], new_schema: Mapping[str, Any]) -> list[str]:
    """Every way in which ``new_schema`` breaks consumers of ``old_schema``; empty if none.

    Each entry names the property path (``lines[].unit_price.amount``; ``[]`` is an array
    item, ``{}`` a value of a map) and what changed.
    """
    comparer = _Comparer(old_schema, new_schema)
    changes = comparer.compare(old_schema, new_schema, "")
    return list(dict.fromkeys(changes))


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _value_has_type(value: object, kind: str) -> bool:
    actual = _json_type(value)
    return actual == kind or (kind == "number" and actual == "integer")


def _covers(old_kind: str | None, new_kind: str | None) -> bool:
    return new_kind is None or old_kind == new_kind or (old_kind, new_kind) == ("integer", "number")


def _show(path: str) -> str:
    return f"'{path}'" if path else "the payload"


def _child(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _describe(branches: Sequence[_Branch]) -> str:
    kinds = dict.fromkeys("any" if b.kind is None else b.kind for b in branches)
    return " | ".join(kinds) if kinds else "nothing"


def _fmt_values(values: Sequence[object]) -> str:
    return ", ".join(repr(v) for v in values)


class _Comparer:
    def __init__(self, old_root: Mapping[str, Any], new_root: Mapping[str, Any]) -> None:
        self._roots = {"old": old_root, "new": new_root}
        # Pairs of definitions being compared further up the stack: a recursive model meets
        # itself again and is taken as compatible there (the first visit reports any change).
        self._active: set[tuple[str, str]] = set()

    # -- schema navigation ----------------------------------------------------------------------

    def _lookup(self, side: str, ref: str) -> Schema:
        if not ref.startswith("#/"):
            raise ValueError(f"only local references are supported, got {ref!r}")
        node: Any = self._roots[side]
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(node, Mapping) or part not in node:
                raise ValueError(f"unresolvable reference {ref!r} in the {side} schema")
            node = node[part]
        if not isinstance(node, Mapping | bool):
            raise ValueError(f"reference {ref!r} does not point to a schema")
        return node

    def _resolve(self, side: str, node: Schema) -> tuple[Schema, str | None]:
        """Follow ``$ref`` and flatten ``allOf``; return the schema and the last ref followed."""
        ref: str | None = None
        seen: set[str] = set()
        while isinstance(node, Mapping):
            if "$ref" in node:
                ref = str(node["$ref"])
                if ref in seen:
                    raise ValueError(f"reference cycle without structure at {ref!r}")
                seen.add(ref)
                target = self._lookup(side, ref)
                siblings = {k: v for k, v in node.items() if k != "$ref"}
                if isinstance(target, bool):
                    return target, ref
                node = {**target, **siblings}
            elif "allOf" in node:
                node = self._merge_all_of(side, node)
            else:
                break
        return node, ref

    def _merge_all_of(self, side: str, node: Mapping[str, Any]) -> Schema:
        merged: dict[str, Any] = {k: v for k, v in node.items() if k != "allOf"}
        for part in node["allOf"]:
            resolved, _ = self._resolve(side, part)
            if resolved is False:
                return False
            if resolved is True:
                continue
            for key, value in resolved.items():
                if key == "properties":
                    merged["properties"] = {**merged.get("properties", {}), **value}
                elif key == "required":
                    merged["required"] = sorted({*merged.get("required", []), *value})
                else:
                    merged.setdefault(key, value)
        return merged

    def _branches(self, side: str, node: Schema) -> list[_Branch]:
        resolved, ref = self._resolve(side, node)
        if resolved is False:
            return []
        if resolved is True:
            return [_Branch(_ANY, None, ref)]
        for key in ("anyOf", "oneOf"):
            if key in resolved:
                return [b for sub in resolved[key] for b in self._branches(side, sub)]
        return self._split_by_type(resolved, ref)

    @staticmethod
    def _split_by_type(schema: Mapping[str, Any], ref: str | None) -> list[_Branch]:
        enum: list[Any] | None = None
        if "const" in schema:
            enum = [schema["const"]]
        elif "enum" in schema:
            enum = list(schema["enum"])
        declared = schema.get("type")
        kinds: list[str | None]
        if isinstance(declared, str):
            kinds = [declared]
        elif isinstance(declared, list):
            kinds = [str(k) for k in declared]
        elif enum is not None:
            kinds = list(dict.fromkeys(_json_type(v) for v in enum))
        elif any(k in schema for k in _OBJECT_HINTS):
            kinds = ["object"]
        elif any(k in schema for k in _ARRAY_HINTS):
            kinds = ["array"]
        else:
            kinds = [None]
        branches = []
        for kind in kinds:
            branch = {k: v for k, v in schema.items() if k not in ("const", "enum", "type")}
            if enum is not None:
                values = enum if kind is None else [v for v in enum if _value_has_type(v, kind)]
                if not values:
                    continue
                branch["enum"] = values
            branches.append(_Branch(branch, kind, ref))
        return branches

    # -- comparison -----------------------------------------------------------------------------

    def compare(self, old: Schema, new: Schema, path: str) -> list[str]:
        old_branches = self._branches("old", old)
        new_branches = self._branches("new", new)
        problems: list[str] = []
        for ob in old_branches:
            candidates = [nb for nb in new_branches if _covers(ob.kind, nb.kind)]
            if not candidates:
                if ob.kind == "null":
                    problems.append(f"{_show(path)}: no longer accepts null")
                else:
                    problems.append(
                        f"{_show(path)}: type changed from {_describe(old_branches)} "
                        f"to {_describe(new_branches)}"
                    )
                continue
            # Several new alternatives may fit; the old one is fine if any accepts it fully,
            # otherwise the closest one explains what broke.
            outcomes: list[list[str]] = [self._compare_branch(ob, nb, path) for nb in candidates]
            closest = min(outcomes, key=len)
            problems.extend(closest)
        return problems

    def _compare_branch(self, old: _Branch, new: _Branch, path: str) -> list[str]:
        pair = (old.ref, new.ref) if old.ref is not None and new.ref is not None else None
        if pair is not None:
            if pair in self._active:
                return []
            self._active.add(pair)
        try:
            problems = self._constraints(old.schema, new.schema, path)
            # A branch of any type is only covered by another of any type: nothing to descend.
            if old.kind == "object" and new.kind == "object":
                problems += self._compare_object(old.schema, new.schema, path)
            if old.kind == "array" and new.kind == "array":
                problems += self._compare_array(old.schema, new.schema, path)
            return problems
        finally:
            if pair is not None:
                self._active.discard(pair)

    def _constraints(self, old: Mapping[str, Any], new: Mapping[str, Any], path: str) -> list[str]:
        where = _show(path)
        problems: list[str] = []
        if "enum" in new:
            if "enum" not in old:
                problems.append(f"{where}: now restricted to {_fmt_values(new['enum'])}")
            else:
                removed = [v for v in old["enum"] if v not in new["enum"]]
                if removed:
                    problems.append(f"{where}: enum value(s) removed: {_fmt_values(removed)}")
        if "format" in new and new["format"] != old.get("format"):
            before = old.get("format", "none")
            problems.append(f"{where}: format changed from {before} to {new['format']}")
        if "pattern" in new and new["pattern"] != old.get("pattern"):
            problems.append(f"{where}: pattern changed to {new['pattern']!r}")
        for key in _MIN_KEYS:
            if new.get(key, 0) > old.get(key, 0):
                problems.append(f"{where}: {key} raised from {old.get(key, 0)} to {new[key]}")
        for key in _MAX_KEYS:
            if key in new and (key not in old or new[key] < old[key]):
                problems.append(f"{where}: {key} lowered from {old.get(key, 'none')} to {new[key]}")
        problems += _numeric_bounds(old, new, where)
        if new.get("uniqueItems") and not old.get("uniqueItems"):
            problems.append(f"{where}: items must now be unique")
        return problems

    def _compare_object(
        self, old: Mapping[str, Any], new: Mapping[str, Any], path: str
    ) -> list[str]:
        problems: list[str] = []
        old_props: Mapping[str, Schema] = old.get("properties", {})
        new_props: Mapping[str, Schema] = new.get("properties", {})
        old_required = set(old.get("required", []))
        for name, old_prop in old_props.items():
            if name not in new_props:
                problems.append(f"removed property {_show(_child(path, name))}")
            else:
                problems += self.compare(old_prop, new_props[name], _child(path, name))
        for name in new.get("required", []):
            if name in old_required:
                continue
            if name in old_props:
                problems.append(f"{_show(_child(path, name))}: became required")
            else:
                problems.append(f"new required property {_show(_child(path, name))}")
        old_extra: Schema = old.get("additionalProperties", True)
        new_extra: Schema = new.get("additionalProperties", True)
        if old_extra is not False:
            if new_extra is False:
                problems.append(f"{_show(path)}: additional properties no longer accepted")
            else:
                problems += self.compare(old_extra, new_extra, _child(path, "{}"))
        return problems

    def _compare_array(
        self, old: Mapping[str, Any], new: Mapping[str, Any], path: str
    ) -> list[str]:
        problems: list[str] = []
        old_prefix: Sequence[Schema] = old.get("prefixItems", [])
        new_prefix: Sequence[Schema] = new.get("prefixItems", [])
        for index, (old_item, new_item) in enumerate(zip(old_prefix, new_prefix, strict=False)):
            problems += self.compare(old_item, new_item, f"{path}[{index}]")
        # Positions past the old tuple were validated by "items"; past the new one, by its own.
        for index in range(len(new_prefix), len(old_prefix)):
            problems += self.compare(old_prefix[index], new.get("items", True), f"{path}[{index}]")
        for index in range(len(old_prefix), len(new_prefix)):
            problems += self.compare(old.get("items", True), new_prefix[index], f"{path}[{index}]")
        problems += self.compare(old.get("items", True), new.get("items", True), f"{path}[]")
        return problems


def _bound(node: Mapping[str, Any], inclusive: str, exclusive: str) -> tuple[Fraction, bool] | None:
    """The tightest bound among ``inclusive`` and ``exclusive`` keys: (value, is_exclusive)."""
    found: list[tuple[Fraction, bool]] = []
    if isinstance(node.get(inclusive), int | float):
        found.append((Fraction(str(node[inclusive])), False))
    if isinstance(node.get(exclusive), int | float):
        found.append((Fraction(str(node[exclusive])), True))
    if not found:
        return None
    return max(found) if inclusive == "minimum" else min(found, key=lambda b: (b[0], not b[1]))


def _numeric_bounds(old: Mapping[str, Any], new: Mapping[str, Any], where: str) -> list[str]:
    problems: list[str] = []
    old_low, new_low = (
        _bound(old, "minimum", "exclusiveMinimum"),
        _bound(new, "minimum", "exclusiveMinimum"),
    )
    if new_low is not None and (old_low is None or new_low > old_low):
        problems.append(
            f"{where}: lower bound raised from {_fmt_bound(old_low)} to {_fmt_bound(new_low)}"
        )
    old_high, new_high = (
        _bound(old, "maximum", "exclusiveMaximum"),
        _bound(new, "maximum", "exclusiveMaximum"),
    )
    if new_high is not None and (old_high is None or _tighter_upper(new_high, old_high)):
        problems.append(
            f"{where}: upper bound lowered from {_fmt_bound(old_high)} to {_fmt_bound(new_high)}"
        )
    if "multipleOf" in new:
        new_step = Fraction(str(new["multipleOf"]))
        old_step = Fraction(str(old["multipleOf"])) if "multipleOf" in old else None
        if old_step is None or (old_step / new_step).denominator != 1:
            problems.append(f"{where}: now a multiple of {new['multipleOf']}")
    return problems


def _tighter_upper(new: tuple[Fraction, bool], old: tuple[Fraction, bool]) -> bool:
    return new[0] < old[0] or (new[0] == old[0] and new[1] and not old[1])


def _fmt_bound(bound: tuple[Fraction, bool] | None) -> str:
    if bound is None:
        return "none"
    value, exclusive = bound
    shown = str(value.numerator) if value.denominator == 1 else str(float(value))
    return f"{shown} (exclusive)" if exclusive else shown
