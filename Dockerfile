# The logferry sidecar as a FROM scratch image. Build it with
#   make sidecar-image
# which compiles the static binary into bin/ first (no Go image needed).
FROM scratch
COPY bin/logferry-sidecar /logferry-sidecar
COPY bin/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
# Positions live here; mount a volume to keep them across restarts.
VOLUME /var/lib/logferry-sidecar
ENTRYPOINT ["/logferry-sidecar"]
# Deliberately on every address of the container's own network namespace:
# /metrics and /ready are reachable only where the operator publishes the
# port (deploy/compose.yaml: 127.0.0.1 of the host only). They carry no
# credentials; /debug/pprof/ is off unless --pprof=true. See SECURITY.md.
CMD ["--listen", "0.0.0.0:9376"]
