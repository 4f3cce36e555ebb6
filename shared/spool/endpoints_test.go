package spool

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"

	"github.com/logferry/logferry/shared/loki"
)

func TestEndpointDirKeyedByTransport(t *testing.T) {
	base := loki.Config{URL: "http://127.0.0.1:3100/loki/api/v1/push", TenantID: "t1"}
	same := base
	same.BatchWait, same.Retries = 7, 3 // batching and retries share a spool
	if EndpointDir("/s", base) != EndpointDir("/s", same) {
		t.Fatal("configurations that differ in batching only got different spools")
	}
	// The name earlier versions gave: a hash of URL and tenant only.
	if got := EndpointDir("/s", base); got != "/s/"+legacyName(base) {
		t.Fatalf("a configuration without credentials moved its spool: %s", got)
	}
	seen := map[string]string{EndpointDir("/s", base): "base"}
	for name, change := range map[string]func(*loki.Config){
		"token file": func(c *loki.Config) { c.BearerTokenFile = "/etc/t" },
		"ca":         func(c *loki.Config) { c.TLSCAFile = "/etc/ca" },
		"cert":       func(c *loki.Config) { c.TLSCertFile = "/etc/c" },
		"key":        func(c *loki.Config) { c.TLSKeyFile = "/etc/k" },
		"sni":        func(c *loki.Config) { c.TLSServerName = "loki" },
		"insecure":   func(c *loki.Config) { c.TLSInsecureSkipVerify = true },
		"proxy":      func(c *loki.Config) { c.ProxyURL = "http://127.0.0.1:8080" },
		"tenant":     func(c *loki.Config) { c.TenantID = "t2" },
	} {
		c := base
		change(&c)
		d := EndpointDir("/s", c)
		if other, ok := seen[d]; ok {
			t.Errorf("%s shares the spool of %s", name, other)
		}
		seen[d] = name
	}
}

// legacyName is the directory name of a spool before transport keys: the
// first 8 bytes of sha256(URL NUL tenant), in hex.
func legacyName(c loki.Config) string {
	h := sha256.Sum256([]byte(c.URL + "\x00" + c.TenantID))
	return hex.EncodeToString(h[:8])
}
