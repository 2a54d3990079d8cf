package metrics

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
)

// retired are the old names of renamed metrics, which only
// docs/upgrading.md may name.
var retired = map[string]bool{
	namespace + "_dead_letters_total": true, // actor_undelivered_messages_total
}

// TestDocsAndDeployNameRealMetrics keeps the README, the docs, the alert
// rules and the dashboard in step with the registry: every metric they name
// exists, and docs/metrics.md lists every metric.
func TestDocsAndDeployNameRealMetrics(t *testing.T) {
	m := New()
	families, err := m.Registry.Gather()
	require.NoError(t, err)
	known := map[string]bool{}
	for _, f := range families {
		known[f.GetName()] = true
	}
	// Vectors are gathered only once they have samples: take their names
	// from their descriptions.
	fqName := regexp.MustCompile(`fqName: "([^"]+)"`)
	v := reflect.ValueOf(m).Elem()
	for i := range v.NumField() {
		if !v.Field(i).CanInterface() || v.Type().Field(i).Name == "Registry" {
			continue
		}
		c, ok := v.Field(i).Interface().(prometheus.Collector)
		if !ok {
			continue
		}
		descs := make(chan *prometheus.Desc, 16)
		c.Describe(descs)
		close(descs)
		for d := range descs {
			known[fqName.FindStringSubmatch(d.String())[1]] = true
		}
	}
	name := regexp.MustCompile(namespace + `_[a-z_]+`)
	docs, err := filepath.Glob("../../../docs/*.md")
	require.NoError(t, err)
	for _, file := range append([]string{"../../../README.md", "../../../deploy/prometheus-alerts.yaml", "../../../deploy/grafana-dashboard.json"}, docs...) {
		raw, err := os.ReadFile(file)
		require.NoError(t, err)
		for _, n := range name.FindAllString(string(raw), -1) {
			n = strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(n, "_bucket"), "_count"), "_")
			if known[n] || known[strings.TrimSuffix(n, "_sum")] {
				continue
			}
			if retired[n] && filepath.Base(file) == "upgrading.md" {
				continue // the upgrade notes name the old name of a renamed metric
			}
			// docs/metrics.md abbreviates sessions_active / _queued.
			require.True(t, strings.HasPrefix(n, namespace+"_sessions_"), "%s names %s, which is not a metric", file, n)
		}
	}
	table, err := os.ReadFile("../../../docs/metrics.md")
	require.NoError(t, err)
	for n := range known {
		if strings.HasPrefix(n, namespace+"_") && n != namespace+"_sessions_queued" {
			require.Contains(t, string(table), "`"+n+"`", "docs/metrics.md does not list %s", n)
		}
	}
}
