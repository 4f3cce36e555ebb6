// Package grafana builds logferry's Grafana dashboard, logferry.json, from
// Go with the Grafana Foundation SDK. Regenerate the file after a change:
//
//	go generate ./deploy/grafana
//
// dashboard_test.go fails while the file differs from what Dashboard
// builds, and when a query names a series or label the binaries do not
// register.
package grafana

//go:generate go run ./gen -o logferry.json

import (
	"encoding/json"
	"strings"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/heatmap"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// UID is the dashboard's uid: links to it survive a re-import.
const UID = "logferry"

// sel selects the chosen capture styles (scrape jobs) and instances; SEL in
// an expression stands for it.
const sel = `job=~"$job", instance=~"$instance"`

// datasource is the Prometheus the dashboard's datasource variable chooses.
var datasource = common.DataSourceRef{Type: cog.ToPtr("prometheus"), Uid: cog.ToPtr("${datasource}")}

// query is one PromQL target of a panel.
type query struct {
	expr, legend string
}

func target(q query) *prometheus.DataqueryBuilder {
	return prometheus.NewDataqueryBuilder().
		Datasource(datasource).
		Expr(strings.ReplaceAll(q.expr, "SEL", sel)).
		LegendFormat(q.legend).
		Range()
}

// panels numbers panels in the order they are added, so that their ids
// (and links to them) stay put when the file is regenerated.
type panels struct{ id uint32 }

func (p *panels) next() uint32 {
	p.id++
	return p.id
}

func (p *panels) row(title string) *dashboard.RowBuilder {
	return dashboard.NewRowBuilder(title).Id(p.next())
}

// graph is a time series panel of width w (of 24) and height 8.
func (p *panels) graph(title, description, unit string, w uint32, qs ...query) *timeseries.PanelBuilder {
	b := timeseries.NewPanelBuilder().
		Id(p.next()).
		Title(title).
		Description(description).
		Datasource(datasource).
		Unit(unit).
		Min(0).
		Span(w).
		Height(8).
		FillOpacity(10).
		ShowPoints(common.VisibilityModeNever).
		Legend(common.NewVizLegendOptionsBuilder().
			DisplayMode(common.LegendDisplayModeTable).
			Placement(common.LegendPlacementBottom).
			ShowLegend(true).
			Calcs([]string{"lastNotNull", "max"}))
	for i, q := range qs {
		b.WithTarget(target(q).RefId(string(rune('A' + i))))
	}
	return b
}

// variable is a multi-value query variable over label values, with All.
func variable(name, label, query string) *dashboard.QueryVariableBuilder {
	return dashboard.NewQueryVariableBuilder(name).
		Label(label).
		Datasource(datasource).
		Query(dashboard.StringOrMap{String: cog.ToPtr(query)}).
		Definition(query).
		Refresh(dashboard.VariableRefreshOnTimeRangeChanged).
		Sort(dashboard.VariableSortAlphabeticalAsc).
		Multi(true).
		IncludeAll(true).
		AllValue(".*").
		Current(dashboard.VariableOption{
			Selected: cog.ToPtr(true),
			Text:     dashboard.StringOrArrayOfString{ArrayOfString: []string{"All"}},
			Value:    dashboard.StringOrArrayOfString{ArrayOfString: []string{"$__all"}},
		})
}

// Dashboard builds the dashboard and returns its JSON model, as Grafana
// imports it.
func Dashboard() ([]byte, error) {
	var p panels
	b := dashboard.NewDashboardBuilder("logferry").
		Uid(UID).
		Description("logferry, the Docker logging plugin and the host sidecar shipping container logs to Loki: what they read, what Loki accepts, what waits in memory and on disk, what is lost. Alerts: deploy/prometheus/logferry-alerts.yaml; runbook: docs/RUNBOOK.md.").
		Tags([]string{"logferry", "loki", "docker"}).
		Editable().
		Tooltip(dashboard.DashboardCursorSyncCrosshair).
		Refresh("30s").
		Time("now-3h", "now").
		Timezone(common.TimeZoneBrowser).
		WithVariable(dashboard.NewDatasourceVariableBuilder("datasource").
			Label("Prometheus").
			Type("prometheus")).
		WithVariable(variable("job", "Capture style (job)", `label_values(logferry_build_info, job)`)).
		WithVariable(variable("instance", "Instance", `label_values(logferry_build_info{job=~"$job"}, instance)`))

	b.WithRow(p.row("Ingest and delivery")).
		WithPanel(p.graph("Lines/s", "Entries handed to the Loki dispatchers (received) and entries Loki accepted (sent).", "short", 12,
			query{`sum by (job, instance) (rate(logferry_loki_entries_received_total{SEL}[$__rate_interval]))`, "received {{job}} {{instance}}"},
			query{`sum by (job, instance) (rate(logferry_loki_entries_sent_total{SEL}[$__rate_interval]))`, "accepted {{job}} {{instance}}"})).
		WithPanel(p.graph("Bytes/s", "Line bytes handed to the dispatchers and accepted by Loki, and the compressed request bytes on the wire.", "Bps", 12,
			query{`sum by (job, instance) (rate(logferry_loki_bytes_received_total{SEL}[$__rate_interval]))`, "received {{job}} {{instance}}"},
			query{`sum by (job, instance) (rate(logferry_loki_bytes_sent_total{SEL}[$__rate_interval]))`, "accepted {{job}} {{instance}}"},
			query{`sum by (job, instance) (rate(logferry_loki_request_bytes_sent_total{SEL}[$__rate_interval]))`, "on the wire {{job}} {{instance}}"})).
		WithPanel(p.graph("Batches sent/s", "Pushes Loki accepted, per endpoint and tenant.", "reqps", 8,
			query{`sum by (job, instance, endpoint, tenant) (rate(logferry_loki_batches_sent_total{SEL}[$__rate_interval]))`, "{{job}} {{instance}} {{endpoint}} {{tenant}}"})).
		WithPanel(p.graph("Retries/s by status", "Pushes retried, by the status that caused them (HTTP code, network, token_file).", "reqps", 8,
			query{`sum by (job, instance, status) (rate(logferry_loki_retries_total{SEL}[$__rate_interval]))`, "{{status}} {{job}} {{instance}}"})).
		WithPanel(p.graph("Loki push failures/s by reason", "Pushes Loki did not acknowledge, as logferry sees them: refused, unauthorized, rate_limited, server_error, network, ...", "reqps", 8,
			query{`sum by (job, instance, endpoint, reason) (rate(logferry_loki_push_failures_total{SEL}[$__rate_interval]))`, "{{reason}} {{job}} {{instance}} {{endpoint}}"})).
		WithPanel(p.graph("Lines dropped/s by reason", "Entries that will not reach Loki (logferry_loki_entries_dropped_total), unsent spool records deleted at the spool's bound, and lines the pipelines drop on purpose.", "short", 24,
			query{`sum by (job, instance, reason) (rate(logferry_loki_entries_dropped_total{SEL}[$__rate_interval]))`, "lost: {{reason}} {{job}} {{instance}}"},
			query{`sum by (job, instance, reason) (rate(logferry_spool_records_dropped_total{SEL}[$__rate_interval]))`, "spool records deleted: {{reason}} {{job}} {{instance}}"},
			query{`sum by (job, instance, reason) (rate(logferry_pipeline_dropped_total{SEL}[$__rate_interval]))`, "pipeline: {{reason}} {{job}} {{instance}}"})).
		WithPanel(p.graph("Push latency", "Quantiles of one push request's duration, successes and failures together; LogferryPushLatencyHigh fires when the p99 stays above loki-batch-wait + 1 s.", "s", 12,
			query{`histogram_quantile(0.5, sum by (job, instance, le) (rate(logferry_loki_push_duration_seconds_bucket{SEL}[$__rate_interval])))`, "p50 {{job}} {{instance}}"},
			query{`histogram_quantile(0.9, sum by (job, instance, le) (rate(logferry_loki_push_duration_seconds_bucket{SEL}[$__rate_interval])))`, "p90 {{job}} {{instance}}"},
			query{`histogram_quantile(0.99, sum by (job, instance, le) (rate(logferry_loki_push_duration_seconds_bucket{SEL}[$__rate_interval])))`, "p99 {{job}} {{instance}}"},
			query{`max by (job, instance) (logferry_loki_batch_wait_seconds{SEL}) + 1`, "batch wait + 1 s {{job}} {{instance}}"})).
		WithPanel(heatmap.NewPanelBuilder().
			Id(p.next()).
			Title("Push latency histogram").
			Description("Push requests per latency bucket (logferry_loki_push_duration_seconds), all chosen instances together.").
			Datasource(datasource).
			Span(12).
			Height(8).
			Calculate(false).
			Color(heatmap.NewHeatmapColorOptionsBuilder().
				Mode(heatmap.HeatmapColorModeScheme).
				Scheme("Oranges").
				Exponent(0.5).
				Steps(64)).
			YAxis(heatmap.NewYAxisConfigBuilder().Unit("s")).
			RowsFrame(heatmap.NewRowsHeatmapOptionsBuilder().Layout(common.HeatmapCellLayoutLe)).
			Tooltip(heatmap.NewHeatmapTooltipBuilder().Mode(common.TooltipDisplayModeSingle).YHistogram(true)).
			WithTarget(target(query{`sum by (le) (increase(logferry_loki_push_duration_seconds_bucket{SEL}[$__rate_interval]))`, "{{le}}"}).
				RefId("A").
				Format(prometheus.PromQueryFormatHeatmap)))

	b.WithRow(p.row("Buffers")).
		WithPanel(p.graph("Spool bytes", "Bytes in each spool's segment files against its bound (spool-max-size: LogferrySpoolNearlyFull fires above 80 %), and the bytes Loki has not acknowledged yet. There is no oldest-record age series; a rising unacked line is the backlog.", "bytes", 12,
			query{`sum by (job, instance, dir) (logferry_spool_bytes{SEL})`, "on disk {{job}} {{instance}} {{dir}}"},
			query{`sum by (job, instance, dir) (logferry_spool_unacked_bytes{SEL})`, "unacked {{job}} {{instance}} {{dir}}"},
			query{`sum by (job, instance, dir) (logferry_spool_max_bytes{SEL})`, "max {{job}} {{instance}} {{dir}}"})).
		WithPanel(p.graph("Memory queue bytes", "Line bytes waiting in memory for Loki against the bound (loki-queue-size: LogferryLokiQueueNearlyFull fires above 90 %). Past it the overflow policy spools, drops or blocks.", "bytes", 12,
			query{`sum by (job, instance, endpoint, tenant) (logferry_loki_queue_bytes{SEL})`, "queued {{job}} {{instance}} {{endpoint}} {{tenant}}"},
			query{`sum by (job, instance, endpoint, tenant) (logferry_loki_queue_limit_bytes{SEL})`, "limit {{job}} {{instance}} {{endpoint}} {{tenant}}"})).
		WithPanel(p.graph("Spooling", "1 while an endpoint's new entries go to the spool behind spooled ones; entries spooled and replayed per second.", "short", 12,
			query{`max by (job, instance, endpoint, tenant) (logferry_loki_spooling{SEL})`, "spooling {{job}} {{instance}} {{endpoint}} {{tenant}}"},
			query{`sum by (job, instance, reason) (rate(logferry_loki_entries_spooled_total{SEL}[$__rate_interval]))`, "spooled/s: {{reason}} {{job}} {{instance}}"},
			query{`sum by (job, instance) (rate(logferry_loki_entries_replayed_total{SEL}[$__rate_interval]))`, "replayed/s {{job}} {{instance}}"})).
		WithPanel(p.graph("Active streams and containers", "Plugin: container FIFOs being read and ended streams still draining. Sidecar: running containers by route, and tailers.", "short", 12,
			query{`sum by (job, instance) (logferry_plugin_streams_active{SEL})`, "plugin streams {{instance}}"},
			query{`sum by (job, instance) (logferry_plugin_streams_draining{SEL})`, "plugin draining {{instance}}"},
			query{`sum by (job, instance, route) (logferry_sidecar_containers{SEL})`, "sidecar containers: {{route}} {{instance}}"},
			query{`sum by (job, instance) (logferry_sidecar_tail_tailers{SEL})`, "sidecar tailers {{instance}}"}))

	b.WithRow(p.row("Containers")).
		WithPanel(p.graph("Top 10 containers by bytes/s", "Line bytes read per container (logferry_plugin_bytes_read_total, logferry_sidecar_bytes_read_total), the ten largest.", "Bps", 12,
			query{`topk(10, sum by (job, instance, container_name) (rate(logferry_plugin_bytes_read_total{SEL}[$__rate_interval])) or sum by (job, instance, container_name) (rate(logferry_sidecar_bytes_read_total{SEL}[$__rate_interval])))`, "{{container_name}} ({{job}} {{instance}})"})).
		WithPanel(p.graph("Top 10 containers by lines/s", "Lines read per container (logferry_plugin_entries_read_total, logferry_sidecar_lines_read_total), the ten largest.", "short", 12,
			query{`topk(10, sum by (job, instance, container_name) (rate(logferry_plugin_entries_read_total{SEL}[$__rate_interval])) or sum by (job, instance, container_name) (rate(logferry_sidecar_lines_read_total{SEL}[$__rate_interval])))`, "{{container_name}} ({{job}} {{instance}})"}))

	b.WithRow(p.row("Processes")).
		WithPanel(p.graph("Goroutines", "Per binary and instance.", "short", 6,
			query{`go_goroutines{SEL}`, "{{job}} {{instance}}"})).
		WithPanel(p.graph("Open file descriptors", "Per binary and instance; the plugin holds one FIFO and a local-copy file per container.", "short", 6,
			query{`process_open_fds{SEL}`, "{{job}} {{instance}}"})).
		WithPanel(p.graph("Resident memory", "Per binary and instance.", "bytes", 6,
			query{`process_resident_memory_bytes{SEL}`, "{{job}} {{instance}}"})).
		WithPanel(p.graph("CPU", "CPU seconds per second (1 = one core), per binary and instance.", "short", 6,
			query{`rate(process_cpu_seconds_total{SEL}[$__rate_interval])`, "{{job}} {{instance}}"}))

	d, err := b.Build()
	if err != nil {
		return nil, err
	}
	out, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}
