"""Generated BMC passwords and how long a password each IPMI version accepts.

RAKP lets anyone who reaches the IPMI port try passwords offline, so a generated password is 16 random
letters and digits from the `secrets` module (62 symbols: about 95 bits). 16 bytes is also the most IPMI
1.5 (`ipmitool -I lan`) accepts, so every client works with a generated password; IPMI 2.0 takes up to 20.
"""

from __future__ import annotations

import secrets
import string

IPMI15_MAX_PASSWORD = 16  # bytes: the IPMI 1.5 password field (MD5 key)
IPMI20_MAX_PASSWORD = 20  # bytes: the IPMI 2.0 password field (RAKP key)
PASSWORD_LENGTH = IPMI15_MAX_PASSWORD
ALPHABET = string.ascii_letters + string.digits


def generate_password() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(PASSWORD_LENGTH))
