"""Security with real processes: TLS on REST, RPC and data connections (a self-signed CA made
here), the cluster token read from a file and never logged, refusals with a clear reason for a
TaskManager that trusts the wrong CA or presents a certificate the cluster does not trust, and
every listening socket bound to the configured address only."""

from __future__ import annotations

import secrets
import ssl
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest

from tests.e2e.conftest import Cluster, read_outputs
from tests.support.pipelines import write_jsonl
from tests.support.tls import CertificateAuthority

JOB = """\
name: tls-exchange
mode: batch
parallelism: 2
sources: {src: {type: file, path: in.jsonl}}
transforms:
  per_key: {input: src, key_by: k, aggregate: {n: count}}
sinks: {out: {input: per_key, type: file, path: out}}
"""


def _listening(pid: int) -> set[str]:
    return {c.laddr.ip for c in psutil.Process(pid).net_connections(kind="inet") if c.status == psutil.CONN_LISTEN}


def test_tls_everywhere_with_a_token_file(cluster: Cluster, tmp_path: Path) -> None:
    ca, other = CertificateAuthority("streamlet test ca"), CertificateAuthority("some other ca")
    ca_pem, other_pem = ca.write_ca(tmp_path / "ca.pem"), other.write_ca(tmp_path / "other-ca.pem")
    jm_pem = ca.issue("jobmanager", ips=["127.0.0.1"]).write(tmp_path / "jm.pem")
    tm_pem = ca.issue("taskmanager", ips=["127.0.0.1"]).write(tmp_path / "tm.pem")
    rogue_pem = other.issue("rogue", ips=["127.0.0.1"]).write(tmp_path / "rogue.pem")
    token = secrets.token_hex(16)
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)

    internal = ["-D", "security.ssl.internal.enabled=true", "-D", f"security.ssl.internal.truststore={ca_pem}"]
    cluster.common = ["-D", f"security.auth.token-file={token_file}", *internal]
    cluster.pass_token = False
    cluster.token = token  # the test's own REST calls send it
    cluster.ssl_context = ssl.create_default_context(cafile=str(ca_pem))
    jm = cluster.jobmanager("-D", "security.ssl.rest.enabled=true", "-D", f"security.ssl.rest.keystore={jm_pem}",
                            "-D", f"security.ssl.internal.keystore={jm_pem}")
    tms = [cluster.taskmanager(1, "-D", f"security.ssl.internal.keystore={tm_pem}") for _ in range(2)]

    # REST: plain HTTP on the TLS port gets nowhere; TLS without the token is 401
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        urllib.request.urlopen(f"http://127.0.0.1:{cluster.rest_port}/overview", timeout=5).read()
    status, body = cluster.request("GET", "/overview", auth=False)
    assert status == 401 and "bearer token" in body["errors"][0]

    # the CLI submits over HTTPS (truststore) with the token from the environment; the keyed
    # exchange between the two taskmanagers runs over TLS data connections
    write_jsonl(tmp_path / "in.jsonl", [{"k": i % 5} for i in range(1000)])
    (tmp_path / "job.yaml").write_text(JOB)
    rest_tls = ["-D", "security.ssl.rest.enabled=true", "-D", f"security.ssl.rest.truststore={ca_pem}"]
    proc = cluster.cli("submit", "job.yaml", "-m", f"127.0.0.1:{cluster.rest_port}", *rest_tls)
    assert proc.returncode == 0, proc.stderr
    job_id = proc.stdout.strip().rsplit(" ", 1)[-1]
    details = cluster.wait_state(job_id, "FINISHED", "FAILED")
    assert details["state"] == "FINISHED", cluster.get(f"/jobs/{job_id}/exceptions")
    assert len({s["host"] for v in details["vertices"] for s in cluster.get(f"/jobs/{job_id}/vertices/{v['id']}")
                ["subtasks"]}) == 2
    assert read_outputs(tmp_path / "out") == sorted(f'{{"k":{k},"n":200}}' for k in range(5))
    # the CLI without the CA does not trust the jobmanager, and says which key to set
    untrusting = cluster.cli("list", "-m", f"127.0.0.1:{cluster.rest_port}", "-D", "security.ssl.rest.enabled=true")
    assert untrusting.returncode != 0 and "security.ssl.rest.truststore" in untrusting.stderr, untrusting.stderr

    # a taskmanager that trusts another CA refuses the jobmanager, and exits with the reason
    wrong_ca = cluster.taskmanager(1, "-D", f"security.ssl.internal.keystore={tm_pem}",
                                   "-D", f"security.ssl.internal.truststore={other_pem}", wait=False)
    assert wrong_ca.popen.wait(30) == 2
    assert "not trusted" in wrong_ca.text() and "security.ssl.internal.truststore" in wrong_ca.text(), wrong_ca.text()
    # one whose certificate the cluster's CA did not sign is refused by the jobmanager
    rogue = cluster.taskmanager(1, "-D", f"security.ssl.internal.keystore={rogue_pem}", wait=False)
    assert rogue.popen.wait(30) == 2
    assert "does not trust this process's certificate" in rogue.text() and "security.ssl.internal.keystore" in rogue.text(), \
        rogue.text()
    assert cluster.get("/overview")["taskmanagers"] == 2

    # every listening socket is on the configured address (127.0.0.1), nothing on 0.0.0.0
    for p in (jm, *tms):
        assert _listening(p.popen.pid) == {"127.0.0.1"}, (p.name, _listening(p.popen.pid))
    # the token never appears in a log or in the CLI's output
    shown = cluster.cli("config", "-D", f"security.auth.token-file={token_file}")
    assert shown.returncode == 0 and "security.auth.token: '******'" in shown.stdout, shown.stdout
    for p in cluster.procs:
        assert token not in p.text(), p.name
    for out in (proc, untrusting, shown):
        assert token not in out.stdout + out.stderr
