package config

import (
	"regexp"
	"slices"
	"strings"
)

// eventType is the shape of a Teleport event type: lowercase words joined
// by dots (user.login, db.session.query, x11-forward).
var eventType = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*(\.[a-z0-9_-]+)*$`)

// knownEventTypes are common Teleport audit event types, for suggestions
// when a type list holds a wildcard (neither this daemon nor the original
// plugin expands them). It is not a whitelist: any well-formed type is
// accepted.
var knownEventTypes = []string{
	"access_request.create", "access_request.review", "access_request.update",
	"app.create", "app.session.chunk", "app.session.request", "app.session.start",
	"auth", "cert.create", "client.disconnect",
	"db.session.end", "db.session.query", "db.session.start",
	"exec", "github.created", "join_token.create",
	"kube.request", "lock.created", "lock.deleted",
	"port", "role.created", "role.deleted", "scp",
	"session.command", "session.data", "session.end", "session.join", "session.leave",
	"session.network", "session.rejected", "session.start", "session.upload",
	"sftp", "user.create", "user.delete", "user.login", "user.password.change", "user.update",
	"windows.desktop.session.end", "windows.desktop.session.start", "x11-forward",
}

// suggestTypes lists the known types a wildcard pattern would have meant.
func suggestTypes(pattern string) string {
	prefix, _, _ := strings.Cut(pattern, "*")
	prefix, _, _ = strings.Cut(prefix, "?")
	var out []string
	for _, t := range knownEventTypes {
		if strings.HasPrefix(t, prefix) {
			out = append(out, t)
		}
	}
	if len(out) == 0 || prefix == "" {
		out = []string{"user.login", "session.start", "session.end"}
	}
	slices.Sort(out)
	return strings.Join(out, ",")
}

// checkTypes refuses type lists that cannot match anything: a wildcard (the
// original plugin takes none either) or a value that is not an event type.
func (r *resolver) checkTypes(c *Config) error {
	for _, flag := range []string{"types", "skip-event-types"} {
		for _, t := range *optionByFlag(flag).field(c).(*[]string) {
			switch {
			case strings.ContainsAny(t, "*?["):
				return r.fail(flag, "wildcards are not supported: each type is matched exactly",
					"list the exact types, e.g. "+suggestTypes(t))
			case !eventType.MatchString(t):
				return r.fail(flag, strings.TrimSpace(t)+" is not an event type",
					"event types are lowercase names such as user.login or session.start, comma-separated")
			}
		}
	}
	return nil
}
