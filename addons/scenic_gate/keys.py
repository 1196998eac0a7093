"""The keyed-hash key a box needs to match ID cards to real-name tickets."""
import base64

from scenic_ticket.visitor import pii_vault


def lookup_key():
    """The 32-byte key of the look-up hashes of [scenic] pii_key: boxes
    match ID cards to real-name tickets with it; it cannot decrypt."""
    return pii_vault().lookup_key()


def lookup_key_b64():
    return base64.b64encode(lookup_key()).decode()
