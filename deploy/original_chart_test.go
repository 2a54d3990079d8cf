package deploy

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

// originalChart is the name of the original plugin's chart, in teleport's
// examples/chart/event-handler.
const originalChart = "teleport-plugin-event-handler"

// originalFullname is what the original chart names its objects for a
// release, its claim among them: the release name when it contains the
// chart's name, else <release>-<chart>, cut to 63 characters, Helm's usual
// rule, written out here rather than taken from our chart's helpers.
func originalFullname(releaseName string) string {
	name := releaseName + "-" + originalChart
	if strings.Contains(releaseName, originalChart) {
		name = releaseName
	}
	return strings.TrimSuffix(name[:min(63, len(name))], "-")
}

func originalValues(t *testing.T) map[string]any {
	t.Helper()
	var v map[string]any
	require.NoError(t, yaml.Unmarshal(readFile(t, filepath.Join("testdata", "original-values.yaml")), &v))
	return v
}

// The values file the original's configure writes, given to this chart on
// the original's release, keeps the original's claim, mounted where the
// original mounted it with the daemon's storage there (so that the
// original's state is found and taken over), and names the Deployment as the
// original did with the same selector (so that the upgrade replaces the
// original's pod instead of running beside it). Teleport and Fluentd are the
// original's.
func TestOriginalValues(t *testing.T) {
	for _, rel := range []string{originalChart, "event-handler", "prod-" + originalChart + "-eu"} {
		t.Run(rel, func(t *testing.T) {
			name := originalFullname(rel)
			objs := renderObjectsAs(t, rel, originalValues(t))
			require.ElementsMatch(t, []string{"ServiceAccount/" + name, "ConfigMap/" + name, "PersistentVolumeClaim/" + name,
				"Service/" + name, "Deployment/" + name}, keys(objs))

			pvc := objs["PersistentVolumeClaim/"+name]
			require.Equal(t, "1Gi", get(t, pvc, "spec", "resources", "requests", "storage"))
			require.Equal(t, []any{"ReadWriteOnce"}, get(t, pvc, "spec", "accessModes"))

			dep := objs["Deployment/"+name]
			require.Equal(t, map[string]any{"app.kubernetes.io/name": originalChart, "app.kubernetes.io/instance": rel},
				get(t, dep, "spec", "selector", "matchLabels"), "the original's selector, which an upgrade cannot change")
			require.Equal(t, "Recreate", get(t, dep, "spec", "strategy", "type"))
			pod := get(t, dep, "spec", "template", "spec")
			volumes := namesOf(t, get(t, pod, "volumes"))
			require.Equal(t, name, get(t, volumes["storage"], "persistentVolumeClaim", "claimName"))
			require.Equal(t, "teleport-event-handler-identity", get(t, volumes["teleport-identity"], "secret", "secretName"))
			require.Equal(t, "teleport-event-handler-client-tls", get(t, volumes["fluentd-certificate"], "secret", "secretName"))
			mounts := namesOf(t, get(t, pod, "containers", 0, "volumeMounts"))
			// ./storage: the kubelet mounts a relative path from /, where the
			// original resolved it too.
			require.Equal(t, "/storage", mounts["storage"]["mountPath"])

			cfg := loadConfig(t, objs)
			require.Equal(t, "/storage", cfg.Storage)
			require.Equal(t, "teleport.example.com:443", cfg.Teleport.Addr)
			require.True(t, strings.HasSuffix(cfg.Teleport.Identity, "/teleport/identity"), cfg.Teleport.Identity)
			require.Equal(t, "https://fluentd.fluentd.svc.cluster.local/events.log", cfg.Fluentd.URL)
			require.Equal(t, "https://fluentd.fluentd.svc.cluster.local/session.log", cfg.Fluentd.SessionURL)
			for _, f := range []string{cfg.Fluentd.CA, cfg.Fluentd.Cert, cfg.Fluentd.Key} {
				require.FileExists(t, f)
			}
			require.Equal(t, 10*time.Second, cfg.Timeout)
			require.Equal(t, 20, cfg.Batch)
		})
	}

	t.Run("the original chart's defaults", func(t *testing.T) {
		// As the original chart's README installs it: its storage path
		// given, its identity key left out (auth_id, the original's default).
		v := originalValues(t)
		delete(v["eventHandler"].(map[string]any), "storagePath")
		delete(v["teleport"].(map[string]any), "identitySecretPath")
		objs := renderObjectsAs(t, originalChart, v, map[string]any{"eventHandler": map[string]any{"storagePath": "/var/lib/teleport/plugins/event-handler/storage"}})
		toml := configFile(t, objs)
		require.Contains(t, toml, `identity = "/etc/teleport-event-handler/teleport/auth_id"`)
		require.Contains(t, toml, `storage = "/var/lib/teleport/plugins/event-handler/storage"`)

		// Without storagePath, persistentVolumeClaim alone marks the values
		// as the original's.
		delete(v["eventHandler"].(map[string]any), "storagePath")
		objs = renderObjectsAs(t, originalChart, v)
		require.Contains(t, objs, "PersistentVolumeClaim/"+originalChart)
		require.Contains(t, configFile(t, objs), `identity = "/etc/teleport-event-handler/teleport/auth_id"`)
	})

	t.Run("existing claim", func(t *testing.T) {
		objs := renderObjectsAs(t, "event-handler", originalValues(t),
			map[string]any{"persistentVolumeClaim": map[string]any{"enabled": false, "existingClaim": "event-handler-state", "volumeName": "state"}})
		for name := range objs {
			require.False(t, strings.HasPrefix(name, "PersistentVolumeClaim/"), "%s: the existing claim is used", name)
		}
		pod := get(t, objs["Deployment/"+originalFullname("event-handler")], "spec", "template", "spec")
		require.Equal(t, "event-handler-state", get(t, namesOf(t, get(t, pod, "volumes"))["state"], "persistentVolumeClaim", "claimName"))
		require.Equal(t, "/storage", namesOf(t, get(t, pod, "containers", 0, "volumeMounts"))["state"]["mountPath"])
		require.Equal(t, "/storage", loadConfig(t, objs).Storage)
	})

	t.Run("enabled wins over existingClaim, as in the original", func(t *testing.T) {
		objs := renderObjectsAs(t, originalChart, originalValues(t),
			map[string]any{"persistentVolumeClaim": map[string]any{"existingClaim": "unused", "size": "5Gi", "storageClassName": "fast"}})
		pvc := objs["PersistentVolumeClaim/"+originalChart]
		require.Equal(t, "5Gi", get(t, pvc, "spec", "resources", "requests", "storage"))
		require.Equal(t, "fast", get(t, pvc, "spec", "storageClassName"))
		pod := get(t, objs["Deployment/"+originalChart], "spec", "template", "spec")
		require.Equal(t, originalChart, get(t, namesOf(t, get(t, pod, "volumes"))["storage"], "persistentVolumeClaim", "claimName"))
	})

	t.Run("no claim in the original keeps this chart's", func(t *testing.T) {
		// The original then kept its state in the container: there is none
		// to take over, and a new pod must not start over.
		objs := renderObjectsAs(t, "event-handler", originalValues(t),
			map[string]any{"persistentVolumeClaim": map[string]any{"enabled": false}})
		require.Contains(t, objs, "PersistentVolumeClaim/"+originalFullname("event-handler"))
	})

	t.Run("new keys that agree", func(t *testing.T) {
		objs := renderObjectsAs(t, originalChart, originalValues(t),
			map[string]any{"persistence": map[string]any{"mountPath": "/storage/", "size": "1Gi"}, "persistentVolumeClaim": map[string]any{"size": "1Gi"}})
		require.Equal(t, "/storage", loadConfig(t, objs).Storage)
	})

	t.Run("a CA for the Proxy Service", func(t *testing.T) {
		objs := renderObjectsAs(t, originalChart, originalValues(t), map[string]any{"tls": map[string]any{"existingCASecretName": "proxy-ca"}})
		pod := get(t, objs["Deployment/"+originalChart], "spec", "template", "spec")
		require.Equal(t, "proxy-ca", get(t, namesOf(t, get(t, pod, "volumes"))["teleport-tls-ca"], "secret", "secretName"))
		c := get(t, pod, "containers", 0)
		require.Equal(t, "/etc/teleport-event-handler/teleport-tls-ca", namesOf(t, get(t, c, "volumeMounts"))["teleport-tls-ca"]["mountPath"])
		require.Equal(t, "/etc/teleport-event-handler/teleport-tls-ca/ca.pem", namesOf(t, get(t, c, "env"))["SSL_CERT_FILE"]["value"])
	})
}

// A key of the original chart that this chart cannot honour, or that
// disagrees with its new name, stops the rendering with a message naming
// both, instead of deploying on another volume or without the setting.
func TestOriginalValuesThatCannotBeHonoured(t *testing.T) {
	for _, tc := range []struct {
		name   string
		values map[string]any
		want   []string
	}{
		{"storage path and mount path", map[string]any{"persistence": map[string]any{"mountPath": "/data"}},
			[]string{`eventHandler.storagePath ("./storage", the original chart's key) and persistence.mountPath ("/data") disagree`}},
		{"claim enabled, persistence off", map[string]any{"persistence": map[string]any{"enabled": false}},
			[]string{"persistentVolumeClaim.enabled (true, the original chart's key) and persistence.enabled (false) disagree"}},
		{"claim enabled, another claim", map[string]any{"persistence": map[string]any{"existingClaim": "other"}},
			[]string{"persistentVolumeClaim.enabled (true: the claim " + originalChart + ", the original chart's key) and persistence.existingClaim (\"other\") disagree"}},
		{"two existing claims", map[string]any{"persistentVolumeClaim": map[string]any{"enabled": false, "existingClaim": "old"},
			"persistence": map[string]any{"existingClaim": "new"}},
			[]string{`persistentVolumeClaim.existingClaim ("old", the original chart's key) and persistence.existingClaim ("new") disagree`}},
		{"existing claim, persistence off", map[string]any{"persistentVolumeClaim": map[string]any{"enabled": false, "existingClaim": "old"},
			"persistence": map[string]any{"enabled": false}},
			[]string{`persistentVolumeClaim.existingClaim ("old", the original chart's key) and persistence.enabled (false) disagree`}},
		{"sizes", map[string]any{"persistentVolumeClaim": map[string]any{"size": "2Gi"}, "persistence": map[string]any{"size": "5Gi"}},
			[]string{`persistentVolumeClaim.size ("2Gi", the original chart's key) and persistence.size ("5Gi") disagree`}},
		{"storage classes", map[string]any{"persistentVolumeClaim": map[string]any{"storageClassName": "a"}, "persistence": map[string]any{"storageClassName": "b"}},
			[]string{`persistentVolumeClaim.storageClassName ("a", the original chart's key) and persistence.storageClassName ("b") disagree`}},
		{"tbot", map[string]any{"tbot": map[string]any{"enabled": true}},
			[]string{"- tbot.enabled:", "teleport.identitySecretName", originalChart + "-tbot-out"}},
		{"operator resources", map[string]any{"crd": map[string]any{"create": true}}, []string{"- crd.create:"}},
		{"cert-manager", map[string]any{"certManager": map[string]any{"enabled": true}},
			[]string{"- certManager.enabled:", "fluentd.certificate.secretName"}},
		{"extra volumes", map[string]any{"volumes": []any{map[string]any{"name": "x", "emptyDir": map[string]any{}}},
			"volumeMounts": []any{map[string]any{"name": "x", "mountPath": "/x"}}},
			[]string{"- volumes:", "- volumeMounts:", "persistence.existingClaim"}},
		{"annotations and labels", map[string]any{"annotations": map[string]any{"pod": map[string]any{"a": "b"}, "deployment": map[string]any{"a": "b"}},
			"extraLabels": map[string]any{"pod": map[string]any{"a": "b"}}},
			[]string{"- annotations.pod: give podAnnotations", "- annotations.deployment:", "- extraLabels.pod: give podLabels"}},
		{"the original's image", map[string]any{"image": map[string]any{"repository": "public.ecr.aws/gravitational/teleport-plugin-event-handler"}},
			[]string{"- image.repository: public.ecr.aws/gravitational/teleport-plugin-event-handler is the original plugin's image"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := renderAs(t, originalChart, originalValues(t), tc.values)
			require.Error(t, err)
			for _, w := range tc.want {
				require.ErrorContains(t, err, w)
			}
		})
	}
}
