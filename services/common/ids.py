"""Product identifiers: one rule for every service, so an id valid at the gateway is valid everywhere."""

import re

from services.common.errors import InvalidInput

PRODUCT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$"
_PRODUCT_ID = re.compile(PRODUCT_ID_PATTERN)


def validate_product_id(product_id: str) -> str:
    """Returns the id unchanged, or raises InvalidInput with the rule it broke."""
    if not _PRODUCT_ID.fullmatch(product_id):
        raise InvalidInput(
            f"invalid product_id {product_id[:140]!r}: 1-128 characters from A-Z a-z 0-9 . _ : @ -, "
            "starting with a letter or digit"
        )
    return product_id
