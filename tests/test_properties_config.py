"""Random YAML documents and random mappings given to the config loader: a ConfigError with a
line, never another exception or a hang."""

from __future__ import annotations

import os

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.config import ConfigError, load_config

# Derandomized by default, so CI and every run test the same examples; HYPOTHESIS_PROFILE=explore
# draws new ones (then add any failure it finds as an explicit test).
settings.register_profile("ci", max_examples=200, deadline=None, derandomize=True)
settings.register_profile("explore", max_examples=200, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
FIXTURE = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])

KEYS = st.sampled_from(["listen", "targets", "checks", "defaults", "name", "kind", "host", "every", "timeout",
                        "password", "port", "state_dir", "x"]) | st.text(max_size=8)
KINDS = st.sampled_from(["host", "ssh", "snmp", "ups", "nut", "meraki", "vmware", "m365", "nope"])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70), st.floats(),
                    st.text(max_size=20), KINDS, st.sampled_from(["${env:NOPE}", "30s", "1e999", "-5m", "127.0.0.1:0"]))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
                      max_leaves=25)
TARGET = st.fixed_dictionaries({"name": st.text(max_size=10) | st.integers(), "kind": KINDS},
                               optional={key: VALUES for key in ("host", "every", "timeout", "port", "password")})
DOCUMENT = st.fixed_dictionaries({}, optional={"listen": VALUES, "targets": st.lists(TARGET, max_size=3) | VALUES,
                                               "checks": VALUES, "defaults": VALUES, "x": VALUES})


def _load(path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
    try:
        load_config(path)
    except ConfigError as exc:
        assert exc.issues and all(issue.line is None or issue.line >= 1 for issue in exc.issues)
        assert str(exc)


@FIXTURE
@given(DOCUMENT)
def test_a_random_mapping_loads_or_is_a_config_error(tmp_path, document):
    _load(tmp_path / "vigil.yaml", yaml.safe_dump(document, allow_unicode=True))


@FIXTURE
@given(st.text(alphabet=st.sampled_from(list(":-[]{}&*!|>'\"%@`#,? \n\tab01") + ["\x00", "\ufeff", "é"]),
               max_size=80))
def test_random_yaml_text_is_a_config_error_never_a_crash(tmp_path, text):
    _load(tmp_path / "vigil.yaml", text)


@FIXTURE
@given(st.binary(max_size=60))
def test_bytes_in_another_encoding_are_a_config_error(tmp_path, data):
    path = tmp_path / "vigil.yaml"
    path.write_bytes(data)
    try:
        load_config(path)
    except ConfigError as exc:
        assert str(exc)
