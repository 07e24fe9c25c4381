"""Tests for albackup.crypto: key slots, frame and manifest sealing, key text.

Nothing is mocked: every test seals with the real primitives and checks what opening returns or
raises. scrypt runs with n=2**10 to keep the tests fast.
"""
from __future__ import annotations

import base64
import copy
import json
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from albackup import crypto
from albackup.crypto import (FrameOpener, FrameSealer, Keyring, add_slots, generate_keypair, key_id,
                             load_private_key, load_public_key, new_encryption, open_json, seal_json)
from albackup.errors import ArchiveError, ConfigError, CryptoError, SecretError, UnsupportedFormat
from albackup.secrets import Secret

N = 2**10
UUID = "6f1c2a8e-3b4d-4e5f-9a0b-1c2d3e4f5a6b"
OTHER_UUID = "00000000-0000-4000-8000-000000000001"
FILE = "data/00001-00001.chunk"


def keypair() -> tuple[Any, Any, str, str]:
    sec, pub = generate_keypair()
    return load_private_key(sec), load_public_key(pub), sec, pub


def via_json(header: dict[str, Any]) -> dict[str, Any]:
    """What a reader sees: the header after a trip through manifest.json."""
    return json.loads(json.dumps(header))


# --- key slots ---------------------------------------------------------------------------------

def test_passphrase_slot_round_trip_after_json() -> None:
    key, header = new_encryption([b"correct horse"], [], UUID, scrypt_n=N)
    assert len(key) == 32
    assert header["cipher"] == "AES-256-GCM" and header["kdf"] == "scrypt" and header["backup_uuid"] == UUID
    [slot] = header["slots"]
    assert slot["type"] == "passphrase" and slot["n"] == N and (slot["r"], slot["p"]) == (8, 1)
    h = via_json(header)
    assert Keyring([b"correct horse"]).open_header(h) == key
    assert Keyring([Secret(b"correct horse")]).open_slots(h["slots"], uuid.UUID(UUID)) == key


def test_default_scrypt_cost_is_stored() -> None:
    _, header = new_encryption([b"pw"], [], UUID)
    assert header["slots"][0]["n"] == 2**15


def test_header_holds_neither_key_nor_passphrase() -> None:
    key, header = new_encryption([b"correct horse battery"], [keypair()[1]], UUID, scrypt_n=N)
    text = json.dumps(header)
    assert base64.b64encode(key).decode() not in text and key.hex() not in text
    assert "correct horse" not in text


def test_recipient_slot_round_trip() -> None:
    priv, pub, _, _ = keypair()
    key, header = new_encryption([], [pub], UUID)
    [slot] = header["slots"]
    assert slot["type"] == "x25519" and slot["key_id"] == key_id(pub) and len(slot["key_id"]) == 16
    assert Keyring(private_keys=[priv]).open_header(via_json(header)) == key


def test_several_slots_each_open_the_same_key() -> None:
    p1, pub1, _, _ = keypair()
    p2, pub2, _, _ = keypair()
    key, header = new_encryption([b"one", b"two"], [pub1, pub2, pub1], UUID, scrypt_n=N)
    assert [s["type"] for s in header["slots"]] == ["passphrase", "passphrase", "x25519", "x25519"]
    h = via_json(header)
    for ring in (Keyring([b"one"]), Keyring([b"two"]), Keyring(private_keys=[p1]), Keyring(private_keys=[p2]),
                 Keyring([b"wrong"], [p2]), Keyring([b"wrong", b"two"])):
        assert ring.open_header(h) == key


def test_adding_a_slot_later_opens_the_same_key() -> None:
    key, header = new_encryption([b"first"], [], UUID, scrypt_n=N)
    priv, pub, _, _ = keypair()
    header["slots"] += add_slots(key, UUID, [b"second"], [pub], scrypt_n=N)
    h = via_json(header)
    assert Keyring([b"second"]).open_header(h) == key
    assert Keyring(private_keys=[priv]).open_header(h) == key
    assert Keyring([b"first"]).open_header(h) == key
    # the frames sealed before the slot was added still open
    blob = FrameSealer(key, UUID, FILE).seal(1, True, b"rows")
    assert FrameOpener(Keyring([b"second"]).open_header(h), UUID, FILE).open(1, True, blob) == b"rows"


def test_public_key_alone_cannot_open() -> None:
    priv, pub, sec_text, pub_text = keypair()
    _, header = new_encryption([], [pub], UUID)
    with pytest.raises(SecretError, match="public key"):
        load_private_key(pub_text)
    with pytest.raises(CryptoError):             # the public key's text as a passphrase
        Keyring([pub_text.encode()]).open_header(header)
    with pytest.raises(CryptoError):             # its raw bytes too
        Keyring([base64.b64decode(pub_text.split(":", 1)[1])]).open_header(header)
    other, _, _, _ = keypair()
    with pytest.raises(CryptoError, match="tried 0 of 1"):
        Keyring(private_keys=[other]).open_header(header)
    with pytest.raises(CryptoError, match="give a passphrase or a secret key"):
        Keyring().open_header(header)
    assert Keyring(private_keys=[load_private_key(sec_text)]).open_header(header)


def test_wrong_passphrase_is_crypto_error_not_archive_error() -> None:
    _, header = new_encryption([b"right"], [], UUID, scrypt_n=N)
    with pytest.raises(CryptoError, match=r"wrong passphrase or key for this backup: tried 2 of 1") as ei:
        Keyring([b"wrong", b"Right"]).open_header(header)
    assert not isinstance(ei.value, ArchiveError)
    assert CryptoError.exit_code != ArchiveError.exit_code
    assert not issubclass(ArchiveError, CryptoError) and not issubclass(CryptoError, ArchiveError)


def test_slots_are_bound_to_their_backup() -> None:
    _, header = new_encryption([b"pw"], [], UUID, scrypt_n=N)
    with pytest.raises(CryptoError):
        Keyring([b"pw"]).open_slots(header["slots"], OTHER_UUID)


def test_no_passphrase_and_no_recipient_is_refused() -> None:
    with pytest.raises(ConfigError, match="at least one passphrase or recipient"):
        new_encryption([], [], UUID)
    with pytest.raises(SecretError, match="empty"):
        new_encryption([b""], [], UUID, scrypt_n=N)


def test_unknown_cipher_is_unsupported() -> None:
    _, header = new_encryption([b"pw"], [], UUID, scrypt_n=N)
    header["cipher"] = "ChaCha20-Poly1305"
    with pytest.raises(UnsupportedFormat, match="ChaCha20"):
        Keyring([b"pw"]).open_header(header)


def _corrupt(slot: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    s = copy.deepcopy(slot)
    if value is KeyError:
        del s[key]
    else:
        s[key] = value
    return s


@pytest.mark.parametrize("key,value,match", [
    ("type", "rot13", "not a passphrase or x25519"),
    ("nonce", KeyError, "nonce: not valid base64"),
    ("nonce", "!!!!", "nonce: not valid base64"),
    ("nonce", base64.b64encode(b"x" * 11).decode(), "nonce: 11 bytes, expected 12"),
    ("wrapped", base64.b64encode(b"x" * 47).decode(), "wrapped: 47 bytes, expected 48"),
    ("salt", "", "salt: 0 bytes"),
    ("n", 1000, "not a power of two"),
    ("n", 2**30, "not a power of two between"),
    ("n", "1024", "must be integers"),
    ("r", 0, "out of range"),
    ("r", 32, "out of range"),            # 128 * 1024 * 32 is fine, but with n=2**20 it is not: see below
    ("kdf", "argon2id", "is not scrypt"),
])
def test_malformed_passphrase_slot_is_archive_error(key: str, value: Any, match: str) -> None:
    _, header = new_encryption([b"pw"], [], UUID, scrypt_n=N)
    slot = header["slots"][0]
    if (key, value) == ("r", 32):
        slot["n"] = 2**20
    bad = _corrupt(slot, key, value)
    with pytest.raises(ArchiveError, match=match) as ei:
        Keyring([b"pw"]).open_slots([bad], UUID)
    assert "slot 1" in str(ei.value)


@pytest.mark.parametrize("key,value,match", [
    ("key_id", "ABCDEF", "key_id"),
    ("key_id", KeyError, "key_id"),
    ("ephemeral", base64.b64encode(b"e" * 31).decode(), "ephemeral: 31 bytes"),
    ("ephemeral", base64.b64encode(bytes(32)).decode(), "ephemeral is not a usable"),  # low-order point
])
def test_malformed_recipient_slot_is_archive_error(key: str, value: Any, match: str) -> None:
    priv, pub, _, _ = keypair()
    _, header = new_encryption([], [pub], UUID)
    bad = _corrupt(header["slots"][0], key, value)
    with pytest.raises(ArchiveError, match=match):
        Keyring(private_keys=[priv]).open_slots([bad], UUID)


def test_malformed_slot_is_reported_even_next_to_a_good_one() -> None:
    key, header = new_encryption([b"pw", b"pw2"], [], UUID, scrypt_n=N)
    header["slots"][1]["nonce"] = "%%%"
    with pytest.raises(ArchiveError, match="slot 2: nonce"):
        Keyring([b"pw"]).open_header(header)
    for bad in ([], None, "slots", [None]):
        with pytest.raises(ArchiveError):
            Keyring([b"pw"]).open_slots(bad, UUID)
    with pytest.raises(ArchiveError, match="not a UUID"):
        Keyring([b"pw"]).open_slots(header["slots"], "not-a-uuid")


def test_tampered_wrapped_key_does_not_open() -> None:
    """A slot edited into another well-formed slot cannot be told from a wrong passphrase."""
    _, header = new_encryption([b"pw"], [], UUID, scrypt_n=N)
    slot = header["slots"][0]
    w = bytearray(base64.b64decode(slot["wrapped"]))
    w[0] ^= 1
    slot["wrapped"] = base64.b64encode(bytes(w)).decode()
    with pytest.raises(CryptoError):
        Keyring([b"pw"]).open_header(header)


def test_keyring_repr_shows_no_passphrase() -> None:
    assert "hunter2" not in repr(Keyring([b"hunter2"]))


# --- frames ------------------------------------------------------------------------------------

KEY = bytes(range(32))
PLAIN = b"a small frame of msgpack rows \x00\xff"


def sealed() -> bytes:
    return FrameSealer(KEY, UUID, FILE).seal(3, False, PLAIN)


def test_frame_round_trip_and_layout() -> None:
    blob = sealed()
    assert len(blob) == 12 + len(PLAIN) + 16
    assert PLAIN not in blob
    assert FrameOpener(KEY, UUID, FILE).open(3, False, blob) == PLAIN
    assert sealed()[:12] != blob[:12]              # a fresh nonce per frame


def test_frame_every_flipped_bit_position_fails() -> None:
    blob = sealed()
    opener = FrameOpener(KEY, UUID, FILE)
    for i in range(len(blob)):
        for mask in (0x01, 0x80, 0xFF):
            bad = bytearray(blob)
            bad[i] ^= mask
            with pytest.raises(ArchiveError, match=rf"{FILE}: frame 3 fails authentication"):
                opener.open(3, False, bytes(bad))


def test_frame_every_truncation_and_extension_fails() -> None:
    blob = sealed()
    opener = FrameOpener(KEY, UUID, FILE)
    for n in range(len(blob)):
        with pytest.raises(ArchiveError, match=rf"{FILE}: frame 3 (fails authentication|is truncated)"):
            opener.open(3, False, blob[:n])
    with pytest.raises(ArchiveError):
        opener.open(3, False, blob + b"\x00")


@pytest.mark.parametrize("key,uuid_,file,index,last", [
    (KEY, UUID, FILE, 4, False),                          # reordered
    (KEY, UUID, FILE, 2, False),
    (KEY, UUID, FILE, 3 + 2**32, False),                  # index is not cut to 32 bits
    (KEY, UUID, "data/00001-00002.chunk", 3, False),      # swapped between files
    (KEY, OTHER_UUID, FILE, 3, False),                    # moved to another backup
    (KEY, UUID, FILE, 3, True),                           # flipped last flag: a file cut short here
    (bytes(32), UUID, FILE, 3, False),                    # another backup's key
])
def test_frame_out_of_place_fails(key: bytes, uuid_: str, file: str, index: int, last: bool) -> None:
    with pytest.raises(ArchiveError, match=rf"{file}: frame {index} fails authentication") as ei:
        FrameOpener(key, uuid_, file).open(index, last, sealed())
    assert not isinstance(ei.value, CryptoError)


def test_last_frame_flag_both_ways() -> None:
    blob = FrameSealer(KEY, UUID, FILE).seal(7, True, b"end")
    assert FrameOpener(KEY, UUID, FILE).open(7, True, blob) == b"end"
    with pytest.raises(ArchiveError):
        FrameOpener(KEY, UUID, FILE).open(7, False, blob)


def test_frame_index_range() -> None:
    with pytest.raises(ValueError):
        FrameSealer(KEY, UUID, FILE).seal(-1, False, b"")
    with pytest.raises(ValueError):
        FrameSealer(KEY, UUID, FILE).seal(2**64, False, b"")
    blob = FrameSealer(KEY, UUID, FILE).seal(2**64 - 1, True, b"")
    assert FrameOpener(KEY, UUID, FILE).open(2**64 - 1, True, blob) == b""


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plain=st.binary(max_size=64 * 1024), index=st.integers(0, 2**64 - 1), last=st.booleans(),
       name=st.text(min_size=1, max_size=40), data=st.data())
def test_frame_any_plaintext_round_trips(plain: bytes, index: int, last: bool, name: str,
                                         data: st.DataObject) -> None:
    blob = FrameSealer(KEY, UUID, name).seal(index, last, plain)
    assert FrameOpener(KEY, UUID, name).open(index, last, blob) == plain
    pos = data.draw(st.integers(0, len(blob) - 1))
    bad = bytearray(blob)
    bad[pos] ^= data.draw(st.integers(1, 255))
    with pytest.raises(ArchiveError):
        FrameOpener(KEY, UUID, name).open(index, last, bytes(bad))


# --- manifest ----------------------------------------------------------------------------------

HEADER = {"format": "albackup", "format_version": 2, "features": ["encryption"],
          "encryption": {"cipher": "AES-256-GCM", "slots": [{"type": "x", "n": 1}]}}
SECRET_PART = {"schema": {"tables": ["users", "orders ✓"]}, "totals": {"rows": 12, "ratio": 0.25}}


def test_manifest_round_trip_and_key_order_does_not_matter() -> None:
    blob = seal_json(KEY, UUID, SECRET_PART, HEADER)
    assert "users" not in blob
    reordered = json.loads(json.dumps(dict(reversed(list(HEADER.items())))))
    assert open_json(KEY, UUID, blob, reordered) == SECRET_PART


@pytest.mark.parametrize("edit", [
    lambda h: h.__setitem__("format_version", 3),
    lambda h: h.__setitem__("features", []),
    lambda h: h["encryption"]["slots"][0].__setitem__("n", 2),
    lambda h: h.__setitem__("extra", None),
    lambda h: h.pop("format"),
])
def test_manifest_edited_header_fails(edit: Any) -> None:
    blob = seal_json(KEY, UUID, SECRET_PART, HEADER)
    h = copy.deepcopy(HEADER)
    edit(h)
    with pytest.raises(ArchiveError, match="manifest: .*fails authentication"):
        open_json(KEY, UUID, blob, h)


def test_manifest_every_flipped_blob_byte_fails() -> None:
    raw = base64.b64decode(seal_json(KEY, UUID, {"a": 1}, HEADER))
    for i in range(len(raw)):
        bad = bytearray(raw)
        bad[i] ^= 0x40
        with pytest.raises(ArchiveError, match="manifest: .*fails authentication"):
            open_json(KEY, UUID, base64.b64encode(bytes(bad)).decode(), HEADER)


def test_manifest_other_failures() -> None:
    blob = seal_json(KEY, UUID, SECRET_PART, HEADER)
    with pytest.raises(ArchiveError, match="fails authentication"):
        open_json(KEY, OTHER_UUID, blob, HEADER)
    with pytest.raises(ArchiveError, match="fails authentication"):
        open_json(bytes(32), UUID, blob, HEADER)
    with pytest.raises(ArchiveError, match="not valid base64"):
        open_json(KEY, UUID, blob[:-3] + "*==", HEADER)
    with pytest.raises(ArchiveError, match="truncated"):
        open_json(KEY, UUID, base64.b64encode(b"short").decode(), HEADER)


# --- key text ----------------------------------------------------------------------------------

def test_generate_keypair_text_and_round_trip() -> None:
    sec, pub = generate_keypair()
    assert sec.startswith("albackup-secret-key-1:") and pub.startswith("albackup-public-key-1:")
    assert len(base64.b64decode(sec.split(":", 1)[1])) == 32
    priv = load_private_key("  " + sec + "\n")
    assert crypto.public_key_text(priv.public_key()) == pub
    assert crypto.public_key_text(load_public_key(pub + "\n")) == pub
    assert load_private_key(Secret(sec.encode())).public_key().public_bytes_raw() == \
        load_public_key(pub).public_bytes_raw()
    assert generate_keypair() != (sec, pub)


@pytest.mark.parametrize("mangle", [
    lambda s: s.replace("secret", "sekret"),
    lambda s: s[:-4],
    lambda s: s + "AAAA",
    lambda s: s[:30] + "*" + s[31:],
    lambda s: "",
])
def test_bad_secret_key_text_is_secret_error_without_echo(mangle: Any) -> None:
    sec, _ = generate_keypair()
    bad = mangle(sec)
    with pytest.raises(SecretError, match="not an albackup secret key") as ei:
        load_private_key(bad, where="keys.file")
    body = sec.split(":", 1)[1]
    assert body[:12] not in str(ei.value) and str(ei.value).startswith("keys.file: ")
    with pytest.raises(SecretError):
        load_private_key(b"\xff\xfe" + bad.encode())


def test_bad_public_key_text_is_config_error_and_secret_key_is_not_echoed() -> None:
    sec, pub = generate_keypair()
    with pytest.raises(ConfigError, match="not an albackup public key"):
        load_public_key(pub[:-2])
    with pytest.raises(ConfigError, match="this is a secret key") as ei:
        load_public_key(sec, where="encryption.recipients[0]")
    assert sec.split(":", 1)[1][:12] not in str(ei.value)


# --- the documented layout, re-implemented with the bare primitives -------------------------------
# These pin the on-disk format: a reader written from the module docstring must open what we write.

def test_format_passphrase_slot_by_hand() -> None:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
    key, header = new_encryption([b"pw"], [], UUID, scrypt_n=N)
    s = header["slots"][0]
    kek = Scrypt(salt=base64.b64decode(s["salt"]), length=32, n=s["n"], r=s["r"], p=s["p"]).derive(b"pw")
    aad = b"albackup-slot-v1" + uuid.UUID(UUID).bytes
    assert AESGCM(kek).decrypt(base64.b64decode(s["nonce"]), base64.b64decode(s["wrapped"]), aad) == key


def test_format_x25519_slot_by_hand() -> None:
    import hashlib

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF
    priv, pub, _, pub_text = keypair()
    key, header = new_encryption([], [pub], UUID)
    s = header["slots"][0]
    rec = base64.b64decode(pub_text.split(":", 1)[1])
    eph = base64.b64decode(s["ephemeral"])
    assert s["key_id"] == hashlib.sha256(rec).digest()[:8].hex()
    shared = priv.exchange(X25519PublicKey.from_public_bytes(eph))
    kek = HKDF(algorithm=hashes.SHA256(), length=32, salt=eph + rec, info=b"albackup-x25519-v1").derive(shared)
    aad = b"albackup-slot-v1" + uuid.UUID(UUID).bytes
    assert AESGCM(kek).decrypt(base64.b64decode(s["nonce"]), base64.b64decode(s["wrapped"]), aad) == key


def test_format_frame_and_manifest_by_hand() -> None:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    blob = FrameSealer(KEY, UUID, "data/ü.chunk").seal(258, True, b"payload")
    aad = uuid.UUID(UUID).bytes + "data/ü.chunk".encode() + bytes([0, 0, 0, 0, 0, 0, 1, 2]) + b"\x01"
    assert AESGCM(KEY).decrypt(blob[:12], blob[12:], aad) == b"payload"
    raw = base64.b64decode(seal_json(KEY, UUID, {"b": [1, "é"], "a": None}, {"z": 1, "y": "é"}))
    aad = b"albackup-manifest-v1" + uuid.UUID(UUID).bytes + b'{"y":"\\u00e9","z":1}'
    assert AESGCM(KEY).decrypt(raw[:12], raw[12:], aad) == b'{"a":null,"b":[1,"\\u00e9"]}'


def test_backup_uuid_forms_are_interchangeable() -> None:
    u = uuid.UUID(UUID)
    blob = FrameSealer(KEY, u.bytes, FILE).seal(1, False, b"x")
    for form in (UUID, UUID.upper(), u, u.bytes):
        assert FrameOpener(KEY, form, FILE).open(1, False, blob) == b"x"
    key, header = new_encryption([b"pw"], [], u.bytes, scrypt_n=N)
    assert header["backup_uuid"] == UUID
    assert Keyring([b"pw"]).open_slots(header["slots"], u) == key
    for bad in (b"\x00" * 15, "nope", 12345):
        with pytest.raises(ArchiveError, match="not a UUID"):
            FrameOpener(KEY, bad, FILE)  # type: ignore[arg-type]


def test_scrypt_cost_is_checked_when_writing() -> None:
    for n in (1000, 2**9, 2**21):
        with pytest.raises(ValueError, match="power of two"):
            new_encryption([b"pw"], [], UUID, scrypt_n=n)
