package sidecar

import (
	"fmt"
	"io"
	"net/url"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/logferry/logferry/shared/logopts"
)

// WriteEffective writes the merged configuration as a YAML file the
// sidecar's --config takes, each key with where its value came from:
// the settings, then the log options given, then the log options left at
// their defaults as o (ContainerOptions of no labels) holds them.
// Credentials in URLs are redacted.
func (c Config) WriteEffective(w io.Writer, o logopts.Options) error {
	doc := &yaml.Node{Kind: yaml.MappingNode}
	add := func(key, value, origin string) {
		v := &yaml.Node{Kind: yaml.ScalarNode, Value: value, LineComment: origin}
		if strings.Contains(value, "\n") {
			v.Style = yaml.LiteralStyle
		}
		doc.Content = append(doc.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: key}, v)
	}
	given := map[string]bool{}
	for _, s := range c.Effective {
		v, origin := s.Value, s.Origin
		switch {
		case logopts.Secret(s.Key):
			v = redactedURL(v)
		case s.Key == "spool-dir" && v == "":
			v, origin = c.Overflow.Spool.Dir, "default: <state-dir>/spool"
		}
		add(s.Key, v, origin)
		given[s.Key] = true
	}
	defaults := o.DefaultValues()
	for _, k := range logopts.Keys() {
		v, ok := defaults[k]
		switch {
		case !ok || given[k]:
		case k == "loki-retries" && v == "0":
			add(k, v, "overflow block: retried until Loki takes it")
		default:
			add(k, v, "default")
		}
	}
	if _, err := fmt.Fprintln(w, "# logferry-sidecar check-config: valid. Each value's origin follows it."); err != nil {
		return err
	}
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(&yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{doc}}); err != nil {
		return err
	}
	return enc.Close()
}

// redactedURL hides a URL's password and query values (a token may ride
// there); a value that does not parse is hidden whole.
func redactedURL(raw string) string {
	if raw == "" {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "(invalid URL, not shown)"
	}
	if u.RawQuery != "" {
		q := u.Query()
		for k := range q {
			q[k] = []string{"xxxxx"}
		}
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}
