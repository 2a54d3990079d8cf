// Package deploy holds no code: its tests render the Helm chart with Go's
// template engine and the few Sprig functions the chart uses, so that the
// chart is checked where helm is not installed, and compare the result with
// helm's own where it is.
package deploy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"text/template"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/fdfwd/teleport-event-handler/config"
	"github.com/fdfwd/teleport-event-handler/internal/commands/configure"
	"github.com/fdfwd/teleport-event-handler/tests/testpki"
)

const (
	chartDir     = "helm/teleport-event-handler"
	manifests    = "kubernetes/teleport-event-handler.yaml"
	manifestVals = "kubernetes/values.yaml"
	release      = "teleport-event-handler"
	namespace    = "teleport"
)

// render renders the chart as `helm template` does, with the chart's values
// overridden by each of overrides in turn, and returns the manifests by
// template file.
func render(t *testing.T, overrides ...map[string]any) (map[string]string, error) {
	t.Helper()
	return renderAs(t, release, overrides...)
}

// renderAs renders the chart for the release named releaseName.
func renderAs(t *testing.T, releaseName string, overrides ...map[string]any) (map[string]string, error) {
	t.Helper()
	var chart struct {
		Name       string `yaml:"name"`
		Version    string `yaml:"version"`
		AppVersion string `yaml:"appVersion"`
	}
	require.NoError(t, yaml.Unmarshal(readFile(t, filepath.Join(chartDir, "Chart.yaml")), &chart))
	var values map[string]any
	require.NoError(t, yaml.Unmarshal(readFile(t, filepath.Join(chartDir, "values.yaml")), &values))
	for _, o := range overrides {
		values = merge(values, o)
	}

	root := template.New("root").Option("missingkey=zero")
	root.Funcs(funcs(root))
	files, err := fs.Glob(os.DirFS(chartDir), "templates/*")
	require.NoError(t, err)
	for _, f := range files {
		if _, err := root.New(path.Join(chart.Name, f)).Parse(string(readFile(t, filepath.Join(chartDir, f)))); err != nil {
			return nil, err
		}
	}
	out := map[string]string{}
	for _, f := range files {
		base := path.Base(f)
		if strings.HasPrefix(base, "_") || base == "NOTES.txt" {
			continue
		}
		name := path.Join(chart.Name, f)
		data := map[string]any{
			"Values":   values,
			"Chart":    map[string]any{"Name": chart.Name, "Version": chart.Version, "AppVersion": chart.AppVersion},
			"Release":  map[string]any{"Name": releaseName, "Namespace": namespace, "Service": "Helm", "IsInstall": true, "Revision": 1},
			"Template": map[string]any{"Name": name, "BasePath": path.Join(chart.Name, "templates")},
		}
		var b strings.Builder
		if err := root.ExecuteTemplate(&b, name, data); err != nil {
			return nil, err
		}
		if s := strings.TrimSpace(b.String()); s != "" {
			out[base] = b.String()
		}
	}
	return out, nil
}

// merge is Helm's coalescing of values: maps merge key by key, anything else
// is replaced.
func merge(base, over map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range base {
		out[k] = v
	}
	for k, v := range over {
		bm, ok1 := out[k].(map[string]any)
		om, ok2 := v.(map[string]any)
		if ok1 && ok2 {
			out[k] = merge(bm, om)
		} else {
			out[k] = v
		}
	}
	return out
}

// funcs are the Sprig and Helm functions the chart uses, with their
// semantics; a template that uses any other fails to parse here.
func funcs(root *template.Template) template.FuncMap {
	indent := func(n int, s string) string {
		pad := strings.Repeat(" ", n)
		return pad + strings.ReplaceAll(s, "\n", "\n"+pad)
	}
	return template.FuncMap{
		"include": func(name string, data any) (string, error) {
			var b strings.Builder
			err := root.ExecuteTemplate(&b, name, data)
			return b.String(), err
		},
		"required": func(msg string, v any) (any, error) {
			if v == nil || v == "" {
				return nil, errors.New(msg)
			}
			return v, nil
		},
		"default": func(def any, given ...any) any {
			if len(given) == 0 || empty(given[0]) {
				return def
			}
			return given[0]
		},
		"toYaml": func(v any) (string, error) {
			var b bytes.Buffer
			enc := yaml.NewEncoder(&b)
			enc.SetIndent(2)
			if err := enc.Encode(v); err != nil {
				return "", err
			}
			return strings.TrimSuffix(b.String(), "\n"), nil
		},
		"toJson": func(v any) (string, error) {
			data, err := json.Marshal(v)
			return string(data), err
		},
		"indent":     indent,
		"nindent":    func(n int, s string) string { return "\n" + indent(n, s) },
		"quote":      func(v any) string { return fmt.Sprintf("%q", fmt.Sprint(v)) },
		"trunc":      func(n int, s string) string { return s[:min(n, len(s))] },
		"trimSuffix": func(suffix, s string) string { return strings.TrimSuffix(s, suffix) },
		"contains":   func(sub, s string) bool { return strings.Contains(s, sub) },
		"replace":    func(old, new, s string) string { return strings.ReplaceAll(s, old, new) },
		"kindIs": func(kind string, v any) bool {
			if v == nil {
				return kind == "invalid"
			}
			return reflect.ValueOf(v).Kind().String() == kind
		},
		"splitList": func(sep, s string) []string { return strings.Split(s, sep) },
		"last":      func(l []string) string { return l[len(l)-1] },
		"sha256sum": func(s string) string {
			sum := sha256.Sum256([]byte(s))
			return hex.EncodeToString(sum[:])
		},
		"fail": func(msg string) (string, error) { return "", errors.New(msg) },
		"fromYaml": func(s string) (map[string]any, error) {
			var m map[string]any
			err := yaml.Unmarshal([]byte(s), &m)
			return m, err
		},
		"dict": func(kv ...any) (map[string]any, error) {
			if len(kv)%2 != 0 {
				return nil, errors.New("dict: odd number of arguments")
			}
			m := map[string]any{}
			for i := 0; i < len(kv); i += 2 {
				m[fmt.Sprint(kv[i])] = kv[i+1]
			}
			return m, nil
		},
		"list":     func(v ...any) []any { return v },
		"clean":    path.Clean,
		"toString": func(v any) string { return fmt.Sprint(v) },
		"ternary": func(yes, no any, cond bool) any {
			if cond {
				return yes
			}
			return no
		},
	}
}

// empty is Sprig's notion: the zero value of its type, or no value.
func empty(v any) bool {
	if v == nil {
		return true
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Slice, reflect.Map, reflect.String, reflect.Array:
		return rv.Len() == 0
	}
	return rv.IsZero()
}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(name)
	require.NoError(t, err)
	return data
}

func manifestValues(t *testing.T) map[string]any {
	t.Helper()
	var v map[string]any
	require.NoError(t, yaml.Unmarshal(readFile(t, manifestVals), &v))
	return v
}

// objects parses rendered manifests, by "Kind/name".
func objects(t *testing.T, docs ...string) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	for _, doc := range docs {
		dec := yaml.NewDecoder(strings.NewReader(doc))
		for {
			var obj map[string]any
			err := dec.Decode(&obj)
			if errors.Is(err, io.EOF) {
				break
			}
			require.NoError(t, err, doc)
			if obj == nil {
				continue
			}
			md := obj["metadata"].(map[string]any)
			out[fmt.Sprintf("%s/%s", obj["kind"], md["name"])] = obj
		}
	}
	return out
}

func renderObjects(t *testing.T, overrides ...map[string]any) map[string]map[string]any {
	t.Helper()
	return renderObjectsAs(t, release, overrides...)
}

func renderObjectsAs(t *testing.T, releaseName string, overrides ...map[string]any) map[string]map[string]any {
	t.Helper()
	files, err := renderAs(t, releaseName, overrides...)
	require.NoError(t, err)
	docs := make([]string, 0, len(files))
	for _, d := range files {
		docs = append(docs, d)
	}
	return objects(t, docs...)
}

// get walks a parsed object: keys for maps, ints for lists.
func get(t *testing.T, v any, keys ...any) any {
	t.Helper()
	for _, k := range keys {
		switch k := k.(type) {
		case string:
			m, ok := v.(map[string]any)
			require.True(t, ok, "not a map at %q", k)
			v = m[k]
		case int:
			l, ok := v.([]any)
			require.True(t, ok, "not a list at %d", k)
			require.Less(t, k, len(l))
			v = l[k]
		}
	}
	return v
}

func namesOf(t *testing.T, list any) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	for _, item := range list.([]any) {
		m := item.(map[string]any)
		out[m["name"].(string)] = m
	}
	return out
}

func TestChartDefaults(t *testing.T) {
	objs := renderObjects(t, manifestValues(t))
	require.ElementsMatch(t, []string{"ServiceAccount/" + release, "ConfigMap/" + release, "PersistentVolumeClaim/" + release,
		"Service/" + release, "Deployment/" + release}, keys(objs))
	for _, obj := range objs {
		require.Equal(t, namespace, get(t, obj, "metadata", "namespace"))
	}

	dep := objs["Deployment/"+release]
	require.Equal(t, 1, get(t, dep, "spec", "replicas"), "one writer of the checkpoint")
	require.Equal(t, "Recreate", get(t, dep, "spec", "strategy", "type"))
	pod := get(t, dep, "spec", "template", "spec")
	require.Equal(t, true, get(t, pod, "securityContext", "runAsNonRoot"))
	require.NotZero(t, get(t, pod, "securityContext", "runAsUser"))
	require.Equal(t, false, get(t, pod, "automountServiceAccountToken"))
	c := get(t, pod, "containers", 0)
	require.Equal(t, false, get(t, c, "securityContext", "allowPrivilegeEscalation"))
	require.Equal(t, true, get(t, c, "securityContext", "readOnlyRootFilesystem"))
	require.Equal(t, []any{"ALL"}, get(t, c, "securityContext", "capabilities", "drop"))
	require.Equal(t, []any{"--config=/etc/teleport-event-handler/config/teleport-event-handler.toml", "start"}, get(t, c, "args"))

	// Probes on the metrics port.
	require.Equal(t, "metrics", get(t, c, "ports", 0, "name"))
	require.Equal(t, 9465, get(t, c, "ports", 0, "containerPort"))
	require.Equal(t, "/healthz", get(t, c, "livenessProbe", "httpGet", "path"))
	require.Equal(t, "metrics", get(t, c, "livenessProbe", "httpGet", "port"))
	require.Equal(t, "/readyz", get(t, c, "readinessProbe", "httpGet", "path"))
	require.Equal(t, "metrics", get(t, c, "readinessProbe", "httpGet", "port"))
	require.Equal(t, 9465, get(t, objs["Service/"+release], "spec", "ports", 0, "port"))

	// The state on the persistent volume, which outlives the release.
	pvc := objs["PersistentVolumeClaim/"+release]
	require.Equal(t, "keep", get(t, pvc, "metadata", "annotations", "helm.sh/resource-policy"))
	require.Equal(t, "1Gi", get(t, pvc, "spec", "resources", "requests", "storage"))
	volumes := namesOf(t, get(t, pod, "volumes"))
	require.Equal(t, release, get(t, volumes["storage"], "persistentVolumeClaim", "claimName"))
	require.Equal(t, "teleport-event-handler-identity", get(t, volumes["teleport-identity"], "secret", "secretName"))
	require.Equal(t, "teleport-event-handler-fluentd-tls", get(t, volumes["fluentd-certificate"], "secret", "secretName"))
	mounts := namesOf(t, get(t, c, "volumeMounts"))
	require.Equal(t, "/var/lib/teleport-event-handler", mounts["storage"]["mountPath"])
	for _, m := range mounts {
		require.NotContains(t, m, "subPath", "a renewed identity must reach the pod")
	}

	cfg := loadConfig(t, objs)
	require.Equal(t, "/var/lib/teleport-event-handler", cfg.Storage)
	require.Equal(t, "0.0.0.0:9465", cfg.MetricsAddr)
	require.Equal(t, "teleport.example.com:443", cfg.Teleport.Addr)
	require.True(t, cfg.Teleport.RefreshEnabled)
	require.Equal(t, "https://fluentd.example.com:8888/test.log", cfg.Fluentd.URL)
	require.Equal(t, "2024-01-01T00:00:00Z", cfg.StartTime.Format("2006-01-02T15:04:05Z07:00"))
	require.False(t, cfg.Debug)
	require.Equal(t, []string{"print", "desktop.recording"}, cfg.SkipSessionTypes)

	// The pod rolls when the configuration changes.
	before := get(t, dep, "spec", "template", "metadata", "annotations", "checksum/config")
	after := get(t, renderObjects(t, manifestValues(t), map[string]any{"eventHandler": map[string]any{"batch": 50}})["Deployment/"+release],
		"spec", "template", "metadata", "annotations", "checksum/config")
	require.NotEqual(t, before, after)
}

// loadConfig loads the configuration file of the ConfigMap with the
// daemon's own parser, its paths moved to files made for the test.
func loadConfig(t *testing.T, objs map[string]map[string]any) *config.Config {
	t.Helper()
	toml := configFile(t, objs)
	dir := t.TempDir()
	pki, err := testpki.Generate(filepath.Join(dir, "pki"))
	require.NoError(t, err)
	for src, dst := range map[string]string{
		pki.FluentdCAFile:                "fluentd/ca.crt",
		pki.FluentdClientCertFile:        "fluentd/client.crt",
		pki.FluentdClientKeyFile:         "fluentd/client.key",
		pki.IdentityFile:                 "teleport/identity",
		writeTemp(t, "the shared key\n"): "fluentd-shared-key/shared.key",
	} {
		require.NoError(t, os.MkdirAll(filepath.Join(dir, filepath.Dir(dst)), 0o700))
		require.NoError(t, os.WriteFile(filepath.Join(dir, dst), readFile(t, src), 0o600))
	}
	moved := strings.ReplaceAll(toml, `"/etc/teleport-event-handler/`, `"`+dir+`/`)
	file := filepath.Join(dir, "teleport-event-handler.toml")
	require.NoError(t, os.WriteFile(file, []byte(moved), 0o600))
	res, err := config.Resolve(map[string]string{"config": file}, noEnv)
	require.NoError(t, err, toml)
	return res.Config
}

// configFile is the configuration file in the chart's one ConfigMap.
func configFile(t *testing.T, objs map[string]map[string]any) string {
	t.Helper()
	var maps []map[string]any
	for name, obj := range objs {
		if strings.HasPrefix(name, "ConfigMap/") {
			maps = append(maps, obj)
		}
	}
	require.Len(t, maps, 1, "ConfigMaps among %v", keys(objs))
	return get(t, maps[0], "data", "teleport-event-handler.toml").(string)
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func TestChartValues(t *testing.T) {
	base := manifestValues(t)

	t.Run("persistence off", func(t *testing.T) {
		objs := renderObjects(t, base, map[string]any{"persistence": map[string]any{"enabled": false}})
		require.NotContains(t, objs, "PersistentVolumeClaim/"+release)
		volumes := namesOf(t, get(t, objs["Deployment/"+release], "spec", "template", "spec", "volumes"))
		require.Contains(t, volumes["storage"], "emptyDir")
	})

	t.Run("existing claim", func(t *testing.T) {
		objs := renderObjects(t, base, map[string]any{"persistence": map[string]any{"existingClaim": "state"}})
		require.NotContains(t, objs, "PersistentVolumeClaim/"+release)
		volumes := namesOf(t, get(t, objs["Deployment/"+release], "spec", "template", "spec", "volumes"))
		require.Equal(t, "state", get(t, volumes["storage"], "persistentVolumeClaim", "claimName"))
	})

	t.Run("forward with a shared key", func(t *testing.T) {
		objs := renderObjects(t, base, map[string]any{"fluentd": map[string]any{
			"url": "forward://fluentd.example.com:24224/test.log", "sessionUrl": "forward://fluentd.example.com:24224/session",
			"compress": "gzip", "maxMessageKB": 16, "sharedKey": map[string]any{"secretName": "fluentd-shared-key"}}})
		volumes := namesOf(t, get(t, objs["Deployment/"+release], "spec", "template", "spec", "volumes"))
		require.Equal(t, "fluentd-shared-key", get(t, volumes["fluentd-shared-key"], "secret", "secretName"))
		c := get(t, objs["Deployment/"+release], "spec", "template", "spec", "containers", 0).(map[string]any)
		mounts := namesOf(t, c["volumeMounts"])
		require.Equal(t, "/etc/teleport-event-handler/fluentd-shared-key", mounts["fluentd-shared-key"]["mountPath"])
		cfg := loadConfig(t, objs)
		require.Equal(t, "forward://fluentd.example.com:24224/test.log", cfg.Fluentd.URL)
		require.Equal(t, "gzip", cfg.Fluentd.Compress)
		require.Equal(t, 16, cfg.Fluentd.MaxMessageKB)
		require.Equal(t, "the shared key", cfg.Fluentd.SharedKey, "read from the mounted Secret")
		require.Equal(t, 100, cfg.Fluentd.Batch)
	})

	t.Run("relp with syslog options", func(t *testing.T) {
		objs := renderObjects(t, base, map[string]any{
			"fluentd": map[string]any{"url": "relp+tls://siem.example.com:2514", "sessionUrl": "relp+tls://siem.example.com:2514"},
			"syslog":  map[string]any{"facility": "authpriv", "maxMessageKB": 64}})
		cfg := loadConfig(t, objs)
		require.Equal(t, "relp+tls://siem.example.com:2514", cfg.Fluentd.URL)
		require.Equal(t, 10, cfg.Fluentd.Facility)
		require.Equal(t, 64, cfg.Fluentd.SyslogMaxMessageKB)
		require.Equal(t, 100, cfg.Fluentd.Batch, "a window of 100 messages")
	})

	t.Run("secured metrics", func(t *testing.T) {
		objs := renderObjects(t, base, map[string]any{"metrics": map[string]any{"webConfig": map[string]any{"secretName": "web"}}})
		spec := get(t, objs["Deployment/"+release], "spec", "template", "spec").(map[string]any)
		volumes := namesOf(t, spec["volumes"])
		require.Equal(t, "web", get(t, volumes["web-config"], "secret", "secretName"))
		c := get(t, spec, "containers", 0).(map[string]any)
		require.Equal(t, "health", get(t, c, "livenessProbe", "httpGet", "port"))
		require.Equal(t, "health", get(t, c, "readinessProbe", "httpGet", "port"))
		ports := namesOf(t, c["ports"])
		require.EqualValues(t, 9466, ports["health"]["containerPort"])
		toml := get(t, objs["ConfigMap/"+release], "data", "teleport-event-handler.toml").(string)
		require.Contains(t, toml, `web-config-file = "/etc/teleport-event-handler/web/web-config.yml"`)
		require.Contains(t, toml, `health-addr = "0.0.0.0:9466"`)
	})

	t.Run("network policy, digest, scratch bound", func(t *testing.T) {
		objs := renderObjects(t, base, map[string]any{
			"networkPolicy": map[string]any{"enabled": true, "egress": []any{map[string]any{
				"to": []any{map[string]any{"ipBlock": map[string]any{"cidr": "10.0.0.0/8"}}}, "ports": []any{map[string]any{"port": 3025}}}}},
			"image": map[string]any{"digest": "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}})
		np := objs["NetworkPolicy/"+release]
		require.NotNil(t, np)
		require.EqualValues(t, 9465, get(t, np, "spec", "ingress", 0, "ports", 0, "port"))
		require.Equal(t, "monitoring", get(t, np, "spec", "ingress", 0, "from", 0, "namespaceSelector", "matchLabels", "kubernetes.io/metadata.name"))
		require.Equal(t, "10.0.0.0/8", get(t, np, "spec", "egress", 1, "to", 0, "ipBlock", "cidr"))
		spec := get(t, objs["Deployment/"+release], "spec", "template", "spec").(map[string]any)
		require.Contains(t, get(t, spec, "containers", 0, "image"), "@sha256:0123")
		volumes := namesOf(t, spec["volumes"])
		require.Equal(t, "64Mi", get(t, volumes["tmp"], "emptyDir", "sizeLimit"))
	})

	t.Run("metrics off", func(t *testing.T) {
		objs := renderObjects(t, base, map[string]any{"metrics": map[string]any{"enabled": false}})
		require.NotContains(t, objs, "Service/"+release)
		c := get(t, objs["Deployment/"+release], "spec", "template", "spec", "containers", 0).(map[string]any)
		for _, k := range []string{"ports", "livenessProbe", "readinessProbe"} {
			require.NotContains(t, c, k)
		}
		require.Empty(t, loadConfig(t, objs).MetricsAddr)
	})

	t.Run("metrics address", func(t *testing.T) {
		objs := renderObjects(t, base, map[string]any{"metrics": map[string]any{"addr": "[::]:9100"}})
		require.Equal(t, 9100, get(t, objs["Deployment/"+release], "spec", "template", "spec", "containers", 0, "ports", 0, "containerPort"))
		require.Equal(t, "[::]:9100", loadConfig(t, objs).MetricsAddr)
	})

	t.Run("settings", func(t *testing.T) {
		objs := renderObjects(t, base, map[string]any{
			"eventHandler": map[string]any{
				"debug": true, "startTime": "2025-02-03T04:05:06Z", "types": []any{"user.login", "session.start"},
				"skipSessionTypes": []any{}, "concurrency": 7, "windowSize": "1h", "exportMode": "search",
				"lock": map[string]any{"enabled": true, "for": "30m", "exemptUsers": []any{"admin", "ci-bot"}, "maxPerPeriod": 0},
			},
			"fluentd":   map[string]any{"batch": 20, "maxConnections": 4},
			"teleport":  map[string]any{"refresh": map[string]any{"enabled": false}},
			"extraEnv":  []any{map[string]any{"name": "FDFWD_TIMEOUT", "value": "1s"}},
			"extraArgs": []any{"--skip-event-types", "user.login"},
		})
		c := get(t, objs["Deployment/"+release], "spec", "template", "spec", "containers", 0)
		require.Equal(t, []any{map[string]any{"name": "FDFWD_TIMEOUT", "value": "1s"}}, get(t, c, "env"))
		require.Equal(t, []any{"--config=/etc/teleport-event-handler/config/teleport-event-handler.toml", "start", "--skip-event-types", "user.login"}, get(t, c, "args"))

		cfg := loadConfig(t, objs)
		require.True(t, cfg.Debug)
		require.Equal(t, "2025-02-03T04:05:06Z", cfg.StartTime.Format("2006-01-02T15:04:05Z07:00"))
		require.Equal(t, []string{"user.login", "session.start"}, cfg.Types)
		require.Empty(t, cfg.SkipSessionTypes)
		require.Equal(t, 7, cfg.Concurrency)
		require.Equal(t, "1h0m0s", cfg.WindowSize.String())
		require.Equal(t, "search", cfg.ExportMode)
		require.True(t, cfg.Lock.Enabled)
		require.Equal(t, "30m0s", cfg.Lock.For.String())
		require.Equal(t, []string{"admin", "ci-bot"}, cfg.Lock.ExemptUsers)
		require.Zero(t, cfg.Lock.MaxLocks, "0, no cap, is given, not dropped for the default")
		require.Equal(t, 20, cfg.Fluentd.Batch)
		require.Equal(t, 4, cfg.Fluentd.MaxConnections)
		require.False(t, cfg.Teleport.RefreshEnabled)
	})

	t.Run("required values", func(t *testing.T) {
		_, err := render(t)
		require.ErrorContains(t, err, "is required")
		for _, v := range []string{"teleport.address", "teleport.identitySecretName", "fluentd.url", "fluentd.sessionUrl", "fluentd.certificate.secretName"} {
			over := manifestValues(t)
			section, key, _ := strings.Cut(v, ".")
			m := merge(over[section].(map[string]any), nil)
			if sub, leaf, ok := strings.Cut(key, "."); ok {
				m[sub] = merge(m[sub].(map[string]any), map[string]any{leaf: ""})
			} else {
				m[key] = ""
			}
			_, err := render(t, merge(over, map[string]any{section: m}))
			require.ErrorContains(t, err, v+" is required", v)
		}
	})
}

// TestManifestsAreRenderedFromTheChart keeps deploy/kubernetes in step with
// the chart. Regenerate with helm (see kubernetes/values.yaml) or with
//
//	UPDATE_MANIFESTS=1 go test ./deploy -run TestManifestsAreRenderedFromTheChart
func TestManifestsAreRenderedFromTheChart(t *testing.T) {
	files, err := render(t, manifestValues(t))
	require.NoError(t, err)
	if os.Getenv("UPDATE_MANIFESTS") != "" {
		var b strings.Builder
		b.WriteString(manifestHeader)
		// Helm's install order.
		for _, f := range []string{"serviceaccount.yaml", "configmap.yaml", "pvc.yaml", "service.yaml", "deployment.yaml"} {
			fmt.Fprintf(&b, "---\n# Source: %s/templates/%s\n%s\n", release, f, strings.TrimSpace(files[f]))
		}
		require.NoError(t, os.WriteFile(manifests, []byte(b.String()), 0o644))
	}
	docs := make([]string, 0, len(files))
	for _, d := range files {
		docs = append(docs, d)
	}
	require.Equal(t, objects(t, docs...), objects(t, string(readFile(t, manifests))),
		"%s is out of date; regenerate it (see the test's comment)", manifests)
}

const manifestHeader = `# Kubernetes manifests of teleport-event-handler, rendered from the Helm
# chart in deploy/helm/teleport-event-handler with kubernetes/values.yaml:
#   helm template teleport-event-handler deploy/helm/teleport-event-handler \
#     --namespace teleport -f deploy/kubernetes/values.yaml
# Create the namespace and the two Secrets first (see the README), then
#   kubectl apply -f deploy/kubernetes/teleport-event-handler.yaml
`

// TestHelm runs helm itself where it is installed: lint, and the same
// objects from helm template as from the renderer above.
func TestHelm(t *testing.T) {
	helm, err := exec.LookPath("helm")
	if err != nil {
		t.Skip("helm is not installed; the chart is checked by the Go renderer only")
	}
	run := func(args ...string) string {
		out, err := exec.Command(helm, args...).CombinedOutput()
		require.NoError(t, err, "helm %s:\n%s", strings.Join(args, " "), out)
		return string(out)
	}
	run("lint", "--strict", chartDir, "-f", manifestVals)
	got := run("template", release, chartDir, "--namespace", namespace, "-f", manifestVals)
	files, err := render(t, manifestValues(t))
	require.NoError(t, err)
	docs := make([]string, 0, len(files))
	for _, d := range files {
		docs = append(docs, d)
	}
	require.Equal(t, objects(t, docs...), objects(t, got))
}

func noEnv(string) (string, bool) { return "", false }

func writeTemp(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
	return path
}

// The values file configure writes installs the chart as configured: the
// same Teleport address, Fluentd URLs and auto-locking as the daemon's own
// configuration file, over HTTP, over forward (the shared key a Secret)
// and over RELP (rsyslog's message size limit in step).
func TestConfigureWritesTheChartsValues(t *testing.T) {
	for _, url := range []string{"", "forward://fluentd.example.com:24224/audit", "relp+tls://siem.example.com:2514"} {
		forward := strings.HasPrefix(url, "forward")
		dir := t.TempDir()
		flags, set := configure.Flags{KeyType: "ecdsa", LockEnabled: true}, []string{"key-type", "lock-enabled"}
		switch {
		case forward:
			flags.FluentdURL, flags.FluentdSessionURL = url, "forward://fluentd.example.com:24224/session"
			set = append(set, "fluentd-url", "fluentd-session-url")
		case url != "":
			flags.FluentdURL = url
			set = append(set, "fluentd-url")
		}
		c, err := configure.Resolve(flags, func(flag string) bool { return slices.Contains(set, flag) },
			[]string{dir, "teleport.example.com:443"}, noEnv)
		require.NoError(t, err)
		_, err = configure.Run(c, io.Discard)
		require.NoError(t, err)
		var values map[string]any
		require.NoError(t, yaml.Unmarshal(readFile(t, filepath.Join(dir, configure.ValuesFile)), &values))
		objs := renderObjects(t, values)
		cfg := loadConfig(t, objs)
		pki := testpki.New(t)
		require.NoError(t, os.WriteFile(filepath.Join(dir, "identity"), readFile(t, pki.IdentityFile), 0o600))
		want, err := config.Resolve(map[string]string{"config": filepath.Join(dir, configure.ConfigFile)}, noEnv)
		require.NoError(t, err)
		require.Equal(t, want.Config.Teleport.Addr, cfg.Teleport.Addr)
		require.Equal(t, want.Config.Fluentd.URL, cfg.Fluentd.URL)
		require.Equal(t, want.Config.Fluentd.SessionURL, cfg.Fluentd.SessionURL)
		require.True(t, cfg.Lock.Enabled)
		require.Equal(t, want.Config.Fluentd.SyslogMaxMessageKB, cfg.Fluentd.SyslogMaxMessageKB)
		if forward {
			require.Equal(t, "the shared key", cfg.Fluentd.SharedKey, "from the mounted Secret")
		}
	}
}
