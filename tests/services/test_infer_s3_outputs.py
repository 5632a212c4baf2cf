"""``colorize infer`` against a real S3 endpoint (moto's server): a list line climbing out of its
bucket is refused (it used to overwrite an object in another bucket), and existing outputs are kept."""

from __future__ import annotations

import io
import re

from PIL import Image

from pipeline import cli
from support import corpus


def _png(seed):
    buf = io.BytesIO()
    Image.fromarray(corpus.photo(seed, 24, 32)).save(buf, "PNG")
    return buf.getvalue()


def test_s3_names_stay_in_their_bucket(ckpt, ray_local, s3_server, s3_client, capsys):
    for bucket in ("photos", "evil"):
        s3_client.create_bucket(Bucket=bucket)
    s3_client.put_object(Bucket="photos", Key="in/a.png", Body=_png(1))
    s3_client.put_object(Bucket="photos", Key="in/b.tif", Body=_png(2))
    victim = _png(3)  # a photo: the old code read it through the climbing name and wrote its result over it
    s3_client.put_object(Bucket="evil", Key="ESCAPED.png", Body=victim)
    s3_client.put_object(
        Bucket="photos", Key="in/list.txt", Body=b"a.png\nb.tif\ns3://photos/in/../../evil/ESCAPED.png\n"
    )
    argv = [
        "infer",
        "--model",
        str(ckpt),
        "--input",
        "s3://photos/in/list.txt",
        "--output",
        "s3://photos/out",
        "--size",
        "16",
        "--workers",
        "1",
        "--s3-endpoint",
        s3_server,
    ]

    assert cli.main(argv) == 0
    text = capsys.readouterr().out
    assert s3_client.get_object(Bucket="evil", Key="ESCAPED.png")["Body"].read() == victim
    keys = sorted(o["Key"] for o in s3_client.list_objects_v2(Bucket="photos", Prefix="out/")["Contents"])
    assert keys == ["out/a.png", "out/b.png"]
    assert "2 of 3 written" in text and "skipped 1 (unsafe_name)" in text
    assert {b["Name"] for b in s3_client.list_buckets()["Buckets"]} == {"photos", "evil"}  # and no new bucket

    s3_client.put_object(Bucket="photos", Key="out/a.png", Body=b"edited")
    assert cli.main(argv) == 0
    text = capsys.readouterr().out
    assert re.search(r"0 of 3 written", text) and "skipped 2 (exists)" in text
    assert s3_client.get_object(Bucket="photos", Key="out/a.png")["Body"].read() == b"edited"
