"""Large CDRs: a 5 MB FreeSWITCH CDR from POST to stored, with the claim check on.

(Work in progress: the inflater is used by tests/e2e/test_claim_check.py.)
"""

from __future__ import annotations

LARGE_BYTES = 5_000_000
_PAD = "%7B%22leg%22%3A%22a%22%2C%22codec%22%3A%22PCMU%22%2C%22ts%22%3A1242316950%7D"


def inflate_cdr(xml: bytes, size: int = LARGE_BYTES) -> bytes:
    """A real FreeSWITCH CDR grown to ``size`` bytes the way long calls and complex dialplans grow
    them: many more channel variables and a long ``app_log``. Still a valid, mappable CDR: the
    added variables have names of their own and the original last application stays last."""
    head, sep, tail = xml.partition(b"<variables>")
    if not sep or b"<app_log>" not in tail:
        raise ValueError("inflate_cdr needs a CDR with <variables> and <app_log>")
    budget = size - len(xml)
    variables, apps = bytearray(), bytearray()
    i = 0
    while len(variables) + len(apps) < budget:
        variables += f"\n    <cdrflow_pad_{i:06d}>{_PAD}</cdrflow_pad_{i:06d}>".encode()
        apps += f'\n    <application app_name="set" app_data="cdrflow_pad_{i:06d}={i}"/>'.encode()
        i += 1
    vars_end, app_sep, app_tail = tail.partition(b"<app_log>")
    return head + sep + bytes(variables) + vars_end + app_sep + bytes(apps) + app_tail
