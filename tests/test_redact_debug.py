"""`vigil --debug once` against real S3 (moto) and Azure Blob (Azurite) peers: the SDKs'
and urllib3's debug logs are there, the keys, signatures and SAS tokens are not."""

from __future__ import annotations

import os
import re
import subprocess

from tests.conftest import ROOT, vigil_argv
from tests.kinds.backups.test_source_azure_blob import sas
from tests.lab.azurite import azurite
from tests.lab.moto import moto
from tests.lab.pki import make_pki

S3_ID, S3_KEY = "AKIAVIGILTEST0001", "vigil/secret+key/0123456789"

CONFIG = """
state_dir: {state}
backups:
  - name: s3-nightly
    schedule: "0 1 * * *"
    deadline: 4h
    primary: {{kind: s3, bucket: backups, endpoint_url: "{s3}", region: us-east-1, ca_file: {s3_ca},
              access_key_id: "${{env:T_S3_ID}}", secret_access_key: "${{env:T_S3_KEY}}"}}
  - name: azure-nightly
    schedule: "0 1 * * *"
    deadline: 4h
    primary: {{kind: azure_blob, account_url: "{azure}", container: backups, ca_file: {azure_ca},
              credential: "${{env:T_AZURE_SAS}}"}}
"""


def test_debug_logs_of_botocore_azure_and_urllib3_carry_no_credential(tmp_path):
    pki = make_pki(tmp_path / "pki")
    with moto(tmp_path / "moto", pki) as s3, azurite(tmp_path / "azurite", pki) as blob:
        s3.client().create_bucket(Bucket="backups")
        container = blob.service().create_container("backups")
        token = sas(blob, container)
        config = tmp_path / "vigil.yaml"
        config.write_text(CONFIG.format(state=tmp_path / "state", s3=s3.endpoint_url, s3_ca=s3.ca_file,
                                        azure=blob.account_url, azure_ca=blob.ca_file))
        env = {**os.environ, "T_S3_ID": S3_ID, "T_S3_KEY": S3_KEY, "T_AZURE_SAS": token}
        done = subprocess.run(vigil_argv("--debug", "once", "-c", str(config)), capture_output=True, text=True,
                              cwd=ROOT, env=env, timeout=120)
    logs = done.stderr
    assert "DEBUG botocore.auth: Signature:" in logs and "DEBUG urllib3.connectionpool:" in logs
    assert "azure.core.pipeline.policies.http_logging_policy: Request URL:" in logs
    signature = re.search(r"sig=([^&\s]+)", token).group(1)
    for secret in (S3_ID, S3_KEY, token, signature, signature.replace("%2B", "+").replace("%3D", "=")):
        assert secret not in logs + done.stdout, secret
    assert not re.search(r"Signature:\s*[0-9a-f]{16}", logs)
