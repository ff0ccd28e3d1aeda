"""WeChat/WeCom message crypto (WXBizMsgCrypt), with constant-time signature checks.

Official algorithm: https://developers.weixin.qq.com/doc/offiaccount/Message_Management/Message_encryption_and_decryption_instructions.html
and https://developer.work.weixin.qq.com/document/path/90968 (WeCom): AES-256-CBC with
key = base64(EncodingAESKey + "="), IV = key[:16], PKCS#7 padding to 32 bytes, and the
plaintext framed as random(16) + len(4, big-endian) + message + receive id.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from storage.entropy import random16_bytes

_BLOCK = 32


class CryptoError(ValueError):
    """A ciphertext that cannot be decrypted into a message for us."""


def sha1_signature(*parts: str) -> str:
    """SHA-1 of the lexicographically sorted, concatenated parts (WeChat's signature)."""
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


def signature_matches(given: str, *parts: str) -> bool:
    """Compare a signature from the query with the expected one in constant time."""
    expected = sha1_signature(*parts)
    return hmac.compare_digest(given.lower().encode(), expected.encode())


def _aes_key(encoding_aes_key: str) -> bytes:
    try:
        key = base64.b64decode(encoding_aes_key + "=", validate=True)
    except binascii.Error as exc:
        raise ValueError("EncodingAESKey is not valid base64") from exc
    if len(key) != 32:
        raise ValueError("EncodingAESKey must decode to 32 bytes")
    return key


class _Cipher:
    """AES-256-CBC in WeChat's framing for one key."""

    def __init__(self, encoding_aes_key: str) -> None:
        key = _aes_key(encoding_aes_key)
        self._cipher = Cipher(algorithms.AES(key), modes.CBC(key[:16]))

    def encrypt(self, message: bytes, receive_id: bytes, random16: bytes) -> bytes:
        body = random16 + struct.pack(">I", len(message)) + message + receive_id
        pad = _BLOCK - len(body) % _BLOCK
        enc = self._cipher.encryptor()
        return enc.update(body + bytes([pad]) * pad) + enc.finalize()

    def decrypt(self, data: bytes) -> tuple[bytes, bytes]:
        if not data or len(data) % 16:
            raise CryptoError("ciphertext length is not a multiple of the AES block")
        dec = self._cipher.decryptor()
        plain = dec.update(data) + dec.finalize()
        pad = plain[-1]
        if not 1 <= pad <= _BLOCK or plain[-pad:] != bytes([pad]) * pad:
            raise CryptoError("bad padding")
        content = plain[16:-pad]
        if len(content) < 4:
            raise CryptoError("plaintext too short")
        (length,) = struct.unpack(">I", content[:4])
        if length > len(content) - 4:
            raise CryptoError("bad message length")
        return content[4 : 4 + length], content[4 + length :]


@dataclass(frozen=True, slots=True)
class EncryptedEnvelope:
    """The four values of an encrypted reply or callback."""

    encrypt: str
    signature: str
    timestamp: str
    nonce: str

    def to_xml(self) -> str:
        """Render the reply envelope WeChat expects."""
        return (
            f"<xml><Encrypt><![CDATA[{self.encrypt}]]></Encrypt>"
            f"<MsgSignature><![CDATA[{self.signature}]]></MsgSignature>"
            f"<TimeStamp>{self.timestamp}</TimeStamp>"
            f"<Nonce><![CDATA[{self.nonce}]]></Nonce></xml>"
        )


class MessageCrypto:
    """Encrypts and decrypts for one account (receive id = AppID or CorpID).

    During key rotation a message that fails with the current key is tried with
    ``previous_key``; replies are always encrypted with the current key.
    """

    def __init__(self, token: str, encoding_aes_key: str, receive_id: str, previous_key: str = ""):
        self.token = token
        self.receive_id = receive_id
        self._current = _Cipher(encoding_aes_key)
        self._previous = _Cipher(previous_key) if previous_key else None

    def verify(self, msg_signature: str, timestamp: str, nonce: str, encrypt: str) -> bool:
        """Check ``msg_signature`` over token, timestamp, nonce and ciphertext."""
        return signature_matches(msg_signature, self.token, timestamp, nonce, encrypt)

    def decrypt(self, encrypt: str) -> str:
        """Decrypt a base64 ciphertext into the message text, checking the receive id."""
        try:
            data = base64.b64decode(encrypt, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise CryptoError("ciphertext is not valid base64") from exc
        first_error: CryptoError | None = None
        for cipher in (self._current, self._previous):
            if cipher is None:
                continue
            try:
                return self._open(cipher, data)
            except CryptoError as exc:
                first_error = first_error or exc
        assert first_error is not None
        raise first_error

    def _open(self, cipher: _Cipher, data: bytes) -> str:
        message, receive_id = cipher.decrypt(data)
        if not hmac.compare_digest(receive_id, self.receive_id.encode()):
            raise CryptoError("message is addressed to another AppID/CorpID")
        try:
            return message.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CryptoError("message is not valid UTF-8") from exc

    def encrypt(self, message: str, random16: bytes | None = None) -> str:
        """Encrypt message text into base64 ciphertext with the current key."""
        rnd = random16 if random16 is not None else random16_bytes()
        data = self._current.encrypt(message.encode(), self.receive_id.encode(), rnd)
        return base64.b64encode(data).decode()

    def seal(self, message: str, timestamp: str, nonce: str) -> EncryptedEnvelope:
        """Encrypt and sign a message for the given timestamp and nonce."""
        encrypt = self.encrypt(message)
        signature = sha1_signature(self.token, timestamp, nonce, encrypt)
        return EncryptedEnvelope(encrypt, signature, timestamp, nonce)
