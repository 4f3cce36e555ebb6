# The logferry sidecar as a FROM scratch image. Build it with
#   make sidecar-image
# which compiles the static binary into bin/ first (no Go image needed).
FROM scratch
COPY bin/logferry-sidecar /logferry-sidecar
COPY bin/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
# Positions live here; mount a volume to keep them across restarts.
VOLUME /var/lib/logferry-sidecar
ENTRYPOINT ["/logferry-sidecar"]
CMD ["--listen", "0.0.0.0:9376"]
