"""Credentials inside a URI are refused where they enter (every job's flags, pipeline/run.py's
config, the S3 endpoint), in one line that says where credentials belong and never echoes them;
and a message that quotes a URI without its scheme (as pyarrow does) is still redacted."""

from __future__ import annotations

import pyarrow.fs as pafs
import pytest

from pipeline import cli, run
from pipeline.data import storage

KEY, SECRET = "AKIAPLANTED", "plant/ed+Zq9w"
FORMS = {
    "userinfo": f"s3://{KEY}:{SECRET}@bucket/x/",
    "query": f"s3://bucket/x/?access_key={KEY}&secret_key={SECRET}",
    "presigned": f"s3://bucket/x/?X-Amz-Credential={KEY}&X-Amz-Signature={SECRET}",
}


def _one_clean_line(err: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert KEY not in err and SECRET not in err, err
    assert "AWS_ACCESS_KEY_ID" in err and "AWS_SECRET_ACCESS_KEY" in err and "Traceback" not in err


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize(
    "argv",
    [
        ["priors", "--data", "{uri}", "--out", "{tmp}/p"],
        ["prepare", "--data", "{uri}", "--out", "{tmp}/s"],
        ["infer", "--model", "{tmp}", "--input", "{uri}", "--output", "{tmp}/o"],
        ["infer", "--model", "{tmp}", "--input", "{tmp}", "--output", "{uri}"],
        ["eval", "--model", "{tmp}", "--data", "{uri}"],
        ["video", "--model", "{tmp}", "--input", "{uri}", "--output", "{tmp}/v"],
        ["infer", "--model", "{tmp}", "--input", "{tmp}", "--output", "{tmp}/o", "--s3-endpoint", "http://{cred}@h/"],
    ],
    ids=lambda a: " ".join(a[:1] + [x for x in a if x.startswith("--")][-2:-1]) if isinstance(a, list) else a,
)
def test_every_job_refuses_credentials_in_a_uri_in_one_line(argv, form, tmp_path, capsys):
    cred = f"{KEY}:{SECRET}"
    argv = [a.format(uri=FORMS[form], tmp=tmp_path, cred=cred) for a in argv]
    assert cli.main(argv) == 2
    _one_clean_line(capsys.readouterr().err)


def test_an_endpoint_with_credentials_in_the_environment_is_refused(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{KEY}:{SECRET}@127.0.0.1:9000")
    with pytest.raises(ValueError) as e:
        storage.S3Settings.from_env()
    _one_clean_line(str(e.value))


@pytest.mark.parametrize("form", FORMS)
def test_the_training_job_refuses_them_without_a_traceback(form, capsys):
    assert run.main(["--set", f"data.train={FORMS[form]}"]) == 2
    _one_clean_line(capsys.readouterr().err)


def test_a_message_quoting_a_uri_without_its_scheme_is_redacted():
    fs = pafs.S3FileSystem(endpoint_override="127.0.0.1:1", scheme="http", region="us-east-1", connect_timeout=1)
    with pytest.raises(ValueError) as e:  # pyarrow's own message, as it reached users
        fs.get_file_info(f"{KEY}:{SECRET}@bucket/x/manifest.json")
    assert SECRET in str(e.value)
    shown = storage.redact(str(e.value))
    assert KEY not in shown and SECRET not in shown and "'bucket/x/manifest.json'" in shown
    for text in (
        f"key 'x?access_key={KEY}&secret_key={SECRET}' in bucket 'b'",
        f"Failed to connect to {KEY}:{SECRET}@127.0.0.1:9000",
    ):
        assert KEY not in storage.redact(text) and SECRET not in storage.redact(text), storage.redact(text)
