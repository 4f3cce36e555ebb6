// Package bench measures the logging plugin end to end, from outside: it
// plays the Docker daemon against the real plugin binary (a FIFO per
// container, StartLogging and StopLogging over the plugin's unix socket) and
// plays Loki with a sink that decodes and counts what the plugin pushes.
// The programs under cmd/ and the tests here use it; scripts/bench-plugin
// runs them all and BENCHMARKS.md records the figures.
package bench
