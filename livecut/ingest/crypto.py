"""AES-128 segment decryption (RFC 8216 §4.3.2.4): CBC with PKCS7 padding."""

from __future__ import annotations

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

KEY_BYTES = 16


class DecryptError(ValueError):
    """The segment or its key is not what AES-128 needs."""


def decrypt_aes128(data: bytes, key: bytes, iv: bytes) -> bytes:
    if len(key) != KEY_BYTES:
        raise DecryptError(f"an AES-128 key is {KEY_BYTES} bytes, this one is {len(key)}")
    if len(data) % 16:
        raise DecryptError(f"{len(data)} bytes is not a whole number of AES blocks")
    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    padded = decryptor.update(data) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError as exc:
        raise DecryptError("bad padding: wrong key or IV") from exc
