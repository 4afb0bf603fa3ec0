"""YAML as the suite reads it (repro.specs.yamlload): exponent floats without a dot are numbers
(YAML 1.2), a key written twice is refused, everything else reads as PyYAML's safe loader reads it."""
from __future__ import annotations

import math

import pytest
import yaml

from repro.errors import UserError
from repro.specs import parse_set
from repro.specs.yamlload import load


def test_exponent_numbers_are_floats():
    doc = load("a: [1e-2, 1E3, -2e+5, +3e0, 1.5e-3, 1_0e1]")
    assert doc["a"] == [0.01, 1000.0, -200000.0, 3.0, 0.0015, 100.0]
    assert all(isinstance(v, float) for v in doc["a"])
    assert yaml.safe_load("a: 1e-2") == {"a": "1e-2"}   # what PyYAML alone makes of it


def test_everything_else_reads_as_the_safe_loader_reads_it():
    text = "a: [1, 0.5, .nan, -.inf, abc, 1e, e5, '1e-2', true, null, 0x1f, 2026-12-07]\nb: {c: [1, {d: 2}]}"
    mine, theirs = load(text), yaml.safe_load(text)
    assert math.isnan(mine["a"][2]) and math.isnan(theirs["a"][2])
    mine["a"][2] = theirs["a"][2] = None
    assert mine == theirs and mine["a"][7] == "1e-2"


def test_a_key_written_twice_names_the_key_and_both_lines():
    with pytest.raises(yaml.YAMLError) as e:
        load("a: 1\nb:\n  c: 2\n  c: 3\n")
    assert "duplicate key 'c' (first at line 3)" in e.value.problem and e.value.problem_mark.line == 3
    assert load("a: {c: 1}\nb: {c: 2}") == {"a": {"c": 1}, "b": {"c": 2}}   # the same key in two mappings


def test_set_values_are_yaml_1_2_numbers():
    assert parse_set(["grid.snr=[1e-2,0.1]", "models.score.train.lr=1e-4", "fixed.name=abc"]) == {
        "grid.snr": [0.01, 0.1], "models.score.train.lr": 0.0001, "fixed.name": "abc"}
    with pytest.raises(UserError):
        parse_set(["fixed.x=[1, 2"])
