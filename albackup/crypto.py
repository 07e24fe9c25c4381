"""Encryption of a backup: AES-256-GCM with a per-backup data key wrapped into key slots.

Nothing here touches files; callers pass bytes in and get bytes out.

Data key and key slots
    Every encrypted backup has its own random 32-byte *data key*. The data key is never stored in
    the clear: it is sealed into one or more *key slots* in the plaintext ``encryption`` header
    (a JSON object; bytes are standard base64 strings)::

        {"cipher": "AES-256-GCM", "kdf": "scrypt", "backup_uuid": "<uuid>", "slots": [...]}

    Each slot seals the data key with AES-256-GCM under a key-encryption key (KEK), a random
    12-byte nonce and AAD ``b"albackup-slot-v1" + backup_uuid.bytes`` (16 bytes)::

        {"type": "passphrase", "kdf": "scrypt", "n": 32768, "r": 8, "p": 1,
         "salt": <16 bytes>, "nonce": <12 bytes>, "wrapped": <48 bytes: key + tag>}
        {"type": "x25519", "key_id": "<16 hex digits>", "ephemeral": <32 bytes>,
         "nonce": <12 bytes>, "wrapped": <48 bytes>}

    - passphrase slot: KEK = scrypt(passphrase, salt, n, r, p, length 32).
    - x25519 slot: a fresh ephemeral X25519 key pair per slot; KEK = HKDF-SHA256(
      shared secret, salt = ephemeral_pub || recipient_pub, info = b"albackup-x25519-v1").
      ``key_id`` is the first 8 bytes of SHA-256(recipient_pub) in hex, so a reader only tries
      the private keys the slot was made for. Opening needs the private key.

    Any number of slots may be added later with only the data key (no data is re-encrypted).
    A slot that does not open is indistinguishable from a wrong passphrase or key, so every
    slot failure is ``CryptoError``; a slot that is malformed (missing field, bad base64, wrong
    length, out-of-range scrypt parameters) is ``ArchiveError``.

Frames
    A chunk frame is stored as ``nonce (12 random bytes) || ciphertext || tag (16)``, with
    AAD ``backup_uuid.bytes || file_name (UTF-8) || index (8 bytes big-endian) || last (1 byte)``.
    A flipped or cut byte, a frame moved to another position, file or backup, and a file cut
    short after a frame that was not the last all fail authentication: ``ArchiveError`` naming
    the file and frame. Nonces are random, so one data key should seal at most 2**32 frames.

Manifest
    The secret part of the manifest is canonical JSON sealed as base64(nonce || ct || tag) with
    AAD ``b"albackup-manifest-v1" + backup_uuid.bytes + canonical JSON of the plaintext header``
    (sorted keys, no whitespace, ASCII only), so editing the plaintext header or the blob is
    ``ArchiveError``.

Key files
    ``albackup-secret-key-1:<base64 of 32 raw bytes>`` and ``albackup-public-key-1:<...>``.

Errors: wrong passphrase/key or no key = ``CryptoError`` (14); damage = ``ArchiveError`` (7);
an unreadable secret key = ``SecretError`` (15); a bad public key or no key to encrypt to =
``ConfigError`` (3); an unknown cipher in a header = ``UnsupportedFormat`` (8).
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import uuid
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from .errors import ArchiveError, ConfigError, CryptoError, SecretError, UnsupportedFormat
from .secrets import Secret

CIPHER = "AES-256-GCM"
KDF = "scrypt"
KEY_LEN = 32
NONCE_LEN = 12
TAG_LEN = 16
SALT_LEN = 16
SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1
SLOT_AAD = b"albackup-slot-v1"
X25519_INFO = b"albackup-x25519-v1"
MANIFEST_AAD = b"albackup-manifest-v1"
SECRET_KEY_PREFIX = "albackup-secret-key-1:"
PUBLIC_KEY_PREFIX = "albackup-public-key-1:"

Passphrase = Secret | bytes
UUIDLike = uuid.UUID | str | bytes


# --- small helpers -----------------------------------------------------------------------------

def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def _unb64(value: Any, n: int | None, where: str) -> bytes:
    try:
        if not isinstance(value, str):
            raise ValueError
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except (ValueError, binascii.Error):
        raise ArchiveError(f"{where}: not valid base64") from None
    if n is not None and len(raw) != n:
        raise ArchiveError(f"{where}: {len(raw)} bytes, expected {n}")
    return raw


def uuid_bytes(backup_uuid: UUIDLike) -> bytes:
    """The 16 bytes of a backup UUID (uuid.UUID, its text, or its 16 bytes); ArchiveError if not one."""
    if isinstance(backup_uuid, uuid.UUID):
        return backup_uuid.bytes
    if isinstance(backup_uuid, bytes) and len(backup_uuid) == 16:
        return backup_uuid
    try:
        if not isinstance(backup_uuid, str):
            raise ValueError
        return uuid.UUID(backup_uuid).bytes
    except ValueError:
        raise ArchiveError(f"backup_uuid {str(backup_uuid)[:40]!r} is not a UUID") from None


def _reveal(p: Passphrase) -> bytes:
    raw = p.reveal() if isinstance(p, Secret) else p
    if not isinstance(raw, bytes):
        raise TypeError("a passphrase is a Secret or bytes")
    if not raw:
        raise SecretError("the passphrase is empty")
    return raw


def _check_scrypt(n: Any, r: Any, p: Any) -> str | None:
    """Why these scrypt parameters are refused, or None."""
    if not all(isinstance(x, int) and not isinstance(x, bool) for x in (n, r, p)):
        return "scrypt parameters must be integers"
    if not (2**10 <= n <= 2**20 and n & (n - 1) == 0):
        return f"scrypt n={n} is not a power of two between 2**10 and 2**20"
    if not (1 <= r <= 32 and 1 <= p <= 16) or 128 * n * r > 1 << 28:
        return f"scrypt r={r}, p={p} out of range (r 1 to 32, p 1 to 16, 128*n*r at most 256 MiB)"
    return None


def _scrypt(passphrase: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=KEY_LEN, n=n, r=r, p=p).derive(passphrase)


def _x25519_kek(shared: bytes, ephemeral_pub: bytes, recipient_pub: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_LEN, salt=ephemeral_pub + recipient_pub,
                info=X25519_INFO).derive(shared)


def _raw_public(key: X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public_key: X25519PublicKey) -> str:
    """First 8 bytes of SHA-256 of the raw public key, in hex: names a recipient in a slot."""
    return hashlib.sha256(_raw_public(public_key)).digest()[:8].hex()


# --- key slots ---------------------------------------------------------------------------------

def passphrase_slot(data_key: bytes, backup_uuid: UUIDLike, passphrase: Passphrase, *,
                    scrypt_n: int = SCRYPT_N) -> dict[str, Any]:
    """A slot that opens ``data_key`` with ``passphrase`` (scrypt, then AES-256-GCM)."""
    why = _check_scrypt(scrypt_n, SCRYPT_R, SCRYPT_P)
    if why:
        raise ValueError(why)
    salt, nonce = os.urandom(SALT_LEN), os.urandom(NONCE_LEN)
    kek = _scrypt(_reveal(passphrase), salt, scrypt_n, SCRYPT_R, SCRYPT_P)
    wrapped = AESGCM(kek).encrypt(nonce, data_key, SLOT_AAD + uuid_bytes(backup_uuid))
    return {"type": "passphrase", "kdf": KDF, "n": scrypt_n, "r": SCRYPT_R, "p": SCRYPT_P,
            "salt": _b64(salt), "nonce": _b64(nonce), "wrapped": _b64(wrapped)}


def recipient_slot(data_key: bytes, backup_uuid: UUIDLike, recipient: X25519PublicKey) -> dict[str, Any]:
    """A slot that opens ``data_key`` with the private key belonging to ``recipient``."""
    ephemeral = X25519PrivateKey.generate()
    eph_pub, rec_pub = _raw_public(ephemeral.public_key()), _raw_public(recipient)
    kek = _x25519_kek(ephemeral.exchange(recipient), eph_pub, rec_pub)
    nonce = os.urandom(NONCE_LEN)
    wrapped = AESGCM(kek).encrypt(nonce, data_key, SLOT_AAD + uuid_bytes(backup_uuid))
    return {"type": "x25519", "key_id": key_id(recipient), "ephemeral": _b64(eph_pub),
            "nonce": _b64(nonce), "wrapped": _b64(wrapped)}


def add_slots(data_key: bytes, backup_uuid: UUIDLike, passphrases: Iterable[Passphrase] = (),
              recipients: Iterable[X25519PublicKey] = (), *, scrypt_n: int = SCRYPT_N) -> list[dict[str, Any]]:
    """Slots for each passphrase and each distinct recipient, in that order."""
    if len(data_key) != KEY_LEN:
        raise ValueError("the data key must be 32 bytes")
    slots = [passphrase_slot(data_key, backup_uuid, p, scrypt_n=scrypt_n) for p in passphrases]
    seen: set[str] = set()
    for r in recipients:
        if key_id(r) not in seen:
            seen.add(key_id(r))
            slots.append(recipient_slot(data_key, backup_uuid, r))
    return slots


def new_encryption(passphrases: Iterable[Passphrase], recipients: Iterable[X25519PublicKey],
                   backup_uuid: UUIDLike, *, scrypt_n: int = SCRYPT_N) -> tuple[bytes, dict[str, Any]]:
    """A fresh data key and the plaintext ``encryption`` header holding its key slots."""
    data_key = os.urandom(KEY_LEN)
    slots = add_slots(data_key, backup_uuid, passphrases, recipients, scrypt_n=scrypt_n)
    if not slots:
        raise ConfigError("encryption needs at least one passphrase or recipient public key")
    header = {"cipher": CIPHER, "kdf": KDF, "backup_uuid": str(uuid.UUID(bytes=uuid_bytes(backup_uuid))),
              "slots": slots}
    return data_key, header


class Keyring:
    """The passphrases and X25519 private keys a reader was given, to open key slots with."""

    def __init__(self, passphrases: Iterable[Passphrase] = (),
                 private_keys: Iterable[X25519PrivateKey] = ()) -> None:
        self._passphrases = [_reveal(p) for p in passphrases]
        self._keys = {key_id(k.public_key()): k for k in private_keys}

    def __repr__(self) -> str:
        return f"Keyring({len(self._passphrases)} passphrases, keys {sorted(self._keys)})"

    def open_header(self, header: Mapping[str, Any]) -> bytes:
        """The data key from an ``encryption`` header (checks cipher and kdf, then the slots)."""
        if not isinstance(header, Mapping):
            raise ArchiveError("encryption header: not an object")
        if header.get("cipher") != CIPHER or header.get("kdf") != KDF:
            raise UnsupportedFormat(f"encryption header: cipher {header.get('cipher')!r} with kdf "
                                    f"{header.get('kdf')!r} is not supported (only {CIPHER} with {KDF})")
        if "backup_uuid" not in header:
            raise ArchiveError("encryption header: backup_uuid is missing")
        return self.open_slots(header.get("slots"), header["backup_uuid"])

    def open_slots(self, slots: Any, backup_uuid: UUIDLike) -> bytes:
        """The data key from the first slot this keyring opens.

        Every slot is checked first: a malformed one is ArchiveError. CryptoError if no key was
        given or none of the slots opens with the given passphrases and keys.
        """
        if not isinstance(slots, list) or not slots:
            raise ArchiveError("encryption header: slots is missing or empty")
        aad = SLOT_AAD + uuid_bytes(backup_uuid)
        parsed = [_Slot.parse(s, f"encryption header: slot {i}") for i, s in enumerate(slots, 1)]
        if not self._passphrases and not self._keys:
            raise CryptoError("this backup is encrypted: give a passphrase or a secret key")
        tried = 0
        for slot in parsed:
            for kek in slot.keks(self._passphrases, self._keys):
                tried += 1
                try:
                    return AESGCM(kek).decrypt(slot.nonce, slot.wrapped, aad)
                except InvalidTag:
                    continue
        ids = sorted({s.key_id for s in parsed if s.key_id})
        npass = sum(1 for s in parsed if s.type == "passphrase")
        raise CryptoError(f"wrong passphrase or key for this backup: tried {tried} of {len(slots)} key slots "
                          f"(it has {npass} passphrase slot(s) and key slots for key ids "
                          f"{', '.join(ids) or 'none'})")


@dataclass(frozen=True)
class _Slot:
    """A checked key slot."""

    type: str
    nonce: bytes
    wrapped: bytes
    salt: bytes = b""
    n: int = 0
    r: int = 0
    p: int = 0
    key_id: str = ""
    ephemeral: bytes = b""
    where: str = ""

    @classmethod
    def parse(cls, slot: Any, where: str) -> _Slot:
        if not isinstance(slot, Mapping) or slot.get("type") not in ("passphrase", "x25519"):
            raise ArchiveError(f"{where}: not a passphrase or x25519 key slot")
        nonce = _unb64(slot.get("nonce"), NONCE_LEN, f"{where}: nonce")
        wrapped = _unb64(slot.get("wrapped"), KEY_LEN + TAG_LEN, f"{where}: wrapped")
        if slot["type"] == "passphrase":
            n, r, p = slot.get("n"), slot.get("r"), slot.get("p")
            why = _check_scrypt(n, r, p) if slot.get("kdf") == KDF else f"kdf {slot.get('kdf')!r} is not scrypt"
            if why:
                raise ArchiveError(f"{where}: {why}")
            salt = _unb64(slot.get("salt"), None, f"{where}: salt")
            if not 8 <= len(salt) <= 64:
                raise ArchiveError(f"{where}: salt: {len(salt)} bytes, expected 8 to 64")
            return cls("passphrase", nonce, wrapped, salt=salt, n=n, r=r, p=p, where=where)
        kid = slot.get("key_id")
        if not (isinstance(kid, str) and re.fullmatch(r"[0-9a-f]{16}", kid)):
            raise ArchiveError(f"{where}: key_id is not 16 lowercase hex digits")
        eph = _unb64(slot.get("ephemeral"), KEY_LEN, f"{where}: ephemeral")
        return cls("x25519", nonce, wrapped, key_id=kid, ephemeral=eph, where=where)

    def keks(self, passphrases: list[bytes], keys: Mapping[str, X25519PrivateKey]) -> Iterator[bytes]:
        """Candidate KEKs, computed lazily (scrypt is slow on purpose)."""
        if self.type == "passphrase":
            for passphrase in passphrases:
                yield _scrypt(passphrase, self.salt, self.n, self.r, self.p)
            return
        key = keys.get(self.key_id)
        if key is None:
            return
        try:
            shared = key.exchange(X25519PublicKey.from_public_bytes(self.ephemeral))
        except ValueError:
            raise ArchiveError(f"{self.where}: ephemeral is not a usable X25519 public key") from None
        yield _x25519_kek(shared, self.ephemeral, _raw_public(key.public_key()))


# --- frames ------------------------------------------------------------------------------------

class _FrameCipher:
    def __init__(self, data_key: bytes, backup_uuid: UUIDLike, file_name: str) -> None:
        self._aead = AESGCM(data_key)
        self._prefix = uuid_bytes(backup_uuid) + file_name.encode("utf-8")
        self.file_name = file_name

    def _aad(self, index: int, last: bool) -> bytes:
        if not 0 <= index < 2**64:
            raise ValueError(f"frame index {index} out of range")
        return self._prefix + index.to_bytes(8, "big") + (b"\x01" if last else b"\x00")


class FrameSealer(_FrameCipher):
    """Seals the frames of one file: nonce || ciphertext || tag, bound to backup, file, index, last."""

    def seal(self, index: int, last: bool, plaintext: bytes) -> bytes:
        nonce = os.urandom(NONCE_LEN)
        return nonce + self._aead.encrypt(nonce, plaintext, self._aad(index, last))


class FrameOpener(_FrameCipher):
    """Opens frames sealed by FrameSealer; any damage or misplacement is ArchiveError."""

    def open(self, index: int, last: bool, blob: bytes) -> bytes:
        if len(blob) < NONCE_LEN + TAG_LEN:
            raise ArchiveError(f"{self.file_name}: frame {index} is truncated "
                               f"({len(blob)} bytes, less than nonce and tag)")
        try:
            return self._aead.decrypt(blob[:NONCE_LEN], blob[NONCE_LEN:], self._aad(index, last))
        except InvalidTag:
            raise ArchiveError(f"{self.file_name}: frame {index} fails authentication (damaged, cut short, "
                               f"or moved from another place, file or backup)") from None


# --- manifest ----------------------------------------------------------------------------------

def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode("ascii")


def _manifest_aad(backup_uuid: UUIDLike, header: Mapping[str, Any]) -> bytes:
    try:
        head = canonical_json(dict(header))
    except (TypeError, ValueError):
        raise ArchiveError("manifest: the plaintext header is not plain JSON") from None
    return MANIFEST_AAD + uuid_bytes(backup_uuid) + head


def seal_json(data_key: bytes, backup_uuid: UUIDLike, obj: Any, header: Mapping[str, Any]) -> str:
    """Base64 of nonce || AES-256-GCM(canonical JSON of obj), authenticating ``header`` too."""
    nonce = os.urandom(NONCE_LEN)
    return _b64(nonce + AESGCM(data_key).encrypt(nonce, canonical_json(obj), _manifest_aad(backup_uuid, header)))


def open_json(data_key: bytes, backup_uuid: UUIDLike, blob: str, header: Mapping[str, Any]) -> Any:
    """The object sealed by seal_json; ArchiveError if the blob or the header was changed."""
    raw = _unb64(blob, None, "manifest: encrypted part")
    if len(raw) < NONCE_LEN + TAG_LEN:
        raise ArchiveError("manifest: encrypted part is truncated")
    try:
        plain = AESGCM(data_key).decrypt(raw[:NONCE_LEN], raw[NONCE_LEN:], _manifest_aad(backup_uuid, header))
    except InvalidTag:
        raise ArchiveError("manifest: encrypted part fails authentication "
                           "(the manifest or its plaintext header was damaged or edited)") from None
    try:
        return json.loads(plain)
    except ValueError:
        raise ArchiveError("manifest: encrypted part is not JSON") from None


# --- key text ----------------------------------------------------------------------------------

def generate_keypair() -> tuple[str, str]:
    """A new X25519 key pair as text: (``albackup-secret-key-1:…``, ``albackup-public-key-1:…``)."""
    key = X25519PrivateKey.generate()
    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                            serialization.NoEncryption())
    return SECRET_KEY_PREFIX + _b64(raw), public_key_text(key.public_key())


def public_key_text(key: X25519PublicKey) -> str:
    return PUBLIC_KEY_PREFIX + _b64(_raw_public(key))


def _key_bytes(text: str, prefix: str) -> bytes | None:
    if not text.startswith(prefix):
        return None
    try:
        raw = base64.b64decode(text[len(prefix):].encode("ascii"), validate=True)
    except (ValueError, binascii.Error):
        return None
    return raw if len(raw) == KEY_LEN else None


def load_private_key(text: Secret | bytes | str, where: str = "secret key") -> X25519PrivateKey:
    """Parse ``albackup-secret-key-1:…`` (surrounding whitespace ignored); SecretError never shows it."""
    raw = text.reveal() if isinstance(text, Secret) else text
    try:
        s = (raw.decode("ascii") if isinstance(raw, bytes) else raw).strip()
    except UnicodeDecodeError:
        s = ""
    if s.startswith(PUBLIC_KEY_PREFIX):
        raise SecretError(f"{where}: this is a public key; opening a backup needs the secret key "
                          f"({SECRET_KEY_PREFIX}…)")
    key = _key_bytes(s, SECRET_KEY_PREFIX)
    if key is None:
        raise SecretError(f"{where}: not an albackup secret key (expected {SECRET_KEY_PREFIX} "
                          f"followed by 32 bytes in base64)")
    return X25519PrivateKey.from_private_bytes(key)


def load_public_key(text: str, where: str = "public key") -> X25519PublicKey:
    """Parse ``albackup-public-key-1:…``; ConfigError otherwise (a secret key is refused, not shown)."""
    s = text.strip() if isinstance(text, str) else ""
    if s.startswith(SECRET_KEY_PREFIX):
        raise ConfigError(f"{where}: this is a secret key, which must not be in the configuration; "
                          f"give its public key ({PUBLIC_KEY_PREFIX}…)")
    key = _key_bytes(s, PUBLIC_KEY_PREFIX)
    if key is None:
        raise ConfigError(f"{where}: not an albackup public key (expected {PUBLIC_KEY_PREFIX} "
                          f"followed by 32 bytes in base64)")
    return X25519PublicKey.from_public_bytes(key)
