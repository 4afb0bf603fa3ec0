"""YAML as the suite reads it (spec files, model configs, `--set` values): PyYAML's safe loader
with two fixes a user would otherwise meet as silent mistakes.

- Numbers in exponent form without a dot (`1e-4`, `2E3`) are floats, as YAML 1.2 reads them;
  PyYAML follows YAML 1.1, where they are strings (`--set grid.snr=[1e-2,0.1]` stored '1e-2').
- A key written twice in one mapping is an error naming it and its line; YAML loaders keep the
  last one without a word.
"""
from __future__ import annotations

import re
from typing import Any

import yaml
from yaml.constructor import ConstructorError

_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)   # libyaml where present: ~10x faster

# YAML 1.2 core schema floats, which YAML 1.1 lacks: digits with an exponent and no dot.
_EXPONENT_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")


class SuiteLoader(_Base):  # type: ignore[misc, valid-type]
    """The safe loader with YAML 1.2 exponent floats and duplicate keys refused."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                continue   # the base constructor names an unhashable key
            if key in seen:
                raise ConstructorError(
                    None, None, f"duplicate key {key!r} (first at line {seen[key].start_mark.line + 1})",
                    key_node.start_mark)
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


# Own copy of the resolver table, so the float rule does not reach other users of PyYAML.
SuiteLoader.yaml_implicit_resolvers = {k: list(v) for k, v in _Base.yaml_implicit_resolvers.items()}
SuiteLoader.add_implicit_resolver("tag:yaml.org,2002:float", _EXPONENT_FLOAT, list("-+0123456789"))
SuiteLoader.add_constructor("tag:yaml.org,2002:map", SuiteLoader.construct_yaml_map)


def _construct_float(loader: SuiteLoader, node: yaml.ScalarNode) -> float:
    text = loader.construct_scalar(node).replace("_", "")
    if _EXPONENT_FLOAT.match(text):
        return float(text)
    return yaml.constructor.SafeConstructor.construct_yaml_float(loader, node)


SuiteLoader.add_constructor("tag:yaml.org,2002:float", _construct_float)


def load(text: str) -> Any:
    """One YAML document as the suite reads it."""
    return yaml.load(text, Loader=SuiteLoader)
