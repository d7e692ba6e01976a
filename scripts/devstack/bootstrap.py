"""Secrets, the Colonies schema, the colony and member identity, the bucket, and stack.env.

Keys are generated locally on the first run and kept in ``.dev/colonies.env`` (0600); MinIO
credentials in ``.dev/minio.env``. Everything here is idempotent: each ``up`` checks and
repairs (a wiped database gets schema, colony and executor again; new keys reset the schema).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import shutil
import time
from collections.abc import Mapping

from . import config, envfile, procs, services
from .procs import StackError, say

HEX64 = re.compile(r"^[0-9a-f]{64}$")
SECRET_HEADER = "Local development secrets for scripts/stack.sh. Generated; never commit."
ROLES = (  # (private key variable, ID variable)
    ("COLONIES_SERVER_PRVKEY", "COLONIES_SERVER_ID"),
    ("COLONIES_COLONY_PRVKEY", "COLONIES_COLONY_ID"),
    ("COLONIES_PRVKEY", "COLONIES_EXECUTOR_ID"),
)


def new_prvkey() -> str:
    from coincurve import PrivateKey

    return str(PrivateKey().to_hex())


def key_id(prvkey: str) -> str:
    """Colonies ID: sha3-256 of the hex text of the uncompressed public key (protocol 2.1)."""
    from coincurve import PrivateKey

    public = PrivateKey(bytes.fromhex(prvkey)).public_key.format(compressed=False)
    return hashlib.sha3_256(public.hex().encode()).hexdigest()


def load_keys(generate: bool = True) -> dict[str, str]:
    """Colonies keys and the database password; generates whatever is missing."""
    old = envfile.read(config.KEYS_FILE)
    if not generate:
        return old
    keys: dict[str, str] = {}
    for prv_name, id_name in ROLES:
        prv = old.get(prv_name, "")
        if not HEX64.match(prv):
            prv = new_prvkey()
            say(f"generated a new {prv_name} in {config.KEYS_FILE}")
        keys[prv_name] = prv
        keys[id_name] = key_id(prv)
    keys["COLONIES_DB_PASSWORD"] = old.get("COLONIES_DB_PASSWORD") or secrets.token_hex(16)
    envfile.write(config.KEYS_FILE, keys, SECRET_HEADER)
    return keys


def load_minio_secrets(generate: bool = True) -> dict[str, str]:
    """MinIO root credentials; new credentials start MinIO from an empty data directory."""
    old = envfile.read(config.MINIO_FILE)
    complete = old.get("MINIO_ROOT_USER") and len(old.get("MINIO_ROOT_PASSWORD", "")) >= 8
    if complete or not generate:
        return old
    creds = {"MINIO_ROOT_USER": "faas-dev", "MINIO_ROOT_PASSWORD": secrets.token_hex(20)}
    if config.MINIO_DATA.exists():
        say(f"new MinIO credentials: discarding old MinIO data in {config.MINIO_DATA}")
        procs.stop(services.minio(creds))
        shutil.rmtree(config.MINIO_DATA)
    envfile.write(config.MINIO_FILE, creds, SECRET_HEADER)
    say(f"generated MinIO credentials in {config.MINIO_FILE}")
    return creds


def ensure_schema(keys: Mapping[str, str]) -> None:
    """`colonies database create` once; recreate when it belongs to another server key."""
    server_id = keys["COLONIES_SERVER_ID"]
    ids = services.db_server_ids()
    if ids == [server_id]:
        return
    if ids is not None:
        say(
            "the Colonies database belongs to another server key (were .dev/ keys "
            "regenerated?): resetting the Colonies schema"
        )
        procs.stop(services.colonies(keys))
        services.reset_colonies_schema()
    say("creating the Colonies database schema")
    services.create_colonies_schema(keys)
    if services.db_server_ids() != [server_id]:
        raise StackError(
            "`colonies database create` did not store our server ID; see "
            f"{config.LOG_DIR / 'colonies-dbcreate.log'}"
        )


def register(keys: Mapping[str, str]) -> None:
    """Colony `dev` (owned by COLONIES_COLONY_PRVKEY) and the approved member executor.

    Through faas-sandbox's own Colonies client, as every other client of the stack."""
    from faas_sandbox.colonies.client import ColoniesClient
    from faas_sandbox.errors import ColoniesRefused

    server, colony = keys["COLONIES_SERVER_PRVKEY"], keys["COLONIES_COLONY_PRVKEY"]
    client = ColoniesClient.connect(
        config.HOST, config.COLONIES_PORT, False, config.COLONY_NAME, keys["COLONIES_PRVKEY"]
    )
    listed = client.rpc("getcoloniesmsg", server) or []
    existing = [c for c in listed if isinstance(c, dict) and c.get("name") == config.COLONY_NAME]
    if existing and existing[0].get("colonyid") != keys["COLONIES_COLONY_ID"]:
        say(f"colony {config.COLONY_NAME!r} has another owner key: recreating it")
        client.rpc("removecolonymsg", server, colonyname=config.COLONY_NAME)
        existing = []
    if not existing:
        client.rpc(
            "addcolonymsg",
            server,
            colony={"colonyid": keys["COLONIES_COLONY_ID"], "name": config.COLONY_NAME},
        )
        say(f"created colony {config.COLONY_NAME!r}")
    try:
        member = client.get_executor(config.MEMBER_EXECUTOR_NAME)  # signed by the member
        if member.get("executorid") == keys["COLONIES_EXECUTOR_ID"] and member.get("state") == 1:
            return
    except ColoniesRefused:
        pass  # not registered, not approved, or removed (e.g. reaped as stale)
    try:
        client.add_executor(
            config.MEMBER_EXECUTOR_NAME,
            keys["COLONIES_EXECUTOR_ID"],
            config.MEMBER_EXECUTOR_TYPE,
            colony,
        )
    except ColoniesRefused as err:
        if "already exists" not in str(err):
            raise
    client.approve_executor(config.MEMBER_EXECUTOR_NAME, colony)
    say(
        f"registered and approved executor {config.MEMBER_EXECUTOR_NAME!r} "
        f"(type {config.MEMBER_EXECUTOR_TYPE})"
    )


def ensure_bucket(creds: Mapping[str, str], timeout: float = 30) -> None:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    s3 = boto3.client(
        "s3",
        endpoint_url=f"http://{config.HOST}:{config.MINIO_PORT}",
        aws_access_key_id=creds["MINIO_ROOT_USER"],
        aws_secret_access_key=creds["MINIO_ROOT_PASSWORD"],
        region_name="us-east-1",
    )
    deadline = time.monotonic() + timeout
    while True:
        try:
            try:
                s3.head_bucket(Bucket=config.S3_BUCKET)
            except ClientError as err:
                if err.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket"):
                    raise
                s3.create_bucket(Bucket=config.S3_BUCKET)
                say(f"created S3 bucket {config.S3_BUCKET!r}")
            return
        except (ClientError, BotoCoreError) as err:
            if time.monotonic() > deadline:
                raise StackError(f"MinIO bucket {config.S3_BUCKET!r} unavailable: {err}") from err
            time.sleep(0.5)


def client_env(keys: Mapping[str, str], creds: Mapping[str, str]) -> dict[str, str]:
    """Everything a client (faas-sandbox, pycolonies, the colonies CLI) needs."""
    return {
        "COLONIES_SERVER_HOST": config.HOST,
        "COLONIES_SERVER_PORT": str(config.COLONIES_PORT),
        "COLONIES_SERVER_TLS": "false",  # pycolonies
        "COLONIES_TLS": "false",  # the colonies CLI
        "COLONIES_COLONY_NAME": config.COLONY_NAME,
        "COLONIES_COLONY_PRVKEY": keys["COLONIES_COLONY_PRVKEY"],
        "COLONIES_PRVKEY": keys["COLONIES_PRVKEY"],
        "COLONIES_EXECUTOR_NAME": config.MEMBER_EXECUTOR_NAME,
        "COLONIES_EXECUTOR_TYPE": config.MEMBER_EXECUTOR_TYPE,
        "COLONIES_SERVER_PRVKEY": keys["COLONIES_SERVER_PRVKEY"],
        "AWS_S3_ENDPOINT": f"{config.HOST}:{config.MINIO_PORT}",  # host:port, no scheme
        "AWS_S3_ACCESSKEY": creds["MINIO_ROOT_USER"],
        "AWS_S3_SECRETKEY": creds["MINIO_ROOT_PASSWORD"],
        "AWS_S3_REGION": "",
        "AWS_S3_TLS": "false",
        "AWS_S3_SKIPVERIFY": "false",
        "AWS_S3_BUCKET": config.S3_BUCKET,
    }


def write_stack_env(env: Mapping[str, str]) -> None:
    header = (
        "Written by `scripts/stack.sh up`; regenerated on every run, do not edit.\n"
        "Holds local dev secrets (never commit). Use: source .dev/stack.env"
    )
    envfile.write(config.STACK_ENV_FILE, env, header)
