package deploy

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The dashboard shows one daemon at a time, whichever the instance variable
// picks among those that export build_info, on the data source the
// datasource variable picks: every query of every panel selects the
// instance, so that no panel mixes in another daemon's series. (The metric
// names themselves are checked against the registry in metrics.)
func TestDashboardSelectsTheInstance(t *testing.T) {
	type target struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	}
	type datasource struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	}
	var dashboard struct {
		Templating struct {
			List []struct {
				Name       string      `json:"name"`
				Type       string      `json:"type"`
				Query      any         `json:"query"`
				Datasource *datasource `json:"datasource"`
			} `json:"list"`
		} `json:"templating"`
		Panels []struct {
			Title      string     `json:"title"`
			Datasource datasource `json:"datasource"`
			Targets    []target   `json:"targets"`
		} `json:"panels"`
	}
	require.NoError(t, json.Unmarshal(readFile(t, "grafana-dashboard.json"), &dashboard))

	vars := map[string]int{}
	for i, v := range dashboard.Templating.List {
		vars[v.Name] = i
	}
	require.Contains(t, vars, "datasource")
	require.Equal(t, "datasource", dashboard.Templating.List[vars["datasource"]].Type)
	require.Contains(t, vars, "instance")
	instance := dashboard.Templating.List[vars["instance"]]
	require.Equal(t, "query", instance.Type)
	require.Equal(t, &datasource{Type: "prometheus", UID: "${datasource}"}, instance.Datasource)
	require.Equal(t, "label_values(teleport_event_handler_build_info, instance)", instance.Query,
		"the instances are those of a metric every daemon exports from its start")

	// A metric name and the matchers that follow it, if any.
	selector := regexp.MustCompile(`(teleport_event_handler_[a-z_]+)(\{[^}]*\})?`)
	require.NotEmpty(t, dashboard.Panels)
	for _, p := range dashboard.Panels {
		require.Equal(t, "${datasource}", p.Datasource.UID, p.Title)
		require.NotEmpty(t, p.Targets, p.Title)
		for _, tg := range p.Targets {
			found := selector.FindAllStringSubmatch(tg.Expr, -1)
			require.NotEmpty(t, found, "%s %s: %s names no metric of the daemon", p.Title, tg.RefID, tg.Expr)
			for _, m := range found {
				require.True(t, strings.Contains(m[2], `instance="$instance"`),
					"%s %s: %s does not select the instance in %s", p.Title, tg.RefID, m[1], tg.Expr)
			}
		}
	}
}
