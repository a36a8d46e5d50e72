"""The winrm_http, winrm_https and winrm_https_insecure transports (pywinrm)."""
