"""The ssh and ssh_windows transports (paramiko)."""
