#!/usr/bin/env python3
"""S3 client comparison for checkpoint storage: put/get throughput of SST-sized objects on moto.

For each client (boto3, obstore, s3fs, aiobotocore) and object size (64 KiB: metadata and small
SSTs; 4 MiB and 32 MiB: SSTs), put then get (whole and one ranged read) a set of objects on a
fresh moto server (tests/support/s3.py) and report MB/s and the client process's CPU seconds per
MB written+read (the server is another process; on a 2-core TaskManager the client's CPU is what
competes with record processing).

  python scripts/bench_s3.py                      # every client and size
  python scripts/bench_s3.py --clients boto3,obstore --sizes 4

Run under the CPU lock; report figures with the commit.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CREDS = {"key": "testing", "secret": "testing", "region": "us-east-1"}


def _boto3(endpoint: str, bucket: str):
    import boto3
    from botocore.config import Config

    c = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=CREDS["key"],
                     aws_secret_access_key=CREDS["secret"], region_name=CREDS["region"],
                     config=Config(s3={"addressing_style": "path"}))
    return (lambda k, d: c.put_object(Bucket=bucket, Key=k, Body=d),
            lambda k: c.get_object(Bucket=bucket, Key=k)["Body"].read(),
            lambda k, o, n: c.get_object(Bucket=bucket, Key=k, Range=f"bytes={o}-{o + n - 1}")["Body"].read())


def _obstore(endpoint: str, bucket: str):
    import obstore
    from obstore.store import S3Store

    s = S3Store(bucket, endpoint=endpoint, access_key_id=CREDS["key"], secret_access_key=CREDS["secret"],
                region=CREDS["region"], virtual_hosted_style_request=False, client_options={"allow_http": True})
    return (lambda k, d: obstore.put(s, k, d),
            lambda k: obstore.get(s, k).bytes().to_bytes(),
            lambda k, o, n: obstore.get_range(s, k, start=o, length=n).to_bytes())


def _s3fs(endpoint: str, bucket: str):
    import s3fs

    fs = s3fs.S3FileSystem(key=CREDS["key"], secret=CREDS["secret"], endpoint_url=endpoint,
                           client_kwargs={"region_name": CREDS["region"]}, use_listings_cache=False)
    return (lambda k, d: fs.pipe(f"{bucket}/{k}", d),
            lambda k: fs.cat(f"{bucket}/{k}"),
            lambda k, o, n: fs.cat_file(f"{bucket}/{k}", start=o, end=o + n))


def _run_aiobotocore(endpoint: str, bucket: str, keys: list[str], data: bytes) -> tuple[float, float]:
    from aiobotocore.session import get_session

    async def main() -> tuple[float, float]:
        session = get_session()
        async with session.create_client("s3", endpoint_url=endpoint, aws_access_key_id=CREDS["key"],
                                         aws_secret_access_key=CREDS["secret"], region_name=CREDS["region"]) as c:
            t0 = time.perf_counter()
            for k in keys:
                await c.put_object(Bucket=bucket, Key=k, Body=data)
            t1 = time.perf_counter()
            for k in keys:
                r = await c.get_object(Bucket=bucket, Key=k)
                async with r["Body"] as body:
                    assert len(await body.read()) == len(data)
                r = await c.get_object(Bucket=bucket, Key=k, Range="bytes=10-1033")
                async with r["Body"] as body:
                    assert len(await body.read()) == 1024
            return t1 - t0, time.perf_counter() - t1

    return asyncio.run(main())


def measure(client: str, endpoint: str, bucket: str, size: int, count: int) -> dict:
    data = os.urandom(size)
    keys = [f"{client}/{size}/sst-{i:04d}.sst" for i in range(count)]
    cpu0 = time.process_time()
    if client == "aiobotocore":
        put_s, get_s = _run_aiobotocore(endpoint, bucket, keys, data)
    else:
        put, get, get_range = {"boto3": _boto3, "obstore": _obstore, "s3fs": _s3fs}[client](endpoint, bucket)
        t0 = time.perf_counter()
        for k in keys:
            put(k, data)
        t1 = time.perf_counter()
        for k in keys:
            assert get(k) == data
            assert get_range(k, 10, 1024) == data[10:1034]
        put_s, get_s = t1 - t0, time.perf_counter() - t1
    cpu = time.process_time() - cpu0
    mb = size * count / 2**20
    return {"client": client, "size_kib": size // 1024, "objects": count, "put_mb_s": round(mb / put_s, 1),
            "get_mb_s": round(mb / get_s, 1), "client_cpu_s_per_mb": round(cpu / (2 * mb), 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", default="boto3,obstore,s3fs,aiobotocore")
    ap.add_argument("--sizes", default="0.0625,4,32", help="object sizes in MiB")
    ap.add_argument("--mib-per-size", type=float, default=64, help="data written per client and size")
    args = ap.parse_args()
    from tests.support.s3 import moto_server

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    print(f"commit {commit}")
    with moto_server() as endpoint:
        import boto3

        boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing",
                     region_name="us-east-1").create_bucket(Bucket="bench")
        for size_mib in (float(s) for s in args.sizes.split(",")):
            size = int(size_mib * 2**20)
            count = max(2, int(args.mib_per_size / size_mib)) if size_mib >= 1 else 200
            for client in args.clients.split(","):
                print(measure(client, endpoint, "bench", size, count), flush=True)


if __name__ == "__main__":
    main()
