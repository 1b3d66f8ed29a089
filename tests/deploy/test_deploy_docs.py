"""The deployment docs cannot drift from the server: docs/deploy.md's key table and the example
TOML list exactly the options of ``wsserver.config`` with their real defaults, the example loads,
and the systemd unit verifies and gives the drain enough time."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.wsserver_tls.wire import ServerCert
from wsserver.config import OPTION_FIELDS, Config, env_name, flag_name, load_config

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "deploy.md"
EXAMPLE = REPO / "deploy" / "wsserver.example.toml"
UNIT = REPO / "deploy" / "wsserver.service"
KEYS = {a.name: a for a in OPTION_FIELDS}
FIX = "docs/deploy.md (the config-keys table) and deploy/wsserver.example.toml"


def shown_default(attribute) -> str | None:
    """How the docs show a default: `25s`, `72h`, `false`, `65536`, `1000`; None when unset."""
    value, kind = attribute.default, attribute.metadata["kind"]
    if value is None or value == ():
        return None
    if kind == "duration":
        return f"{int(value // 3600)}h" if value >= 3600 and value % 3600 == 0 else f"{value:g}s"
    if kind == "bool":
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def doc_rows() -> dict[str, list[str]]:
    text = DOC.read_text()
    table = text.split("<!-- config-keys:start -->")[1].split("<!-- config-keys:end -->")[0]
    rows = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        match = re.fullmatch(r"`(\w+)`", cells[0]) if cells else None
        if match:
            rows[match.group(1)] = cells
    return rows


def test_the_docs_table_has_exactly_the_server_options():
    rows = doc_rows()
    missing, unknown = set(KEYS) - set(rows), set(rows) - set(KEYS)
    assert not missing, f"config keys missing from {FIX}: {sorted(missing)}"
    assert not unknown, f"{DOC.name} documents keys the server does not have: {sorted(unknown)}"


@pytest.mark.parametrize("key", sorted(KEYS))
def test_each_documented_key_shows_its_flag_env_and_default(key):
    cells = doc_rows().get(key)
    assert cells is not None, f"add `{key}` to {FIX}"
    assert len(cells) == 4 and cells[3], f"row of {key} needs: key | flag / environment | default | explanation"
    assert f"`{flag_name(key)}`" in cells[1] and f"`{env_name(key)}`" in cells[1], cells
    default = shown_default(KEYS[key])
    if default is None:
        assert cells[2].startswith("none"), f"{key} has no default; the docs say {cells[2]!r}"
    else:
        assert f"`{default}`" == cells[2], f"{key} defaults to {default}; the docs say {cells[2]!r}"


def _example_keys(text: str) -> dict[str, str]:
    """`key = value` lines of the top table, commented out or not → the raw line."""
    top = text.split("[[channels]]")[0]
    return {m.group(1): m.group(0) for m in re.finditer(r"^#? ?(\w+) = .*$", top, re.MULTILINE) if m.group(1) in KEYS}


def test_the_example_config_lists_every_key():
    missing = set(KEYS) - set(_example_keys(EXAMPLE.read_text()))
    assert not missing, f"config keys missing from {FIX}: {sorted(missing)}"


def _loadable(text: str, tmp_path: Path) -> Path:
    """The example with its /etc/wsserver paths pointing at real files made by the test."""
    cert = ServerCert(tmp_path / "tls")
    files = {"fullchain.pem": cert.cert, "privkey.pem": cert.key, "jwt-public.pem": cert.cert}
    for path in set(re.findall(r'"(/etc/wsserver/[^"]+)"', text)):
        name = Path(path).name
        assert name in files, f"the test has no stand-in for {path}"
        text = text.replace(f'"{path}"', f'"{files[name]}"')
    copy = tmp_path / "wsserver.toml"
    copy.write_text(text)
    return copy


def test_the_example_config_loads_as_written(tmp_path):
    config = load_config(config_file=_loadable(EXAMPLE.read_text(), tmp_path), environ={})
    assert config.port == 443 and config.tls_cert and config.tls_key
    assert config.retention_for("chat.room1").max_events == 50000
    assert config.retention_for("presence.x").ttl == 300
    assert config.retention_for("orders.1").max_events == Config().history_max_events


def test_every_commented_example_value_is_valid_and_shows_the_default(tmp_path):
    text = EXAMPLE.read_text()
    uncommented = re.sub(r"^# (\w+ = .*)$", lambda m: m.group(1) if m.group(1).split()[0] in KEYS else m.group(0),
                         text, flags=re.MULTILINE)
    uncommented = uncommented.replace('"…"', '"' + "x" * 40 + '"')  # the secret placeholders
    config = load_config(config_file=_loadable(uncommented, tmp_path), environ={})
    defaults = Config()
    for key, line in _example_keys(text).items():
        if line.startswith("#") and "default" not in line and KEYS[key].default not in (None, ()):
            # A commented line without its own note shows the default value.
            assert getattr(config, key) == getattr(defaults, key), f"{EXAMPLE.name}: {line!r} is not the default"


def _unit() -> configparser.ConfigParser:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str
    unit.read_string(UNIT.read_text())
    return unit


def test_the_unit_gives_the_drain_time_and_descriptors(tmp_path):
    service = _unit()["Service"]
    example = load_config(config_file=_loadable(EXAMPLE.read_text(), tmp_path), environ={})
    assert service["KillSignal"] == "SIGTERM"
    assert int(service["TimeoutStopSec"]) > example.drain_timeout + 5, "systemd must not SIGKILL a draining node"
    assert int(service["LimitNOFILE"]) > Config().max_connections
    assert "--config /etc/wsserver/wsserver.toml" in service["ExecStart"]
    assert example.data_dir == "/var/lib/" + service["StateDirectory"] == service["WorkingDirectory"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_the_unit_verifies(tmp_path):
    unit = tmp_path / "wsserver.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/wsserver", "/bin/true"))  # the binary is not installed here
    proc = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    problems = [line for line in (proc.stdout + proc.stderr).splitlines() if str(unit) in line or "Unknown" in line]
    assert proc.returncode == 0 and not problems, proc.stdout + proc.stderr
