"""Security configuration: the token from a file, secrets masked, TLS files checked at start."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamlet import config as cfg
from streamlet.errors import ConfigError
from streamlet.rpc.tls import internal_contexts, rest_server_context
from tests.support.tls import CertificateAuthority


def test_the_token_comes_from_its_file_and_is_masked_when_shown(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("s3cret-value\nignored second line\n")
    conf = cfg.load(overrides={"security.auth.token-file": str(tmp_path / "token")}, env={})
    assert conf["security.auth.token"] == "s3cret-value"
    shown = cfg.render_yaml(conf, hide_secrets=True)
    assert "s3cret-value" not in shown and "security.auth.token: '******'" in shown
    # the key itself wins over the file
    both = cfg.load(overrides={"security.auth.token-file": str(tmp_path / "token"), "security.auth.token": "k"}, env={})
    assert both["security.auth.token"] == "k"


@pytest.mark.parametrize("content, fragment", [(None, "cannot read"), ("", "is empty"), ("\n", "is empty")])
def test_a_bad_token_file_names_the_key(tmp_path: Path, content: str | None, fragment: str) -> None:
    path = tmp_path / "token"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError) as info:
        cfg.load(overrides={"security.auth.token-file": str(path)}, env={})
    assert str(info.value).startswith("security.auth.token-file:") and fragment in str(info.value)


def test_tls_files_are_checked_naming_the_key(tmp_path: Path) -> None:
    on = {"security.ssl.internal.enabled": "true", "security.ssl.internal.truststore": str(tmp_path / "ca.pem")}
    with pytest.raises(ConfigError, match="security.ssl.internal.keystore: .* does not exist"):
        internal_contexts(cfg.load(overrides={**on, "security.ssl.internal.keystore": str(tmp_path / "x.pem")},
                                   env={}))
    ca = CertificateAuthority("ca")
    ca.write_ca(tmp_path / "ca.pem")
    (tmp_path / "not.pem").write_text("not a certificate")
    with pytest.raises(ConfigError, match="security.ssl.internal.keystore: cannot load"):
        internal_contexts(cfg.load(overrides={**on, "security.ssl.internal.keystore": str(tmp_path / "not.pem")},
                                   env={}))
    with pytest.raises(ConfigError, match="security.ssl.rest.keystore is not set"):
        rest_server_context(cfg.load(overrides={"security.ssl.rest.enabled": "true"}, env={}))
    ca.issue("jm", ips=["127.0.0.1"]).write(tmp_path / "jm.pem")
    server, client = internal_contexts(cfg.load(overrides={**on, "security.ssl.internal.keystore":
                                                           str(tmp_path / "jm.pem")}, env={}))
    assert server is not None and client is not None and client.check_hostname
    assert internal_contexts(cfg.load(env={})) == (None, None)
