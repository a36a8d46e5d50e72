"""The certificate lifecycle: ACME issuance and renewal (:mod:`.acme`), DNS providers for
dns-01 (:mod:`.dns`), domain rules (:mod:`.domains`) and the orchestration the CLI and library
call (:mod:`.service`). acme, josepy and dnspython load only when one of these runs."""

KEY_TYPES = ("ec256", "ec384", "rsa2048", "rsa3072", "rsa4096")
CHALLENGES = ("http-01", "dns-01")
#: RFC 5280 reason codes that ACME CAs accept for revocation (RFC 8555 section 7.6)
REVOCATION_REASONS = {"unspecified": 0, "keyCompromise": 1, "affiliationChanged": 3, "superseded": 4,
                      "cessationOfOperation": 5}
