"""Stable vector ids: the same (product, image) gets the same id on every run and every machine."""

import hashlib

_POSITIVE_INT63 = (1 << 63) - 1


def vector_id(product_id: str, image_key: str) -> int:
    """A positive signed-64-bit id from blake2b(product_id NUL image_key).

    NUL cannot occur in a product id, so ("a", "bc") and ("ab", "c") never share an input.
    Zero is mapped to one because FAISS reserves negative ids and zero is worth keeping clear of
    "unset" defaults; the chance of hitting it is 2**-63.
    """
    digest = hashlib.blake2b(f"{product_id}\0{image_key}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") & _POSITIVE_INT63) or 1
