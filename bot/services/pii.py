"""Mobile numbers at rest: AES-GCM ciphertext plus a keyed HMAC for lookup (DESIGN §9).

A token is ``v1:<base64(nonce ‖ ciphertext ‖ tag)>`` with a random 96-bit nonce; the
version prefix leaves room to rotate keys. The lookup hash is HMAC-SHA256 under its own
key, so the hash of a number cannot be computed (or brute-forced over the small space of
mainland numbers) without the key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bot.config_program import SecuritySettings

VERSION = "v1"
_NONCE = 12
_MOBILE = re.compile(r"1[3-9]\d{9}")
_SEPARATORS = re.compile(r"[\s\-()]")


class PiiError(Exception):
    """Base of the personal-data errors."""


class InvalidMobile(PiiError, ValueError):
    """Not a mainland China mobile number."""


class MissingKey(PiiError):
    """A key under ``[security]`` is needed but not configured."""

    def __init__(self, key: str) -> None:
        self.key = f"security.{key}"
        self.reason = "not set (32 bytes: 64 hex characters or base64)"
        super().__init__(f"{self.key} is {self.reason}")


class BadToken(PiiError):
    """A token that is malformed, tampered with, or encrypted under another key."""


def _key_bytes(value: str) -> bytes:
    if re.fullmatch(r"[0-9a-fA-F]{64}", value):
        return bytes.fromhex(value)
    return base64.b64decode(value, validate=True)


def normalize(raw: str) -> str:
    """The 11-digit number; accepts +86 / 0086 / 86 prefixes, spaces, dashes."""
    text = _SEPARATORS.sub("", raw.strip())
    for prefix in ("+86", "0086", "86"):
        if text.startswith(prefix) and len(text) == len(prefix) + 11:
            text = text[len(prefix) :]
            break
    if not _MOBILE.fullmatch(text):
        raise InvalidMobile(f"not a mainland mobile number: {mask(text)}")
    return text


def mask(mobile: str) -> str:
    """138****8000 (the first 3 and last 4 digits); short input is starred whole."""
    if len(mobile) < 8:
        return "*" * len(mobile)
    return f"{mobile[:3]}****{mobile[-4:]}"


class MobileVault:
    """Encrypts, decrypts and hashes mobile numbers with the configured keys."""

    def __init__(self, mobile_key: str, hmac_key: str) -> None:
        self._aes = AESGCM(_key_bytes(mobile_key)) if mobile_key else None
        self._hmac = _key_bytes(hmac_key) if hmac_key else None

    @classmethod
    def from_settings(cls, security: SecuritySettings) -> MobileVault:
        """A vault on ``[security]``; missing keys fail when first used."""
        return cls(security.mobile_key, security.mobile_hmac_key)

    def require(self) -> None:
        """Raise MissingKey now (at command start-up) unless both keys are set."""
        self._cipher()
        self._mac_key()

    def _cipher(self) -> AESGCM:
        if self._aes is None:
            raise MissingKey("mobile_key")
        return self._aes

    def _mac_key(self) -> bytes:
        if self._hmac is None:
            raise MissingKey("mobile_hmac_key")
        return self._hmac

    normalize = staticmethod(normalize)
    mask = staticmethod(mask)

    def encrypt(self, mobile: str) -> str:
        """``v1:<b64 nonce+ciphertext>`` of the normalised number."""
        nonce = os.urandom(_NONCE)
        sealed = self._cipher().encrypt(nonce, normalize(mobile).encode(), VERSION.encode())
        return f"{VERSION}:{base64.b64encode(nonce + sealed).decode()}"

    def decrypt(self, token: str) -> str:
        """The number inside a token; BadToken if it was altered or another key sealed it."""
        version, _, body = token.partition(":")
        if version != VERSION or not body:
            raise BadToken(f"unknown token version {version!r}")
        try:
            blob = base64.b64decode(body, validate=True)
            plain = self._cipher().decrypt(blob[:_NONCE], blob[_NONCE:], VERSION.encode())
        except (binascii.Error, InvalidTag, ValueError):
            raise BadToken("token does not decrypt under the configured key") from None
        return plain.decode()

    def lookup_hash(self, mobile: str) -> str:
        """HMAC-SHA256 (hex) of the normalised number under the HMAC key."""
        digest = hmac.new(self._mac_key(), normalize(mobile).encode(), hashlib.sha256)
        return digest.hexdigest()
