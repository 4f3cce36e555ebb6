// Command gen writes logferry's Grafana dashboard (package grafana) as
// JSON: go generate ./deploy/grafana.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/logferry/logferry/deploy/grafana"
)

func main() {
	out := flag.String("o", "logferry.json", "file to write the dashboard to; - for stdout")
	flag.Parse()
	if err := run(*out); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func run(out string) error {
	data, err := grafana.Dashboard()
	if err != nil {
		return err
	}
	if out == "-" {
		_, err = os.Stdout.Write(data)
		return err
	}
	return os.WriteFile(out, data, 0o644)
}
