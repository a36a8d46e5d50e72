"""tlsgate-iis: the ``iis`` endpoint type (Microsoft IIS 10) over local, ssh_windows and winrm_*."""
