# The tlsgate gateway as a container image. On this platform `--connection_type local` is refused
# (the reference document's "Gateway Installation on Docker" column): endpoints are reached over
# ssh, WinRM or REST. State (inventory, master key, known_hosts) lives in the /var/lib/tlsgate volume.
FROM python:3.11-slim
ENV TLSGATE_GATEWAY_PLATFORM=docker \
    TLSGATE_HOME=/var/lib/tlsgate
COPY core /src/core
COPY plugins /src/plugins
RUN pip install --no-cache-dir /src/core /src/plugins/keystores /src/plugins/nginx /src/plugins/apache \
        /src/plugins/tomcat /src/plugins/f5 \
    && useradd --system --home-dir /var/lib/tlsgate tlsgate && mkdir -p /var/lib/tlsgate \
    && chown tlsgate /var/lib/tlsgate && chmod 700 /var/lib/tlsgate
USER tlsgate
VOLUME /var/lib/tlsgate
ENTRYPOINT ["tlsgate"]
