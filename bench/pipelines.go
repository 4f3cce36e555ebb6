package bench

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Pipelines are the processing pipelines the throughput benchmarks can add
// (fifobench's variant modifiers, sidecarbench's -pipeline), as the log-opts
// a container or the sidecar's --config file gives them. regex, logfmt and
// java fit the loggen lines ("loggen id=bench seq=N stream=stdout len=250
// ..."); json fits the JSON lines (loggen.Config.JSON: {"level":...,
// "seq":N,"stream":...,"msg":"loggen ..."}).
var Pipelines = map[string]map[string]string{
	// the java stack-trace preset: every loggen line is a first line
	"java": {"multiline": "java"},
	// regex + labels, the driver documentation's kind of pipeline
	"regex": {"loki-pipeline-stages": "- regex:\n    expression: 'seq=(?P<seq>\\d+) stream=(?P<stream>\\w+)'\n- labels:\n    out: stream\n"},
	// logfmt fields into structured metadata
	"logfmt": {"loki-pipeline-stages": "- logfmt:\n    mapping:\n      seq:\n      len:\n- structured_metadata:\n    seq:\n    len:\n"},
	// json fields into structured metadata (use with JSON lines)
	"json": {"loki-pipeline-stages": "- json:\n    expressions:\n      level:\n      seq:\n- structured_metadata:\n    level:\n    seq:\n"},
}

// PipelineNames lists the names of Pipelines, sorted, for a flag's help.
func PipelineNames() string {
	return strings.Join(slices.Sorted(maps.Keys(Pipelines)), ", ")
}

// WritePipelineConfig writes the sidecar --config file that sets pipeline
// name's options into dir and returns its path.
func WritePipelineConfig(dir, name string) (string, error) {
	opts, ok := Pipelines[name]
	if !ok {
		return "", fmt.Errorf("unknown pipeline %q (want one of %s)", name, PipelineNames())
	}
	b, err := json.Marshal(opts) // JSON is YAML: every value stays the string the log-opt takes
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "pipeline-"+name+".yaml")
	return path, os.WriteFile(path, append(b, '\n'), 0o644)
}
