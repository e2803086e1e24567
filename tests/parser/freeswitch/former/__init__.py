"""The FreeSWITCH mapping as it was at main ``2c48b60`` (issue 15, ninth round's start), verbatim
but for its imports: the oracle ``test_former_mapping.py`` holds the mapping to. Not product
code; do not edit (a change of the mapping's behaviour is made in ``cdr_parser.freeswitch`` and
then here, on purpose, in the same commit)."""
