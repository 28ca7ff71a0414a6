"""A Griffe extension: `attrs` classes get the `__init__` signature attrs generates.

Griffe reads the source without importing it, so it knows the `__init__` of a dataclass but
not of an `@attrs.frozen` / `@attrs.define` class; without this the API reference shows
`RetryPolicy`, `Cadence` or `Prices` with no signature. The rules are the part of attrs the
package uses: annotated attributes in order, `attrs.field(default=..., factory=...,
init=False, kw_only=True, alias=...)`, `attrs.Factory(f)`, a leading underscore dropped from
the argument's name, `kw_only=True` on the decorator. Inherited attrs fields are not added.
"""

from __future__ import annotations

from typing import Any

from griffe import (
    Attribute,
    Class,
    Expr,
    ExprCall,
    Extension,
    Function,
    Parameter,
    ParameterKind,
    Parameters,
)

_DECORATORS = {"attrs.frozen", "attrs.define", "attrs.mutable", "attr.s", "attr.attrs"}
_FIELDS = {"attrs.field", "attr.ib", "attr.field"}
_FACTORIES = {"attrs.Factory", "attr.Factory"}


def _arguments(expr: Any) -> dict[str, Any]:
    """The keyword arguments of a call expression, by name."""
    if not isinstance(expr, ExprCall):
        return {}
    return {a.name: a.value for a in expr.arguments if hasattr(a, "name")}


def _decorator(cls: Class) -> Expr | str | None:
    """The attrs class decorator of `cls`, if it has one."""
    for decorator in cls.decorators:
        if decorator.callable_path in _DECORATORS:
            return decorator.value
    return None


def _made_by(factory: Any) -> Any:
    """A factory default as a signature shows it: `dict()`, or `<factory>` for a lambda."""
    if "lambda" in str(factory):
        return "<factory>"
    return ExprCall(function=factory, arguments=[])


class AttrsInit(Extension):
    """Adds the generated `__init__` to each attrs class that does not define its own."""

    def on_class_members(self, *, cls: Class, **kwargs: Any) -> None:
        """Called by Griffe once a class's members are known."""
        decorator = _decorator(cls)
        if decorator is None or "__init__" in cls.members:
            return
        class_kw_only = str(_arguments(decorator).get("kw_only")) == "True"
        parameters = [Parameter("self", kind=ParameterKind.positional_or_keyword)]
        for member in cls.members.values():
            if not isinstance(member, Attribute) or member.annotation is None:
                continue
            if "property" in member.labels or (
                "class-attribute" in member.labels and "instance-attribute" not in member.labels
            ):
                continue
            value = member.value
            default: Any = value
            field: dict[str, Any] = {}
            if isinstance(value, ExprCall) and value.function.canonical_path in _FIELDS:
                field = _arguments(value)
                factory = field.get("factory")
                default = field.get("default") if factory is None else _made_by(factory)
            elif isinstance(value, ExprCall) and value.function.canonical_path in _FACTORIES:
                default = _made_by(value.arguments[0])
            if str(field.get("init")) == "False":
                continue
            name = str(field["alias"]).strip("'\"") if "alias" in field else member.name
            kw_only = class_kw_only or str(field.get("kw_only")) == "True"
            parameters.append(
                Parameter(
                    name.lstrip("_"),
                    annotation=member.annotation,
                    kind=ParameterKind.keyword_only
                    if kw_only
                    else ParameterKind.positional_or_keyword,
                    default=default,
                    docstring=member.docstring,
                )
            )
        init = Function(
            "__init__",
            parameters=Parameters(*parameters),
            returns="None",
            lineno=cls.lineno,
            endlineno=cls.lineno,
        )
        init.labels.add("attrs-generated")
        cls.set_member("__init__", init)
