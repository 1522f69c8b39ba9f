"""The canonical Register payload and its Ed25519 signature, written from the contract
alone (common/register-payload.ts documents the bytes) so a second implementation
proves the format is reproducible outside our TypeScript code."""

import base64
import json
from dataclasses import dataclass
from typing import Mapping

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

REGISTER_PAYLOAD_DOMAIN = "ct-ops/register/v2"


@dataclass(frozen=True)
class RegisterFields:
    public_key: bytes
    org_token: str
    hostname: str
    machine_fingerprint: str
    os: str
    arch: str
    agent_version: str
    # From GetRegisterChallenge: the appliance judges its age by its own clock.
    register_challenge: bytes
    tags: Mapping[str, str]


def compact_json(value: object) -> str:
    """JSON as JavaScript's JSON.stringify writes it: no whitespace, non-ASCII kept as is.

    Python escapes control characters exactly as JSON.stringify does; the one known
    difference is key order in objects, which callers fix by sorting (see tags_json)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def tags_json(tags: Mapping[str, str]) -> str:
    """Tags with sorted keys. JavaScript compares UTF-16 code units and Python code
    points: the orders agree unless keys mix characters above U+FFFF with U+E000-U+FFFF."""
    return compact_json(dict(sorted(tags.items())))


def register_payload(fields: RegisterFields) -> bytes:
    return compact_json(
        [
            REGISTER_PAYLOAD_DOMAIN,
            base64.b64encode(fields.public_key).decode("ascii"),
            fields.org_token,
            fields.hostname,
            fields.machine_fingerprint,
            fields.os,
            fields.arch,
            fields.agent_version,
            base64.b64encode(fields.register_challenge).decode("ascii"),
            tags_json(fields.tags),
        ]
    ).encode("utf-8")


def raw_public_key(private_key: Ed25519PrivateKey) -> bytes:
    return private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def sign_register(private_key: Ed25519PrivateKey, fields: RegisterFields) -> bytes:
    return private_key.sign(register_payload(fields))
