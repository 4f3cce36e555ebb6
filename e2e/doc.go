// Package e2e holds logferry's end-to-end tests: the plugin and the sidecar
// against a private dockerd (internal/dockertest) and a real Loki
// (internal/lokitest). They need root and Debian's docker.io; -short skips
// them.
package e2e
